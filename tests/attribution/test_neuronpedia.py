"""The export: the published Neuronpedia JSON Schema, circuit-tracer's own graph model, and the
same nodes, influences and links as circuit-tracer's `create_graph_files` on the same graph."""

import copy
import json

import jsonschema
import pytest
import torch
from circuit_tracer.frontend.graph_models import Model
from circuit_tracer.utils.create_graph_files import create_graph_files

from circuitflow.attribution import ReplacementModel, attribute, load_model, load_transcoders, prune
from circuitflow.attribution.neuronpedia import (
    GraphSchemaError,
    Provenance,
    cantor,
    graph_json,
    schema,
    validate,
    with_labels,
    with_subgraph,
)
from circuitflow.attribution.toy import random_model, random_transcoders
from circuitflow.models import BUILTIN_MODEL
from tests.attribution.reference import reference_attribute, reference_graph, reference_model
from tests.attribution.test_influence import hand_graph

SEED = "The capital of the state containing Dallas is"


def hand_doc(node_threshold=0.7):
    graph = hand_graph()
    graph.token_strings = ["<bos>", " Dallas"]
    graph.logit_tokens = [" Austin"]
    pruned = prune(graph, node_threshold=node_threshold, edge_threshold=0.98)
    provenance = Provenance(slug="hand", scan="toy", prompt="Dallas", transcoders="toy-tc")
    doc = graph_json(graph, pruned, provenance, node_threshold=node_threshold, edge_threshold=0.98)
    return graph, pruned, json.loads(json.dumps(doc))


def test_export_validates_and_lists_kept_nodes_and_links():
    graph, pruned, doc = hand_doc()
    validate(doc)
    jsonschema.validate(doc, schema())  # the reference validator agrees with the compiled one
    Model(**doc)  # circuit-tracer's frontend model accepts it
    assert [n["node_id"] for n in doc["nodes"]] == ["0_5_1", "E_3_0", "E_10_1", "2_11_1"]
    feature, bos, dallas, logit = doc["nodes"]
    assert feature["feature"] == cantor(0, 5) and feature["activation"] == 1.0
    assert (bos["feature"], bos["layer"], dallas["feature"]) == (0, "E", 1)
    assert logit["layer"] == "2" and logit["feature"] == 11 and logit["is_target_logit"]
    assert logit["clerp"] == 'Output " Austin" (p=0.900)'
    links = {(l["source"], l["target"]): l["weight"] for l in doc["links"]}
    assert links == {("E_3_0", "0_5_1"): 2.0, ("E_10_1", "0_5_1"): 2.0, ("0_5_1", "2_11_1"): 3.0}
    assert int(pruned.edge_mask.sum()) == len(doc["links"])
    influences = [n["influence"] for n in doc["nodes"][:-1]]
    assert torch.equal(torch.tensor(influences), pruned.cumulative_scores[pruned.node_mask][:-1])
    assert doc["metadata"]["transcoder_list"] == ["toy-tc"]


def test_error_nodes_use_the_collision_free_id():
    graph = hand_graph()
    graph.adjacency[6, 3] = 5.0  # make the error node at layer 0, position 1 matter
    doc = graph_json(graph, prune(graph, 1.0, 1.0), Provenance("e", "toy", ""), node_threshold=1.0,
                     edge_threshold=1.0)  # fmt: skip
    (error,) = [n for n in doc["nodes"] if n["feature_type"] == "mlp reconstruction error"]
    assert error["node_id"] == "0_-1_1" and error["feature"] == -1 and error["layer"] == "0"
    Model(**doc)


def test_labels_and_subgraph_are_laid_over():
    _, _, doc = hand_doc()
    labelled = with_labels(doc, {(0, 5): "Texas cities", (0, 9): "unused"})
    assert labelled["nodes"][0]["clerp"] == "Texas cities"
    assert labelled["nodes"][-1]["clerp"].startswith("Output")  # logits keep theirs
    saved = with_subgraph(labelled, {"pinnedIds": ["0_5_1"], "supernodes": [["cities", "0_5_1"]]})
    assert saved["qParams"]["pinnedIds"] == ["0_5_1"]
    assert saved["qParams"]["supernodes"] == [["cities", "0_5_1"]]
    validate(saved)
    Model(**saved)
    assert doc["nodes"][0]["clerp"] == "" and doc["qParams"]["pinnedIds"] == []  # untouched


def test_validation_catches_a_broken_document():
    _, _, doc = hand_doc()
    del doc["nodes"][0]["ctx_idx"]
    with pytest.raises(GraphSchemaError, match="ctx_idx"):
        validate(doc)
    with pytest.raises(jsonschema.ValidationError, match="ctx_idx"):
        jsonschema.validate(doc, schema())


def _their_id(node: dict) -> str:
    """circuit-tracer 0.5.0's node id in the field's current convention (errors moved to -1)."""
    if node["feature_type"] == "mlp reconstruction error":
        return f"{node['layer']}_-1_{node['ctx_idx']}"
    return node["node_id"]


