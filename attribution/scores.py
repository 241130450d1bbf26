"""How much of the model's computation a graph explains with features rather than errors.

- Replacement score: of the influence that reaches the logits from the graph's inputs (tokens)
  and from its unexplained parts (error nodes), the share that comes from tokens. 1.0 means the
  logits are explained end to end by features.
- Completeness score: for each node, the share of its normalised input that does not come from
  error nodes, averaged over nodes with weights (influence + logit weight). Partial credit for
  nodes that are mostly explained.
"""

from __future__ import annotations

from circuitflow.attribution.influence import influence_series, logit_weights, row_sums


def graph_scores(graph) -> tuple[float, float]:
    """(replacement score, completeness score) of an `AttributionGraph`."""
    adjacency = graph.adjacency
    weights = logit_weights(graph.n_nodes, graph.logit_probabilities, adjacency.device)
    influence, _ = influence_series(adjacency, weights)
    errors = slice(graph.error_start, graph.token_start)
    tokens = slice(graph.token_start, graph.logit_start)

    token_influence = influence[tokens].sum()
    error_influence = influence[errors].sum()
    replacement = token_influence / (token_influence + error_influence)

    error_share = adjacency[:, errors].abs().sum(dim=1) / row_sums(adjacency)
    output_weight = influence + weights
    completeness = ((1 - error_share) * output_weight).sum() / output_weight.sum()
    return float(replacement), float(completeness)
