"""Stage export: the pruned graph as a graph document that circuit-tracer's and Neuronpedia's
frontends read (see `attribution.neuronpedia`), validated against the published schema.

Its metadata records where the graph came from: the model, the transcoder set, their digests,
the thresholds, the attribution settings and the run id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from circuitflow.attribution.neuronpedia import Provenance, graph_json, validate
from circuitflow.attribution.serialize import Record
from circuitflow.tasks.context import RunContext
from circuitflow.tasks.declare import Stage
from circuitflow.tasks.runtime import identity
from circuitflow.tasks.stages.imported import NAME as IMPORTED


@dataclass
class ExportedGraph(Record):
    """graph_json: the JSON document's bytes (stored as the object's file `graph_json`)."""

    graph_json: bytes


def provenance(run: RunContext) -> Provenance:
    params, setup = run.params, run.setup
    settings = {
        "max_n_logits": params.max_n_logits,
        "desired_logit_prob": params.desired_logit_prob,
        "max_feature_nodes": params.max_feature_nodes,
        "batch_size": params.batch_size,
        "update_interval": params.update_interval,
    }
    return Provenance(
        slug=run.run_id,
        scan=setup.model_label,
        prompt=run.prompt,
        transcoders=setup.transcoders,
        model=setup.model,
        run_id=run.run_id,
        model_digest=identity(setup, "model"),
        transcoders_digest=identity(setup, "transcoders"),
        settings={} if IMPORTED in run.outputs else settings,  # an imported file has none
    )


def compute(run: RunContext) -> ExportedGraph:
    doc = graph_json(
        run.graph,
        run.record("prune").result(),
        provenance(run),
        node_threshold=run.params.node_threshold,
        edge_threshold=run.params.edge_threshold,
    )
    validate(doc)
    return ExportedGraph(json.dumps(doc).encode())


STAGE = Stage(
    name="export",
    version=2,  # 2: the field's node ids, circuit-tracer's node fields, provenance
    inputs=("prune",),
    params=("prompt", "run_id"),
    record=ExportedGraph,
    compute=compute,
    retention="keep",
)
