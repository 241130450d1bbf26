"""Attribution on the seed prompt and the circuit check, on the shipped files; the model card."""

import json

import pytest

from circuitflow.attribution import load_transcoders
from circuitflow.training import evaluate, model_card


@pytest.fixture(scope="module")
def plt_result(shipped_dir, shipped_model):
    tc = load_transcoders(shipped_dir / "transcoders" / "plt", lazy_decoder=False)
    return evaluate.seed_attribution(shipped_model, tc)


def test_seed_attribution_scores(plt_result):
    assert plt_result["replacement_score"] >= 0.8
    assert plt_result["completeness_score"] >= 0.9
    assert 0 < plt_result["n_nodes_kept"] < plt_result["n_nodes"]
    assert plt_result["n_edges_kept"] > 0


def test_circuit_check(plt_result):
    """Ablating the 5 most influential features at " Dallas" lowers " Austin" (minus the mean
    logit) at least 3 times as much as ablating 5 random active features there."""
    check = plt_result["circuit_check"]
    assert check["top_drop"] > 0
    assert check["top_drop"] >= 3 * check["random_drop"]
    assert len(check["top_features"]) == 5
    assert all(pos == check["position"] for _, pos, _ in check["top_features"])


def test_circuit_check_cross_layer(shipped_dir, shipped_model):
    tc = load_transcoders(shipped_dir / "transcoders" / "clt", lazy_decoder=False)
    assert evaluate.seed_attribution(shipped_model, tc)["circuit_check"]["passed"]


def test_model_card_renders_the_shipped_metrics(shipped_dir):
    metrics = json.loads((shipped_dir / "metrics.json").read_text())
    card = model_card.render(metrics)
    assert card == (shipped_dir / "MODEL_CARD.md").read_text()
    assert "**NO**" not in card  # every target met


def test_dense_decoder_matches_sparse_reconstruction(shipped_dir, shipped_model, eval_tokens):
    """Our batch decoder agrees with `Transcoders.reconstruct` (attribution's own path)."""
    import torch

    for kind in ("plt", "clt"):
        tc = load_transcoders(shipped_dir / "transcoders" / kind)
        x, _ = evaluate.mlp_activations(
            shipped_model, eval_tokens[:1], tc.feature_input_hook, tc.feature_output_hook
        )
        x = x[:, 0]  # (L, pos, d)
        acts = torch.stack([tc.encode(layer, x[layer]) for layer in range(tc.n_layers)])
        active = acts.nonzero()  # (n, 3) layer, pos, feature
        want = tc.reconstruct(active, acts[tuple(active.T)], x)
        decoder = evaluate.DenseDecoder(tc)
        got = torch.stack(
            [decoder.decode_layer(dict(enumerate(acts)), layer) for layer in range(tc.n_layers)]
        )
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
