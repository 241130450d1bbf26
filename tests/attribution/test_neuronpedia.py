"""The export validates against the published Neuronpedia JSON Schema and matches the graph."""

import json

import jsonschema
import pytest
import torch

from circuitflow.attribution import prune
from circuitflow.attribution.neuronpedia import (
    GraphSchemaError,
    cantor,
    graph_json,
    schema,
    validate,
)
from tests.attribution.test_influence import hand_graph


def test_export_validates_and_lists_kept_nodes_and_links():
    graph = hand_graph()
    graph.token_strings = ["<bos>", " Dallas"]
    graph.logit_tokens = [" Austin"]
    pruned = prune(graph, node_threshold=0.7, edge_threshold=0.98)
    doc = graph_json(
        graph,
        pruned,
        slug="hand",
        scan="toy",
        prompt="Dallas",
        node_threshold=0.7,
        edge_threshold=0.98,
    )
    validate(json.loads(json.dumps(doc)))
    jsonschema.validate(json.loads(json.dumps(doc)), schema())  # the reference validator agrees
    assert [n["node_id"] for n in doc["nodes"]] == ["0_5_1", "E_3_0", "E_10_1", "L_11_1"]
    feature = doc["nodes"][0]
    assert feature["feature"] == cantor(0, 5) and feature["activation"] == 1.0
    links = {(l["source"], l["target"]): l["weight"] for l in doc["links"]}
    assert links == {("E_3_0", "0_5_1"): 2.0, ("E_10_1", "0_5_1"): 2.0, ("0_5_1", "L_11_1"): 3.0}
    assert int(pruned.edge_mask.sum()) == len(doc["links"])
    assert torch.equal(
        torch.tensor([n["influence"] for n in doc["nodes"]]),
        pruned.cumulative_scores[pruned.node_mask],
    )


def test_validation_catches_a_broken_document():
    graph = hand_graph()
    doc = graph_json(
        graph,
        prune(graph),
        slug="x",
        scan="toy",
        prompt="",
        node_threshold=0.8,
        edge_threshold=0.98,
    )
    del doc["nodes"][0]["ctx_idx"]
    with pytest.raises(GraphSchemaError, match="ctx_idx"):
        validate(doc)
    with pytest.raises(jsonschema.ValidationError, match="ctx_idx"):
        jsonschema.validate(doc, schema())
