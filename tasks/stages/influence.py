"""Stage influence: every node's influence on the logits, its per-step trace, and the scores.

Reads the graph assembled from precompute, targets and rows (all covered by the rows key).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import torch

from circuitflow.attribution import graph_scores, node_influence
from circuitflow.attribution.serialize import Record
from circuitflow.tasks.context import RunContext
from circuitflow.tasks.declare import RunColumn, Stage


@dataclass
class Influence(Record):
    """influence: (N,) in node order; trace: (n_steps, N), row n the influence carried by paths
    of n + 1 edges; the replacement and completeness scores of the whole graph."""

    influence: torch.Tensor
    trace: torch.Tensor
    replacement_score: float
    completeness_score: float


def stack_trace(trace: list[torch.Tensor], n_nodes: int) -> torch.Tensor:
    """Per-step terms as one (n_steps, N) tensor."""
    return torch.stack(trace) if trace else torch.zeros(0, n_nodes)


def compute(run: RunContext) -> Influence:
    graph = run.graph
    influence, trace = node_influence(graph)
    replacement, completeness = graph_scores(graph)
    return Influence(influence, stack_trace(trace, graph.n_nodes), replacement, completeness)


def _replacement_score(run: RunContext) -> float:
    return run.record("influence").replacement_score


def _completeness_score(run: RunContext) -> float:
    return run.record("influence").completeness_score


STAGE = Stage(
    name="influence",
    version=1,
    inputs=("rows",),
    params=(),
    record=Influence,
    compute=compute,
    dims=(("influence", ("node",)), ("trace", ("step", "node"))),
    points=("graph_assembled", "influence_start", "influence_iteration", "influence_end"),
    run_columns=(
        RunColumn("replacement_score", pa.float64(), _replacement_score),
        RunColumn("completeness_score", pa.float64(), _completeness_score),
    ),
)
