"""Stage import: a graph that circuit-tracer computed, brought in whole (`circuitflow import`).

An imported run has no model here, so it cannot run tokenize, precompute, targets or rows:
this stage stands in for all four. Its record is the graph itself (`ImportedGraph`: our
`AttributionGraph` plus what the file says about where it came from), and the stages after it
(influence, prune, export) read it as `run.graph` and run as in any other run, at the run's
thresholds (`tasks.imports` declares that pipeline and drives it).

It is never computed: `tasks.imports` publishes it under a key made from the file's SHA-256, so
the same file imported twice is one object. It fills what the stages it replaces would have
filled where the file says it: the `logits` table (the targets' tokens and weights; the file
keeps no logit values) and the `runs` columns prompt_hash, n_tokens, n_active_features and
n_selected_features.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from circuitflow.attribution import AttributionGraph
from circuitflow.store import prompt_digest
from circuitflow.tasks.context import RunContext
from circuitflow.tasks.declare import RunColumn, Stage
from circuitflow.tasks.stages.targets import LOGITS

NAME = "import"


@dataclass
class ImportedGraph(AttributionGraph):
    """A circuit-tracer graph as ours, with its provenance.

    prompt:       the file's `input_string`
    scan:         the file's transcoder set identifier (a name, a list of names, or None)
    model_config: the file's model config (circuit-tracer's `cfg`) as JSON values
    """

    prompt: str = ""
    scan: str | list[str] | None = None
    model_config: dict[str, Any] = field(default_factory=dict)


def compute(run: RunContext) -> ImportedGraph:
    raise ValueError(
        "an imported graph is not computed: `circuitflow import GRAPH.pt` publishes it"
    )


def logit_entries(run: RunContext) -> list[dict]:
    graph: ImportedGraph = run.record(NAME)
    names = graph.logit_tokens or [""] * graph.n_logits
    return [
        {
            "rank": rank,
            "token_id": token,
            "token": name,
            "prob": weight,
            "name": name,
            "kind": "token",
            "weight": weight,
        }  # logit and value: circuit-tracer's files do not keep them
        for rank, (token, weight, name) in enumerate(
            zip(graph.logit_token_ids.tolist(), graph.logit_probabilities.tolist(), names,
                strict=True)
        )
    ]  # fmt: skip


def _graph(run: RunContext) -> ImportedGraph:
    return run.record(NAME)


STAGE = Stage(
    name=NAME,
    version=1,
    inputs=(),
    params=(),
    record=ImportedGraph,
    compute=compute,
    dims=(
        ("tokens", ("pos",)),
        ("active_features", ("active", "coordinate")),  # coordinate: (layer, pos, feature)
        ("activation_values", ("active",)),
        ("selected_features", ("selected",)),
        ("adjacency", ("target", "source")),
        ("logit_token_ids", ("logit",)),
        ("logit_probabilities", ("logit",)),
    ),
    tables=(dataclasses.replace(LOGITS, entries=logit_entries),),
    run_columns=(
        RunColumn("prompt_hash", pa.string(), lambda run: prompt_digest(_graph(run).tokens)),
        RunColumn("n_tokens", pa.int32(), lambda run: _graph(run).n_pos),
        RunColumn("n_active_features", pa.int64(), lambda run: len(_graph(run).active_features)),
        RunColumn("n_selected_features", pa.int64(), lambda run: _graph(run).n_features),
    ),
    retention="keep",  # the only copy: nothing here can recompute it
)
