"""Stage prune: the nodes and edges kept at the run's thresholds (see `attribution.prune`).

Fills the catalog's `nodes` (every node, kept or not, with its influence), `edges` (the kept
edges with their weights and scores) and `influence_traces` (each step of the influence series:
phase "node" on the whole graph, phase "edge" on the node-pruned graph).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import torch

from circuitflow.attribution import PruneResult, prune_with_details
from circuitflow.attribution.serialize import Record
from circuitflow.tasks.context import RunContext
from circuitflow.tasks.declare import CatalogTable, RunColumn, Stage
from circuitflow.tasks.stages.influence import stack_trace


@dataclass
class Pruned(Record):
    """node_mask: (N,) bool; cumulative_scores: (N,) share of influence of nodes at least as
    influential; kept_edges: (E, 2) int64 (target, source); edge_scores: (E,); edge_trace:
    (n_steps, N) influence series on the node-pruned graph."""

    node_mask: torch.Tensor
    cumulative_scores: torch.Tensor
    kept_edges: torch.Tensor
    edge_scores: torch.Tensor
    edge_trace: torch.Tensor

    def result(self) -> PruneResult:
        """The masks as `attribution.prune` returns them (the edge mask rebuilt)."""
        n_nodes = len(self.node_mask)
        edge_mask = torch.zeros(n_nodes, n_nodes, dtype=torch.bool)
        edge_mask[self.kept_edges[:, 0], self.kept_edges[:, 1]] = True
        return PruneResult(self.node_mask, edge_mask, self.cumulative_scores)


def compute(run: RunContext) -> Pruned:
    graph = run.graph
    details = prune_with_details(graph, run.params.node_threshold, run.params.edge_threshold)
    return Pruned(
        node_mask=details.result.node_mask,
        cumulative_scores=details.result.cumulative_scores,
        kept_edges=details.kept_edges,
        edge_scores=details.edge_scores,
        edge_trace=stack_trace(details.edge_trace, graph.n_nodes),
    )


def node_entries(run: RunContext) -> list[dict]:
    graph, pruned = run.graph, run.record("prune")
    influence = run.record("influence").influence.tolist()
    cumulative = pruned.cumulative_scores.tolist()
    kept = pruned.node_mask.tolist()
    ids = graph.node_ids()
    entries = []
    for index, node in enumerate(graph.nodes()):
        entries.append(
            {
                "node_id": ids[index],
                "kind": node.kind,
                "layer": node.layer,
                "pos": node.pos,
                "feature": node.feature,
                "token": _node_token(graph, node, index),
                "activation": node.activation,
                "influence": influence[index],
                "cumulative_influence": cumulative[index],
                "kept": kept[index],
                "token_id": node.token_id,
                "matrix_index": index,
            }
        )
    return entries


def _node_token(graph, node, index: int) -> str | None:
    """The prompt token at a node's position; a logit node's own token."""
    if node.kind == "logit":
        return graph.logit_tokens[index - graph.logit_start]
    return graph.token(node.pos)


def edge_entries(run: RunContext) -> list[dict]:
    graph, pruned = run.graph, run.record("prune")
    ids = graph.node_ids()
    edges = pruned.kept_edges
    weights = graph.adjacency[edges[:, 0], edges[:, 1]].tolist()
    return [
        {"source": ids[source], "target": ids[target], "weight": weight, "score": score}
        for (target, source), weight, score in zip(
            edges.tolist(), weights, pruned.edge_scores.tolist(), strict=True
        )
    ]


def trace_entries(run: RunContext) -> list[dict]:
    phases = (("node", run.record("influence").trace), ("edge", run.record("prune").edge_trace))
    entries = []
    for phase, trace in phases:  # trace: (n_steps, N), one row per step
        magnitude = trace.abs()
        l1 = magnitude.sum(dim=1).tolist()
        largest = magnitude.amax(dim=1).tolist() if trace.shape[1] else [0.0] * len(trace)
        nnz = (trace != 0).sum(dim=1).tolist()
        entries += [
            {"phase": phase, "iteration": step, "l1": l1[step], "max": largest[step], "nnz": n}
            for step, n in enumerate(nnz)
        ]
    return entries


def _n_nodes_kept(run: RunContext) -> int:
    return int(run.record("prune").node_mask.sum())


def _n_edges_kept(run: RunContext) -> int:
    return len(run.record("prune").kept_edges)


NODES = CatalogTable(
    "nodes",
    (
        ("node_id", pa.string()),
        ("kind", pa.string()),
        ("layer", pa.int32()),
        ("pos", pa.int32()),
        ("feature", pa.int64()),
        ("token", pa.string()),
        ("activation", pa.float64()),
        ("influence", pa.float64()),
        ("cumulative_influence", pa.float64()),
        ("kept", pa.bool_()),
        ("token_id", pa.int64()),  # token and logit nodes
        ("matrix_index", pa.int64()),  # row/column in the run's adjacency matrix
    ),
    node_entries,
    allowed={"kind": frozenset({"feature", "error", "token", "logit"})},
)
EDGES = CatalogTable(
    "edges",
    (
        ("source", pa.string()),
        ("target", pa.string()),
        ("weight", pa.float64()),
        ("score", pa.float64()),
    ),
    edge_entries,
)
INFLUENCE_TRACES = CatalogTable(
    "influence_traces",
    (
        ("phase", pa.string()),
        ("iteration", pa.int32()),
        ("l1", pa.float64()),
        ("max", pa.float64()),
        ("nnz", pa.int64()),
    ),
    trace_entries,
    allowed={"phase": frozenset({"node", "edge"})},
)

STAGE = Stage(
    name="prune",
    version=1,
    inputs=("influence",),
    params=("node_threshold", "edge_threshold"),
    record=Pruned,
    compute=compute,
    dims=(
        ("node_mask", ("node",)),
        ("cumulative_scores", ("node",)),
        ("kept_edges", ("edge", "end")),  # end: (target, source)
        ("edge_scores", ("edge",)),
        ("edge_trace", ("step", "node")),
    ),
    points=(
        "influence_start",
        "influence_iteration",
        "influence_end",
        "prune_nodes_end",
        "prune_edges_raw",
        "prune_edge_scores",
        "prune_edges_end",
    ),
    tables=(NODES, EDGES, INFLUENCE_TRACES),
    run_columns=(
        RunColumn("n_nodes_kept", pa.int64(), _n_nodes_kept),
        RunColumn("n_edges_kept", pa.int64(), _n_edges_kept),
    ),
    retention="keep",
)
