"""Ablation curves against plain `intervene` calls, on a toy model."""

import math

import pytest
import torch

from circuitflow.attribution import (
    ReplacementModel,
    choose_targets,
    intervene,
    precompute,
    tokenize,
)
from circuitflow.attribution.ablation import ablation_curves, doubling_ks
from circuitflow.attribution.target_specs import direction
from circuitflow.attribution.toy import random_model, random_transcoders

PROMPT = "w3 w1 w4 w1 w5 w9 w2"


@pytest.mark.parametrize(
    "n,also,expected",
    [
        (0, (5,), []),
        (1, (), [1]),
        (3, (5,), [1, 2, 3]),
        (5, (5,), [1, 2, 4, 5]),
        (41, (5,), [1, 2, 4, 5, 8, 16, 32, 41]),
        (64, (), [1, 2, 4, 8, 16, 32, 64]),
    ],
)
def test_doubling_ks(n, also, expected):
    assert doubling_ks(n, also) == expected


@pytest.fixture(scope="module")
def toy():
    model = random_model("llama")
    rm = ReplacementModel(model, random_transcoders(model))
    pre = precompute(rm, tokenize(rm, PROMPT))
    return rm, pre


def ablated(rm, features) -> object:
    return intervene(rm, PROMPT, [(l, p, f, 0.0) for l, p, f in features.tolist()])


def test_top_rows_are_the_interventions_they_name(toy):
    rm, pre = toy
    targets = choose_targets(rm, pre)
    top = pre.active_features[torch.argsort(pre.activation_values, descending=True)[:6]]
    curves = ablation_curves(
        rm, pre.tokens, targets, top, pre.active_features, [1, 2, 6], n_draws=3
    )
    clean = intervene(rm, PROMPT, []).logits[-1]
    token = int(targets.token_ids[0])
    assert curves.clean_value == pytest.approx(float(clean[token]))
    assert curves.clean_prob == pytest.approx(float(clean.softmax(-1)[token]))
    for row in torch.nonzero(~curves.random).flatten().tolist():
        k = int(curves.k[row])
        logits = ablated(rm, top[:k]).logits[-1]
        assert float(curves.value_change[row]) == pytest.approx(
            float(logits[token] - clean[token]), abs=1e-5
        )
        expected_prob = float(logits.softmax(-1)[token] - clean.softmax(-1)[token])
        assert float(curves.prob_change[row]) == pytest.approx(expected_prob, abs=1e-6)
    assert curves.k.tolist() == [1, 1, 1, 1, 2, 2, 2, 2, 6, 6, 6, 6]
    assert curves.draw.tolist() == [0, 0, 1, 2] * 3


def test_random_draws_are_nested_seeded_and_measured(toy):
    rm, pre = toy
    targets = choose_targets(rm, pre)
    top = pre.active_features[:4]
    run = lambda seed: ablation_curves(  # noqa: E731
        rm, pre.tokens, targets, top, pre.active_features, [2, 4], n_draws=2, seed=seed
    )
    first, again, other = run(0), run(0), run(1)
    assert torch.equal(first.draws, again.draws) and not torch.equal(first.draws, other.draws)
    assert first.draws.shape == (2, 4, 3)
    assert not torch.equal(first.draws[0], first.draws[1])  # draws differ from each other
    clean = intervene(rm, PROMPT, []).logits[-1]
    token = int(targets.token_ids[0])
    for row in torch.nonzero(first.random).flatten().tolist():
        k, d = int(first.k[row]), int(first.draw[row])
        chosen = first.draws[d, :k]  # random-k is the first k of the draw's order: nested
        expected = float(ablated(rm, chosen).logits[-1, token] - clean[token])
        assert float(first.value_change[row]) == pytest.approx(expected, abs=1e-5)


def test_a_direction_target_is_measured_by_its_value(toy):
    rm, pre = toy
    v = torch.randn(rm.cfg.d_model, generator=torch.Generator().manual_seed(3))
    targets = choose_targets(rm, pre, [direction("v", v)])
    top = pre.active_features[:3]
    curves = ablation_curves(rm, pre.tokens, targets, top, pre.active_features, [3], n_draws=0)
    clean = intervene(rm, PROMPT, []).final_residual[-1]
    after = ablated(rm, top).final_residual[-1]
    assert float(curves.value_change[0]) == pytest.approx(float(v @ (after - clean)), abs=1e-5)
    assert math.isnan(curves.clean_prob) and math.isnan(float(curves.prob_change[0]))


def test_k_beyond_the_features_is_refused(toy):
    rm, pre = toy
    with pytest.raises(ValueError, match="every k must be in"):
        ablation_curves(
            rm, pre.tokens, choose_targets(rm, pre), pre.active_features[:2], pre.active_features,
            [3], n_draws=1,
        )  # fmt: skip
