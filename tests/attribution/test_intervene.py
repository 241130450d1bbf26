"""`intervene` against a hand-written hook computation on the same model."""

import pytest
import torch

from circuitflow.attribution import ReplacementModel, intervene, tokenize
from circuitflow.attribution.intervene import InterventionError
from circuitflow.attribution.toy import CROSS_LAYER, PER_LAYER, random_model, random_transcoders

PROMPT = "w3 w1 w4 w1 w5"


def manual(rm, tokens, layer, pos, feature, value, freeze):
    """Add (value - a) x decoder rows at the output hooks by hand; later layers run as usual."""
    model, tc = rm.model, rm.transcoders
    patterns = {}
    if freeze:
        _, cache = model.run_with_cache(
            tokens[None], names_filter=lambda n: n.endswith("hook_pattern")
        )
        patterns = dict(cache.items())
    x = {}

    def grab(acts, hook):
        x["in"] = acts[0, pos].clone()
        return acts

    hooks = [(n, lambda a, hook: patterns[hook.name]) for n in patterns]
    hooks.append((tc.input_hook(layer), grab))
    rows = tc.decoder_rows(layer, torch.tensor([feature]))[0]

    def add(k):
        def hook(acts, hook):
            a = tc.encode(layer, x["in"])[feature]
            acts = acts.clone()
            acts[0, pos] += (value - a) * rows[k]
            return acts

        return hook

    for k in range(rows.shape[0]):
        hooks.append((tc.output_hook(layer + k), add(k)))
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        return model(tokens[None])[0]


@pytest.mark.parametrize("kind", [PER_LAYER, CROSS_LAYER])
@pytest.mark.parametrize("freeze", [True, False])
def test_intervention_matches_manual_hooks(kind, freeze):
    model = random_model("llama")
    rm = ReplacementModel(model, random_transcoders(model, kind=kind))
    tokens = tokenize(rm, PROMPT)
    clean = model(tokens[None])[0].detach()
    acts = rm.transcoders.encode(
        0, model.run_with_cache(tokens[None])[1]["blocks.0." + rm.transcoders.feature_input_hook][0]
    )
    pos, feature = 2, int(acts[2].argmax())
    result = intervene(rm, PROMPT, [(0, pos, feature, 0.0)], freeze_attention=freeze)
    expected = manual(rm, tokens, 0, pos, feature, 0.0, freeze)
    torch.testing.assert_close(result.logits, expected, atol=1e-5, rtol=1e-5)
    assert (result.logits - clean).abs().max() > 1e-4  # ablating an active feature moves the logits
    assert result.activations[0, pos, feature] == 0


def test_setting_a_feature_to_its_own_value_changes_nothing():
    model = random_model("gpt2")
    rm = ReplacementModel(model, random_transcoders(model))
    base = intervene(rm, PROMPT, [])
    feature = int(base.activations[1, 3].argmax())
    same = intervene(rm, PROMPT, [(1, 3, feature, float(base.activations[1, 3, feature]))])
    torch.testing.assert_close(same.logits, base.logits)
    torch.testing.assert_close(base.logits, model(base.tokens[None])[0].detach())


@pytest.mark.parametrize(
    "bad,message",
    [
        ((9, 1, 0, 0.0), "layer 9"),
        ((0, 40, 0, 0.0), "position 40"),
        ((0, 1, 10_000, 0.0), "feature 10000"),
        ((0, 1), "is \\(layer"),
    ],
)
def test_bad_interventions(bad, message):
    model = random_model("gpt2")
    rm = ReplacementModel(model, random_transcoders(model))
    with pytest.raises(InterventionError, match=message):
        intervene(rm, PROMPT, [bad])
