"""Stage export: the pruned graph as Neuronpedia-format JSON, validated against the schema."""

from __future__ import annotations

import json
from dataclasses import dataclass

from circuitflow.attribution.neuronpedia import graph_json, validate
from circuitflow.attribution.serialize import Record
from circuitflow.tasks.context import RunContext
from circuitflow.tasks.declare import Stage


@dataclass
class ExportedGraph(Record):
    """graph_json: the JSON document's bytes (stored as the object's file `graph_json`)."""

    graph_json: bytes


def compute(run: RunContext) -> ExportedGraph:
    params = run.params
    doc = graph_json(
        run.graph,
        run.record("prune").result(),
        slug=run.run_id,
        scan=run.setup.model_label,
        prompt=run.prompt,
        node_threshold=params.node_threshold,
        edge_threshold=params.edge_threshold,
        generation_settings={
            "max_feature_nodes": params.max_feature_nodes,
            "batch_size": params.batch_size,
            "update_interval": params.update_interval,
        },
    )
    validate(doc)
    return ExportedGraph(json.dumps(doc).encode())


STAGE = Stage(
    name="export",
    version=1,
    inputs=("prune",),
    params=("prompt", "run_id"),
    record=ExportedGraph,
    compute=compute,
    retention="keep",
)
