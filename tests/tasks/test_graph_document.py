"""A run's graph document: the stored export with labels and a saved subgraph laid over it."""

import json
import shutil

import pyarrow as pa
from circuit_tracer.frontend.graph_models import Model

from circuitflow.store import table_schema
from circuitflow.tasks.graph_document import graph_document, stored_document
from circuitflow.tasks.subgraphs import Subgraph, save_subgraph


def test_labels_and_newest_subgraph_are_laid_over_the_stored_export(seed_run):
    run = seed_run.open()
    doc, chosen = graph_document(run)
    assert chosen is None and doc["qParams"]["pinnedIds"] == []
    features = [n for n in doc["nodes"] if n["feature_type"] == "cross layer transcoder"]
    layer, feature, _ = features[0]["node_id"].split("_")
    digest = doc["metadata"]["info"]["provenance"]["transcoders_digest"]

    schema = table_schema(("layer", pa.int32()), ("feature", pa.int64()), ("label", pa.string()),
                          ("transcoders_digest", pa.string()))  # fmt: skip
    run.store.catalog.tables["labels"] = schema
    run.store.catalog.write("labels", "someone", [
        {"layer": int(layer), "feature": int(feature), "label": "a label",
         "transcoders_digest": digest},
    ])  # fmt: skip
    pins = tuple(n["node_id"] for n in features[:2])
    save_subgraph(run.store, run.run_id, Subgraph("old", pins[:1]))
    save_subgraph(run.store, run.run_id, Subgraph("new", pins, (("pair", *pins),)))

    doc, chosen = graph_document(run)
    assert chosen.name == "new" and doc["qParams"]["pinnedIds"] == list(pins)
    assert doc["qParams"]["supernodes"] == [["pair", *pins]]
    assert doc["nodes"][doc["nodes"].index(features[0] | {"clerp": "a label"})]
    assert graph_document(run, "old")[0]["qParams"]["pinnedIds"] == list(pins[:1])
    Model(**json.loads(json.dumps(doc)))


def test_a_missing_export_is_computed_again_from_the_stored_prune(seed_run):
    run = seed_run.open()
    before = stored_document(run)
    shutil.rmtree(run.store.object_path("export", run.outputs["export"].key))
    again = stored_document(run)
    assert run.store.exists("export", run.outputs["export"].key)
    for doc in (before, again):
        doc["metadata"]["info"].pop("create_time_ms")
    assert again == before
