"""A recorded run's graph document as people take it away: the export stage's document, with the
catalog's feature labels and a saved subgraph laid over it.

The export stage's document is read from the store; a run recorded before the export format
last changed (an older export stage version) gets it computed now from its stored prune result,
and stored under the current version's key like any stage output.
"""

from __future__ import annotations

import json

from circuitflow.attribution.neuronpedia import validate, with_labels, with_subgraph
from circuitflow.tasks.context import RunContext
from circuitflow.tasks.execute import run_stage
from circuitflow.tasks.labels import feature_labels
from circuitflow.tasks.recorded import require_stored
from circuitflow.tasks.stages import export
from circuitflow.tasks.subgraphs import Subgraph, pick, saved_subgraphs


def stored_document(run: RunContext) -> dict:
    """The export stage's document for the run (computed now if the store lacks it)."""
    require_stored(run, "prune")
    output = run_stage(export.STAGE, run)
    return json.loads(run.store.open(export.STAGE.name, output.key).blob("graph_json"))


def transcoders_digest(doc: dict) -> str:
    return doc["metadata"]["info"]["provenance"]["transcoders_digest"]


def graph_document(
    run: RunContext, subgraph: str | None = None, *, feature_json_url: str | None = None
) -> tuple[dict, Subgraph | None]:
    """The document with labels and the saved subgraph `subgraph` (None: the newest saved, if
    any) as its qParams; returns it with the subgraph used. Validated against the schema.

    `feature_json_url` tells the frontends where per-feature JSON files are served
    (`tasks.feature_files`)."""
    doc = stored_document(run)
    if feature_json_url:
        details = {"feature_json_base_url": feature_json_url.rstrip("/")}
        doc = doc | {"metadata": doc["metadata"] | {"feature_details": details}}
    doc = with_labels(doc, feature_labels(run.store, transcoders_digest(doc)))
    chosen = pick(saved_subgraphs(run.store, run.run_id), subgraph)
    if chosen is not None:
        doc = with_subgraph(doc, chosen.qparams())
    validate(doc)
    return doc, chosen
