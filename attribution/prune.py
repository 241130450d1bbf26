"""Pruning: the small subgraph that carries most of the influence on the logits.

1. Nodes: sort by influence and keep the most influential until they add up to `node_threshold`
   of the total; token and logit nodes are always kept.
2. Edges: on the matrix restricted to kept nodes, score each edge by its normalised weight times
   (its target's influence in that pruned graph + its target's logit weight); keep the highest
   scores until they add up to `edge_threshold` of the total score.
3. Clean up until stable: drop feature and error nodes left with no outgoing kept edge, and
   features left with no incoming one, and the edges that touched them.

Memory: step 2 works on the kept nodes' submatrix only (kept nodes are a small share of N), and
the score cut-off is found by bisection on the float bit patterns of the scores, one streaming
pass per bit, instead of sorting all edge scores at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from circuitflow.attribution.influence import influence_series, logit_weights, row_sums
from circuitflow.attribution.params import DEFAULTS, check


class PruneResult(NamedTuple):
    node_mask: torch.Tensor  # (N,) bool: nodes kept
    edge_mask: torch.Tensor  # (N, N) bool: edges kept (rows targets, columns sources)
    cumulative_scores: (
        torch.Tensor
    )  # (N,) share of total influence of nodes at least as influential


class ThresholdError(ValueError):
    """A pruning threshold outside (0, 1]."""


def mass_threshold(scores: torch.Tensor, fraction: float) -> float:
    """The smallest score s such that scores >= s carry `fraction` of the total.

    Equal to sorting descending and cutting where the cumulative share first reaches `fraction`,
    found without a sort: non-negative float32 values order like their bit patterns, so a
    bisection over 31 bits, each step one pass summing scores above a candidate, finds the exact
    cut-off value among the scores.
    """
    flat = scores.reshape(-1)
    total = float(flat.double().sum())
    if total <= 0:
        return 0.0
    goal = fraction * total * (1 - 1e-12)  # summation order must not lose the last score
    lo, hi = 0, 0x7F800000  # bit patterns of 0.0 and +inf
    while lo < hi:  # largest bit pattern v with mass(scores >= v) >= goal
        mid = (lo + hi + 1) // 2
        value = _bits_to_float(mid)
        if _mass_at_least(flat, value) >= goal:
            lo = mid
        else:
            hi = mid - 1
    cut = _bits_to_float(lo)
    at_or_above = flat[flat >= cut]
    return float(at_or_above.min()) if at_or_above.numel() else cut


def _bits_to_float(bits: int) -> float:
    return float(torch.tensor([bits], dtype=torch.int32).view(torch.float32))


def _mass_at_least(flat: torch.Tensor, value: float, chunk: int = 1 << 24) -> float:
    total = 0.0
    for start in range(0, flat.numel(), chunk):
        part = flat[start : start + chunk]
        total += float(part[part >= value].double().sum())
    return total


def cumulative_shares(influence: torch.Tensor) -> torch.Tensor:
    """For each node, the share of total influence held by nodes ranked at or above it."""
    ordered, order = torch.sort(influence, descending=True)
    shares = torch.cumsum(ordered, dim=0) / ordered.sum()
    out = torch.zeros_like(influence)
    out[order] = shares
    return out


@dataclass
class PruneDetails:
    """Everything pruning computed, for storage and the catalog.

    result:      the masks and cumulative scores
    kept_edges:  (n_edges, 2) int64 (target, source) of kept edges, row-major
    edge_scores: (n_edges,) their scores (normalised weight x (target influence + logit weight))
    edge_trace:  per-step terms of the influence series on the node-pruned graph, in node order
    """

    result: PruneResult
    kept_edges: torch.Tensor
    edge_scores: torch.Tensor
    edge_trace: list[torch.Tensor]


def prune(
    graph,
    node_threshold: float = DEFAULTS.node_threshold,
    edge_threshold: float = DEFAULTS.edge_threshold,
    influence: torch.Tensor | None = None,
) -> PruneResult:
    """Keep the nodes and edges that carry the given shares of influence on the logits.

    `influence`: the whole graph's node influence (`node_influence(graph)[0]`), when the caller
    already has it; it does not depend on the thresholds, so re-pruning need not recompute it.
    """
    return prune_with_details(graph, node_threshold, edge_threshold, influence).result


def prune_with_details(
    graph,
    node_threshold: float = DEFAULTS.node_threshold,
    edge_threshold: float = DEFAULTS.edge_threshold,
    influence: torch.Tensor | None = None,
) -> PruneDetails:
    """`prune`, also returning the kept edges' scores and the pruned graph's influence trace."""
    check("node_threshold", node_threshold, ThresholdError)
    check("edge_threshold", edge_threshold, ThresholdError)
    n_nodes, n_features = graph.n_nodes, graph.n_features
    n_always = graph.n_pos + graph.n_logits  # tokens and logits, the last nodes
    adjacency = graph.adjacency
    weights = logit_weights(n_nodes, graph.logit_probabilities, adjacency.device)

    if influence is None:
        influence, _ = influence_series(adjacency, weights)
    node_mask = influence >= _sorted_cut(influence, node_threshold)
    node_mask[n_nodes - n_always :] = True

    # Edge scores on the kept nodes' submatrix.
    kept = torch.nonzero(node_mask).flatten()
    sub = adjacency[kept[:, None], kept[None, :]]
    sub_weights = weights[kept]
    sub_influence, sub_trace = influence_series(sub, sub_weights)
    scores = sub.abs() / row_sums(sub)[:, None] * (sub_influence + sub_weights)[:, None]
    cut = mass_threshold(scores, edge_threshold)
    sub_edges = scores >= cut if cut > 0 else scores > 0

    # Drop nodes that lost their edges, until nothing changes. Every edge lies between kept
    # nodes, so this works on their submatrix.
    sub_nodes = torch.ones(len(kept), dtype=torch.bool, device=adjacency.device)
    prunable = kept < n_nodes - n_always  # feature and error nodes
    is_feature = kept < n_features
    while True:
        before = sub_nodes.clone()
        sub_nodes &= ~prunable | sub_edges.any(dim=0)  # some outgoing edge
        sub_nodes &= ~is_feature | sub_edges.any(dim=1)  # some incoming edge
        if torch.equal(before, sub_nodes):
            break
        sub_edges[~sub_nodes] = False
        sub_edges[:, ~sub_nodes] = False
    node_mask = torch.zeros(n_nodes, dtype=torch.bool, device=adjacency.device)
    node_mask[kept[sub_nodes]] = True
    edge_mask = torch.zeros(n_nodes, n_nodes, dtype=torch.bool, device=adjacency.device)
    edge_mask[kept[:, None], kept[None, :]] = sub_edges

    local = torch.nonzero(sub_edges)  # (n_edges, 2) in sub indices
    edge_trace = []
    for term in sub_trace:
        full = torch.zeros(n_nodes, dtype=term.dtype, device=term.device)
        full[kept] = term
        edge_trace.append(full)
    return PruneDetails(
        result=PruneResult(node_mask, edge_mask, cumulative_shares(influence)),
        kept_edges=kept[local],
        edge_scores=scores[local[:, 0], local[:, 1]],
        edge_trace=edge_trace,
    )


def _sorted_cut(values: torch.Tensor, fraction: float) -> torch.Tensor:
    """The value at which descending cumulative share first reaches `fraction` (N values)."""
    ordered = torch.sort(values, descending=True).values
    shares = torch.cumsum(ordered, dim=0) / ordered.sum()
    index = min(int(torch.searchsorted(shares, fraction)), len(ordered) - 1)
    return ordered[index]
