"""Transcoders: the shipped sets meet the targets and load in the reference; save/load works."""

import pytest
import torch

from circuitflow.attribution import load_transcoders
from circuitflow.training import evaluate
from circuitflow.training.config import TranscoderTrainConfig
from circuitflow.training.evaluate import DenseDecoder
from circuitflow.training.transcoders import (
    CrossLayerTranscoder,
    PerLayerTranscoders,
    batch_threshold,
    train_transcoders,
)

SETS = ["plt", "clt"]


@pytest.fixture(scope="module", params=SETS)
def shipped_set(request, shipped_dir):
    directory = shipped_dir / "transcoders" / request.param
    return request.param, load_transcoders(directory, lazy_decoder=False)


def test_reconstruction_target(shipped_model, shipped_set, eval_tokens):
    _, tc = shipped_set
    metrics = evaluate.reconstruction_metrics(shipped_model, tc, eval_tokens)
    assert max(metrics["fvu"]) <= 0.01
    assert all(0 < a < 100 for a in metrics["active_per_token"])


def test_splice_target(shipped_model, shipped_set, split, eval_tokens):
    _, tc = shipped_set
    facts = {"one_hop": split.one_hop, "two_hop": split.two_hop_train}
    metrics = evaluate.splice_metrics(shipped_model, tc, facts, eval_tokens)
    assert metrics["accuracy_one_hop"] >= 0.95
    assert metrics["accuracy_two_hop"] >= 0.95
    assert metrics["agreement"] >= 0.95


def test_spliced_restores_the_model(shipped_model, shipped_set, eval_tokens):
    _, tc = shipped_set
    before = shipped_model(eval_tokens[:2])
    with evaluate.spliced(shipped_model, tc):
        inside = shipped_model(eval_tokens[:2])
    torch.testing.assert_close(shipped_model(eval_tokens[:2]), before)
    assert not torch.allclose(inside, before)


def _reference(kind: str, directory):
    if kind == "plt":
        from circuit_tracer.transcoder.single_layer_transcoder import load_transcoder_set

        paths = {i: str(directory / f"layer_{i}.safetensors") for i in range(4)}
        return load_transcoder_set(
            paths, scan="capitals-4l", feature_input_hook="ln2.hook_normalized",
            feature_output_hook="hook_mlp_out", device=torch.device("cpu"),
        )  # fmt: skip
    from circuit_tracer.transcoder.cross_layer_transcoder import load_clt

    return load_clt(
        str(directory), feature_input_hook="ln2.hook_normalized",
        feature_output_hook="hook_mlp_out", device=torch.device("cpu"), dtype=torch.float32,
    )  # fmt: skip


def test_reference_reads_the_shipped_files(shipped_dir, shipped_model, shipped_set, eval_tokens):
    """circuit-tracer 0.5 loads each set and encodes/decodes exactly as we do."""
    pytest.importorskip("circuit_tracer")
    kind, tc = shipped_set
    ref = _reference(kind, shipped_dir / "transcoders" / kind)
    x, _ = evaluate.mlp_activations(
        shipped_model, eval_tokens[:2], tc.feature_input_hook, tc.feature_output_hook
    )
    x = x.flatten(1, 2)  # (L, N, d)
    ours = {layer: tc.encode(layer, x[layer]) for layer in range(4)}  # each (N, F)
    decoder = DenseDecoder(tc)
    with torch.no_grad():
        for layer in range(4):
            torch.testing.assert_close(ref.encode_layer(x[layer], layer), ours[layer])
        if kind == "plt":
            for layer in range(4):
                got = ref.transcoders[layer].decode(ours[layer])
                want = decoder.decode_layer(ours, layer)
                torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
        else:
            got = ref.decode(torch.stack([ours[layer] for layer in range(4)]))  # (L, N, d)
            want = torch.stack([decoder.decode_layer(ours, layer) for layer in range(4)])
            torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("cls", [PerLayerTranscoders, CrossLayerTranscoder])
@pytest.mark.parametrize("jump", [False, True])
def test_save_load_round_trip(tmp_path, cls, jump):
    torch.manual_seed(0)
    tc = cls(3, 8, 16)
    with torch.no_grad():
        for p in tc.parameters():
            p.normal_()
    if jump:
        tc.threshold = torch.rand(3, 16)
    tc.save(tmp_path, "tiny")
    back = load_transcoders(tmp_path, lazy_decoder=False)
    assert back.cross_layer == (cls is CrossLayerTranscoder)
    assert back.activation.kind == ("jumprelu" if jump else "relu")
    x = torch.randn(3, 5, 8)
    acts = {layer: back.encode(layer, x[layer]) for layer in range(3)}
    with torch.no_grad():
        want_acts = tc.encode(x)
        want = tc.decode(want_acts)
    decoder = DenseDecoder(back)
    for layer in range(3):
        torch.testing.assert_close(acts[layer], want_acts[layer])
        torch.testing.assert_close(decoder.decode_layer(acts, layer), want[layer])


def test_cross_layer_decode_sums_earlier_layers():
    torch.manual_seed(0)
    tc = CrossLayerTranscoder(3, 4, 6)
    with torch.no_grad():
        for p in tc.parameters():
            p.normal_()
    acts = torch.rand(3, 2, 6)
    out = tc.decode(acts)
    for layer in range(3):
        manual = tc.b_dec[layer] + sum(
            acts[i] @ tc.W_dec[i][:, layer - i] for i in range(layer + 1)
        )
        torch.testing.assert_close(out[layer], manual)


def test_batch_threshold_keeps_about_k_per_token():
    pre = torch.randn(2, 512, 256)
    theta = batch_threshold(pre, 8, torch.Generator().manual_seed(0))
    active = (pre > theta[:, None, None]).float().sum(-1).mean()
    assert 7 < active < 9


@pytest.mark.parametrize("activation", ["relu", "jumprelu"])
@pytest.mark.parametrize("kind", ["transcoder_set", "cross_layer_transcoder"])
def test_training_fits_a_sparse_map(activation, kind):
    """A few hundred steps recover outputs written by a few active directions."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4096, 16, generator=g)
    y = torch.relu(x @ torch.randn(16, 32, generator=g) - 1.5) @ torch.randn(32, 16, generator=g)
    cfg = TranscoderTrainConfig(
        kind=kind, activation=activation, n_features=64, k=4, l1_coefficient=1e-3, lr=1e-2,
        steps=300, batch_size=512,
    )  # fmt: skip
    tc = train_transcoders(x, y, cfg, progress=False).transcoders
    with torch.no_grad():
        err = (tc.decode(tc.encode(x)) - y).pow(2).sum((1, 2))
        fvu = err / (y - y.mean(1, keepdim=True)).pow(2).sum((1, 2))
    assert fvu.max() < 0.35
