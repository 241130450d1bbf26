"""Reading transcoders in the public layout: kinds, activations, lazy decoders, bad files."""

import pytest
import torch
import yaml

from circuitflow.attribution import Activation, TranscoderError, load_transcoders
from circuitflow.attribution.toy import CROSS_LAYER, PER_LAYER, random_model, random_transcoders
from circuitflow.attribution.transcoders import save_transcoders


@pytest.fixture(scope="module")
def model():
    return random_model("gpt2")


def test_per_layer_encode_decode_matches_the_formula(model, tmp_path):
    tc = random_transcoders(model, skip=True, directory=tmp_path)
    assert not tc.cross_layer and tc.has_skip and tc.n_layers == 3
    x = torch.randn(5, tc.d_model)
    pre = x @ tc.W_enc[1].T + tc.b_enc[1]
    torch.testing.assert_close(tc.encode(1, x), torch.relu(pre))
    dense_dec = torch.stack(
        [tc.decoder_rows(l, torch.arange(tc.d_transcoder))[:, 0] for l in range(3)]
    )
    acts = tc.encode(1, x)
    active = torch.nonzero(acts)
    full = torch.cat([torch.ones(len(active), 1, dtype=torch.long), active], 1)
    inputs = torch.zeros(3, 5, tc.d_model)
    inputs[1] = x
    recon = tc.reconstruct(full, acts[active[:, 0], active[:, 1]], inputs)[1]
    expected = acts @ dense_dec[1] + tc.b_dec[1] + x @ tc.W_skip[1].T
    torch.testing.assert_close(recon, expected)


def test_lazy_and_eager_decoders_agree(model, tmp_path):
    random_transcoders(model, kind=CROSS_LAYER, directory=tmp_path)
    lazy = load_transcoders(tmp_path, lazy_decoder=True)
    eager = load_transcoders(tmp_path, lazy_decoder=False)
    assert lazy.lazy_decoder and not eager.lazy_decoder
    ids = torch.tensor([5, 0, 17])
    for layer in range(3):
        rows = lazy.decoder_rows(layer, ids)
        assert rows.shape == (3, 3 - layer, lazy.d_model)  # one row per output layer >= layer
        torch.testing.assert_close(rows, eager.decoder_rows(layer, ids))


@pytest.mark.parametrize("kind", [PER_LAYER, CROSS_LAYER])
def test_small_decoders_are_read_into_memory_by_default(model, tmp_path, monkeypatch, kind):
    """By default decoders stay in their files only past 256 MB in the run's dtype."""
    from circuitflow.attribution import transcoders

    random_transcoders(model, kind=kind, directory=tmp_path)
    small = load_transcoders(tmp_path)
    eager = load_transcoders(tmp_path, lazy_decoder=False)
    assert not small.lazy_decoder
    L, F, d = small.n_layers, small.d_transcoder, small.d_model
    layers_written = L * (L + 1) // 2 if kind == CROSS_LAYER else L
    assert small.decoder_elements() == layers_written * F * d
    ids = torch.tensor([3, 0, 11])
    for layer in range(L):
        torch.testing.assert_close(small.decoder_rows(layer, ids), eager.decoder_rows(layer, ids))

    float32_bytes = small.decoder_elements() * 4  # one byte short of it: left on disk
    monkeypatch.setattr(transcoders, "IN_MEMORY_DECODER_BYTES", float32_bytes - 1)
    assert load_transcoders(tmp_path).lazy_decoder
    assert not load_transcoders(tmp_path, dtype=torch.bfloat16).lazy_decoder  # half: it fits
    assert not load_transcoders(tmp_path, lazy_decoder=False).lazy_decoder


def test_activations(model, tmp_path):
    x = torch.randn(4, model.cfg.d_model)
    jump = random_transcoders(model, activation=Activation("jumprelu"), directory=tmp_path / "j")
    assert jump.activation.kind == "jumprelu"
    pre = jump.pre_activations(0, x)
    torch.testing.assert_close(jump.encode(0, x), pre * (pre > jump.threshold[0]))
    topk = random_transcoders(model, activation=Activation("topk", 5), directory=tmp_path / "k")
    acts = topk.encode(2, x)
    assert ((acts > 0).sum(-1) <= 5).all()
    assert torch.equal(
        acts > 0,
        (topk.pre_activations(2, x) >= topk.pre_activations(2, x).topk(5).values[:, -1:])
        & (topk.pre_activations(2, x) > 0),
    )
    with pytest.raises(TranscoderError, match="positive integer k"):
        Activation("topk")
    with pytest.raises(TranscoderError, match="unknown activation"):
        Activation("softplus")


