"""Influence: how much each node matters to the logits, through every path of the graph.

Take the adjacency |A| (rows are targets, columns sources) with each row normalised to sum to 1:
entry (t, s) is then the share of node t's input that comes from node s. Start from the logit
weights w (target probabilities on the logit nodes, zero elsewhere). Then

    influence = w A + w A^2 + w A^3 + ...

where w A^n is the influence reaching each node through paths of exactly n edges. The graph is
acyclic (edges go from earlier layers to later ones), so A is nilpotent and the series ends after
at most depth-of-graph terms. The terms are kept as the *influence trace*: they show how quickly
the influence converges, and which path lengths carry it.

Everything here works on dense (N, N) float32 matrices but never makes a normalised copy of one:
row sums are computed once and each step multiplies (w / row_sums) by |A| in row chunks.
"""

from __future__ import annotations

import torch

import circuitflow.attribution.analysis as analysis

ROW_SUM_FLOOR = 1e-10  # rows that receive nothing stay zero instead of dividing by zero
CHUNK_ROWS = 512  # rows of |A| materialised at once: 16 MB for N = 8000


def row_sums(matrix: torch.Tensor) -> torch.Tensor:
    """Sum of |matrix| along each row, floored: (N, M) -> (N,)."""
    sums = torch.zeros(matrix.shape[0], dtype=matrix.dtype, device=matrix.device)
    for start in range(0, matrix.shape[0], CHUNK_ROWS):
        sums[start : start + CHUNK_ROWS] = matrix[start : start + CHUNK_ROWS].abs().sum(dim=1)
    return sums.clamp(min=ROW_SUM_FLOOR)


def propagate(weights: torch.Tensor, matrix: torch.Tensor, sums: torch.Tensor) -> torch.Tensor:
    """One step: weights (N,) times the row-normalised |matrix| (N, M) -> (M,)."""
    scaled = weights / sums
    out = torch.zeros(matrix.shape[1], dtype=matrix.dtype, device=matrix.device)
    for start in torch.nonzero(scaled).flatten().div(CHUNK_ROWS, rounding_mode="floor").unique():
        rows = slice(int(start) * CHUNK_ROWS, (int(start) + 1) * CHUNK_ROWS)
        out += scaled[rows] @ matrix[rows].abs()
    return out


def influence_series(
    matrix: torch.Tensor, weights: torch.Tensor, max_iter: int = 1000, phase: str | None = None
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Sum of weights A + weights A^2 + ... for the row-normalised |matrix| (N, N).

    Returns (influence (N,), trace: the list of per-path-length terms). With a `phase` ("node":
    the whole graph, "edge": the node-pruned one) the series fires the analysis points
    influence_start, influence_iteration and influence_end.
    """
    sums = row_sums(matrix)
    if phase and analysis.wants("influence_start"):
        analysis.fire("influence_start", phase=phase, matrix=matrix, row_sums=sums, weights=weights)
    total = torch.zeros_like(weights)
    trace: list[torch.Tensor] = []
    term = propagate(weights, matrix, sums)
    while term.any():
        if len(trace) >= max_iter:
            raise RuntimeError(
                f"influence did not converge after {max_iter} steps: the graph has a cycle"
            )
        trace.append(term)
        total += term
        if phase and analysis.wants("influence_iteration"):
            analysis.fire(
                "influence_iteration", phase=phase, iteration=len(trace) - 1, term=term, total=total
            )
        term = propagate(term, matrix, sums)
    if phase and analysis.wants("influence_end"):
        stacked = torch.stack(trace) if trace else total.new_zeros(0, len(total))
        analysis.fire(
            "influence_end", phase=phase, influence=total, trace=stacked, n_steps=len(trace)
        )
    return total, trace


def logit_weights(n_nodes: int, probabilities: torch.Tensor, device=None) -> torch.Tensor:
    """(N,) zeros with the target probabilities on the last k (logit) nodes."""
    weights = torch.zeros(n_nodes, device=device, dtype=torch.float32)
    weights[n_nodes - len(probabilities) :] = probabilities.to(weights)
    return weights


def node_influence(graph) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Influence of every node of an `AttributionGraph` on its logits, and the per-step trace.

    influence (N,) in node order; trace[n] (N,) is the influence carried by paths of n + 1 edges.
    """
    weights = logit_weights(graph.n_nodes, graph.logit_probabilities, graph.adjacency.device)
    return influence_series(graph.adjacency, weights, phase="node")


def partial_influence(
    rows: torch.Tensor,  # (n_rows, n_nodes - k) computed rows; the k logit columns are implied
    row_nodes: torch.Tensor,  # (n_rows,) which node each row belongs to
    probabilities: torch.Tensor,  # (k,) logit weights; logit nodes are the last k nodes
    max_iter: int = 128,
) -> torch.Tensor:
    """Influence estimated from the rows computed so far (used to rank features for a budget).

    Only nodes that own a row pass influence on; the rest only receive it.
    """
    n_nodes = rows.shape[1] + len(probabilities)
    normalized = torch.nn.functional.pad(rows.abs(), (0, len(probabilities)))
    normalized /= normalized.sum(dim=1, keepdim=True).clamp(min=1e-8)
    per_node = torch.zeros(n_nodes, device=rows.device)
    per_node[n_nodes - len(probabilities) :] = probabilities.to(per_node)
    total = torch.zeros(n_nodes, device=rows.device)
    for _ in range(max_iter):
        per_node = per_node[row_nodes] @ normalized
        if not per_node.any():
            return total
        total += per_node
    raise RuntimeError("feature ranking did not converge: the computed rows contain a cycle")