def _same_node(mine: str, theirs: str) -> bool:
    """Our id and circuit-tracer 0.5.0's name the same node ({L}_-1_{p} is its 0_{L}_{p})."""
    layer, feature, pos = mine.split("_")
    return theirs == (f"0_{layer}_{pos}" if feature == "-1" else mine)


def compare_with_theirs(mine: dict, theirs: dict, weight_tolerance: float) -> None:
    """Same nodes (ids, fields, influences) and links (order, weights) as circuit-tracer's file,
    reading 0.5.0's error ids in the field's current form."""
    assert [n["node_id"] for n in mine["nodes"]] == [_their_id(n) for n in theirs["nodes"]]
    for a, b in zip(mine["nodes"], theirs["nodes"], strict=True):
        for key in ("feature", "layer", "ctx_idx", "feature_type", "is_target_logit", "clerp"):
            assert a[key] == b[key], (a["node_id"], key)
        if a["feature_type"] != "mlp reconstruction error":
            assert a["jsNodeId"] == b["jsNodeId"]
        for key in ("influence", "activation", "token_prob"):
            if b[key] is None:
                assert a[key] is None, (a["node_id"], key)
            else:
                assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), (a["node_id"], key)
    # Their error ids collide with layer-0 feature ids, so links are matched one by one (both
    # list them in the edge mask's row-major order), not by id.
    assert len(mine["links"]) == len(theirs["links"])
    scale = max(abs(l["weight"]) for l in theirs["links"])
    for a, b in zip(mine["links"], theirs["links"], strict=True):
        assert _same_node(a["source"], b["source"]) and _same_node(a["target"], b["target"])
        assert abs(a["weight"] - b["weight"]) <= weight_tolerance * scale
    assert mine["metadata"]["prompt_tokens"] == theirs["metadata"]["prompt_tokens"]


@pytest.mark.parametrize("thresholds", [(0.8, 0.98), (0.6, 0.9)])
def test_create_graph_files_on_the_same_graph_writes_the_same(tmp_path, thresholds):
    """circuit-tracer's create_graph_files run on our very graph (a small random model)."""
    from circuitflow.attribution import save_model

    model = random_model("gpt2")
    ours = attribute("w1 w2 w3 w5 w8 w13", ReplacementModel(model, random_transcoders(model)),
                     batch_size=16)  # fmt: skip
    ours.token_strings = [model.tokenizer.decode([t]) for t in ours.tokens.tolist()]
    save_model(model, tmp_path / "model")
    ref = reference_graph(ours, model.cfg, tokenizer_dir=str(tmp_path / "model" / "tokenizer"))
    node_threshold, edge_threshold = thresholds
    create_graph_files(ref, "ref", tmp_path / "out", scan="toy", node_threshold=node_threshold,
                       edge_threshold=edge_threshold)  # fmt: skip
    theirs = json.loads((tmp_path / "out" / "ref.json").read_text())
    mine = graph_json(ours, prune(ours, node_threshold, edge_threshold), Provenance("o", "toy", ""),
                      node_threshold=node_threshold, edge_threshold=edge_threshold)  # fmt: skip
    mine = json.loads(json.dumps(mine))
    assert any(n["feature_type"] == "mlp reconstruction error" for n in mine["nodes"])
    compare_with_theirs(mine, theirs, weight_tolerance=0.0)  # the same matrix: equal weights


@pytest.mark.slow
def test_same_nodes_influences_and_links_as_circuit_tracer(tmp_path):
    """The built-in model's seed prompt, attributed by both on the same weights and transcoder
    files, written by circuit-tracer's create_graph_files and by us at the same thresholds."""
    model = load_model(BUILTIN_MODEL)
    transcoders = load_transcoders(BUILTIN_MODEL / "transcoders" / "plt", lazy_decoder=False)
    ours = attribute(SEED, ReplacementModel(model, transcoders), batch_size=64)
    ref = reference_attribute(SEED, reference_model(model, transcoders), batch_size=64)
    ref.cfg = copy.copy(ref.cfg)
    ref.cfg.tokenizer_name = str(BUILTIN_MODEL / "tokenizer")  # create_graph_files reloads it
    create_graph_files(ref, "ref", tmp_path, scan="capitals-4l", node_threshold=0.8,
                       edge_threshold=0.98)  # fmt: skip
    theirs = json.loads((tmp_path / "ref.json").read_text())
    provenance = Provenance(slug="ours", scan="capitals-4l", prompt=SEED)
    mine = graph_json(ours, prune(ours, 0.8, 0.98), provenance, node_threshold=0.8,
                      edge_threshold=0.98)  # fmt: skip
    mine = json.loads(json.dumps(mine))
    validate(mine)
    validate(theirs)
    Model(**mine)

    assert len(mine["nodes"]) > 20 and len(mine["links"]) > 100  # a real graph, not a toy
    assert any(n["feature_type"] == "mlp reconstruction error" for n in mine["nodes"])
    compare_with_theirs(mine, theirs, weight_tolerance=1e-4)  # two attributions: float noise
    # circuit-tracer writes the decoded input, start token included; we keep the user's text.
    assert theirs["metadata"]["prompt"].endswith(mine["metadata"]["prompt"])