def test_hook_names_may_be_given_with_their_block_prefix(model, tmp_path):
    tc = random_transcoders(
        model, feature_input_hook="blocks.0.ln2.hook_normalized", directory=tmp_path
    )
    assert tc.input_hook(2) == "blocks.2.ln2.hook_normalized"


def _write_plain(directory, **changes):
    L, F, d = 2, 6, 4
    args = dict(
        kind=PER_LAYER,
        W_enc=torch.randn(L, F, d),
        W_dec=torch.randn(L, F, d),
        b_enc=torch.zeros(L, F),
        b_dec=torch.zeros(L, d),
        feature_input_hook="ln2.hook_normalized",
    )
    save_transcoders(directory, **(args | changes))


def test_bad_directories_give_clear_errors(tmp_path):
    with pytest.raises(TranscoderError, match="not found"):
        load_transcoders(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TranscoderError, match="no config.yaml"):
        load_transcoders(tmp_path / "empty")

    _write_plain(tmp_path / "kind")
    (tmp_path / "kind/config.yaml").write_text(
        yaml.safe_dump({"model_kind": "sae", "feature_input_hook": "x", "feature_output_hook": "y"})
    )
    with pytest.raises(TranscoderError, match="model_kind is 'sae'"):
        load_transcoders(tmp_path / "kind")

    _write_plain(tmp_path / "missing")
    (tmp_path / "missing/layer_1.safetensors").unlink()
    (tmp_path / "missing/layer_2.safetensors").write_bytes(b"")
    with pytest.raises(TranscoderError, match="layer_1.safetensors"):
        load_transcoders(tmp_path / "missing")

    _write_plain(tmp_path / "corrupt")
    (tmp_path / "corrupt/layer_0.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(TranscoderError, match="cannot read"):
        load_transcoders(tmp_path / "corrupt")

    _write_plain(tmp_path / "shapes", W_dec=torch.randn(2, 6, 5))
    with pytest.raises(TranscoderError, match="W_dec has shape"):
        load_transcoders(tmp_path / "shapes")


def test_hub_reference_fails_clearly_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TranscoderError, match="could not fetch transcoders"):
        load_transcoders("nobody/no-such-transcoders/sub@main")


@pytest.mark.parametrize("kind", [PER_LAYER, CROSS_LAYER])
def test_lazy_encoder_and_offload_read_the_same_weights(model, tmp_path, kind):
    """Encoders left in their files (lazy, or offload to disk) give the eager encoders' rows
    and activations; offload to cpu on a CPU run keeps everything in memory, unchanged."""
    random_transcoders(model, kind=kind, directory=tmp_path)
    eager = load_transcoders(tmp_path, lazy_decoder=False)
    lazy = load_transcoders(tmp_path, lazy_encoder=True)
    disk = load_transcoders(tmp_path, offload="disk")
    cpu = load_transcoders(tmp_path, offload="cpu")
    assert lazy.W_enc is None and lazy.lazy_encoder and not eager.lazy_encoder
    assert disk.lazy_encoder and disk.lazy_decoder and not cpu.lazy_encoder
    x = torch.randn(4, eager.d_model)
    features = torch.tensor([[0, 1, 5], [2, 3, 0], [0, 2, 7], [1, 0, 17]])
    for tc in (lazy, disk, cpu):
        assert (tc.n_layers, tc.d_transcoder, tc.d_model) == (
            eager.n_layers,
            eager.d_transcoder,
            eager.d_model,
        )
        for layer in range(eager.n_layers):
            assert torch.equal(tc.encoder(layer), eager.W_enc[layer])
            assert torch.equal(tc.encode(layer, x), eager.encode(layer, x))
        expected = eager.W_enc[features[:, 0], features[:, 2]]  # indexed by hand, in memory
        assert torch.equal(tc.encoder_rows(features), expected)


def test_unknown_offload_is_refused(model, tmp_path):
    random_transcoders(model, directory=tmp_path)
    with pytest.raises(TranscoderError, match="offload must be cpu or disk"):
        load_transcoders(tmp_path, offload="gpu")
