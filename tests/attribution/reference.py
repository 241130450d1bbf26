"""circuit-tracer (the reference implementation) built on the same weights as ours, for parity."""

from __future__ import annotations

import copy

import pytest
import torch
from circuit_tracer.attribution.attribute import attribute as reference_attribute
from circuit_tracer.graph import compute_graph_scores, prune_graph
from circuit_tracer.replacement_model.replacement_model_transformerlens import (
    TransformerLensReplacementModel,
)
from circuit_tracer.transcoder.activation_functions import TopK
from circuit_tracer.transcoder.cross_layer_transcoder import load_clt
from circuit_tracer.transcoder.single_layer_transcoder import load_transcoder_set

__all__ = [
    "assert_same_graph",
    "compute_graph_scores",
    "prune_graph",
    "reference_attribute",
    "reference_from",
    "reference_model",
]


def reference_model(model, transcoders, device: str = "cpu") -> TransformerLensReplacementModel:
    """The reference replacement model, reading the transcoders from the same directory, on
    `device` (the model's weights are copied there)."""
    path, device = transcoders.path, torch.device(device)
    if transcoders.cross_layer:
        ref_tc = load_clt(
            path,
            feature_input_hook=transcoders.feature_input_hook,
            feature_output_hook=transcoders.feature_output_hook,
            scan="test",
            device=device,
            dtype=torch.float32,
            lazy_decoder=False,
        )
    else:
        files = {i: f"{path}/layer_{i}.safetensors" for i in range(transcoders.n_layers)}
        ref_tc = load_transcoder_set(
            files,
            scan="test",
            feature_input_hook=transcoders.feature_input_hook,
            feature_output_hook=transcoders.feature_output_hook,
            device=device,
            dtype=torch.float32,
            lazy_encoder=False,
            lazy_decoder=False,
        )
        if transcoders.activation.kind == "topk":
            for layer_tc in ref_tc:
                layer_tc.activation_function = TopK(transcoders.activation.k)
    return reference_from(model, ref_tc, device)


def reference_from(model, ref_tc, device: str | torch.device = "cpu"):
    """The reference replacement model of `model` with circuit-tracer transcoders `ref_tc`."""
    cfg = copy.deepcopy(model.cfg)
    cfg.device = str(device)
    ref = TransformerLensReplacementModel(cfg, tokenizer=model.tokenizer)
    ref.load_state_dict(model.state_dict())
    ref._configure_replacement_model(ref_tc)
    return ref


def assert_same_graph(ours, ref) -> None:
    """Our AttributionGraph against the reference's Graph: the same targets and weights, the
    adjacency within 1e-4 of the largest |A|, the same pruning masks and scores."""
    from circuitflow.attribution import graph_scores, prune

    assert ours.logit_token_ids.tolist() == [t.vocab_idx for t in ref.logit_targets]
    torch.testing.assert_close(ours.logit_probabilities, ref.logit_probabilities.float())
    ref_A = ref.adjacency_matrix
    assert ours.adjacency.shape == ref_A.shape
    assert (ours.adjacency - ref_A).abs().max() <= 1e-4 * ref_A.abs().max()
    mine, theirs = prune(ours), prune_graph(ref)
    assert torch.equal(mine.node_mask, theirs.node_mask)
    assert torch.equal(mine.edge_mask, theirs.edge_mask)
    torch.testing.assert_close(mine.cumulative_scores, theirs.cumulative_scores)
    assert graph_scores(ours) == pytest.approx(compute_graph_scores(ref), abs=1e-5)


def reference_graph(graph, cfg, prompt: str = "", tokenizer_dir: str | None = None):
    """circuit-tracer's Graph holding exactly our graph (same adjacency, same node order), so
    that its `create_graph_files` can be run on the very graph we export."""
    from circuitflow.attribution.interop import to_circuit_tracer

    ref = to_circuit_tracer(graph, cfg, prompt=prompt, scan="test")
    if tokenizer_dir is not None:
        ref.cfg.tokenizer_name = tokenizer_dir  # create_graph_files loads it by this name
    return ref
