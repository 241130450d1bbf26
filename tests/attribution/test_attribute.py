"""`attribute` against the reference implementation, and its handling of bad input.

Parity: circuit-tracer's TransformerLens backend, built on the same weights and reading the same
transcoder files, must give the same active and selected features, targets and adjacency (to 1e-4
of the largest |A|), and the same pruning masks and scores.
"""

import pytest
import torch

from circuitflow.attribution import (
    Activation,
    BudgetError,
    ModelMismatchError,
    Precompute,
    PromptError,
    ReplacementModel,
    TargetError,
    assemble,
    attribute,
    choose_targets,
    compute_rows,
    precompute,
    tokenize,
)
from circuitflow.attribution.graph import AttributionGraph
from circuitflow.attribution.toy import CROSS_LAYER, PER_LAYER, random_model, random_transcoders
from tests.attribution.reference import assert_same_graph, reference_attribute, reference_model
from tests.attribution.test_rows import frozen_target_change

PROMPT = "w1 w2 w3 w5 w8 w13 w21"

CASES = [
    ("gpt2", PER_LAYER, Activation("relu"), None),
    ("gpt2", PER_LAYER, Activation("topk", 6), 60),
    ("llama", PER_LAYER, Activation("jumprelu"), None),
    ("llama", CROSS_LAYER, Activation("relu"), 50),
    ("gemma2", PER_LAYER, Activation("relu"), 40),
    ("gemma2", CROSS_LAYER, Activation("jumprelu"), None),
]


@pytest.mark.parametrize("family,kind,activation,budget", CASES)
def test_parity_with_reference(family, kind, activation, budget):
    model = random_model(family)
    tc = random_transcoders(model, kind=kind, activation=activation)
    ours = attribute(PROMPT, ReplacementModel(model, tc), batch_size=16, max_feature_nodes=budget)
    ref = reference_attribute(
        PROMPT, reference_model(model, tc), batch_size=16, max_feature_nodes=budget
    )

    assert torch.equal(ours.tokens, ref.input_tokens.long())
    assert torch.equal(ours.active_features, ref.active_features.long())
    torch.testing.assert_close(ours.activation_values, ref.activation_values.float())
    assert torch.equal(ours.selected_features, ref.selected_features.long())
    if budget is not None:
        assert ours.n_features == budget < len(ours.active_features)
    assert_same_graph(ours, ref)


def test_resume_from_reloaded_precompute_gives_identical_adjacency():
    model = random_model("llama")
    rm = ReplacementModel(model, random_transcoders(model))
    direct = attribute(PROMPT, rm, batch_size=8)

    tensors, meta, _ = precompute(rm, tokenize(rm, PROMPT)).to_parts()
    reloaded = Precompute.from_parts({k: v.numpy() for k, v in tensors.items()}, meta)
    targets = choose_targets(rm, reloaded)
    rows = compute_rows(rm, reloaded, targets, batch_size=8)
    resumed = assemble(reloaded, targets, rows)
    assert torch.equal(resumed.adjacency, direct.adjacency)

    tensors, meta, _ = resumed.to_parts()
    again = AttributionGraph.from_parts(tensors, meta)
    assert torch.equal(again.adjacency, direct.adjacency) and again.n_layers == direct.n_layers


def test_vocabulary_size_equal_to_d_model_and_start_token_zero():
    # The reference guesses the unembedding's orientation from its shape and skips a start id
    # of 0; we read TransformerLens's (d_model, d_vocab) layout and accept id 0.
    model = random_model("gpt2", d_vocab=32, start_id=0)
    assert model.cfg.d_model == model.cfg.d_vocab == 32
    rm = ReplacementModel(model, random_transcoders(model))
    graph = attribute("w1 w2 w3 w4", rm, batch_size=8)
    assert graph.tokens[0] == 0 == model.tokenizer.bos_token_id
    # A transposed unembedding would give wrong logit rows: check them by intervention.
    logit = graph.logit_start
    sources = torch.nonzero(graph.adjacency[logit].abs() > 0).flatten()[:4].tolist()
    assert sources
    scale = float(graph.adjacency.abs().max())
    for source in sources:
        expected = frozen_target_change(rm, graph, source, logit)
        assert float(graph.adjacency[logit, source]) == pytest.approx(expected, abs=2e-5 * scale)


def test_explicit_targets_as_strings_and_ids():
    model = random_model("gpt2")
    rm = ReplacementModel(model, random_transcoders(model))
    graph = attribute(PROMPT, rm, targets=["w7", 12], batch_size=8)
    assert graph.logit_token_ids.tolist() == [model.tokenizer.convert_tokens_to_ids("w7"), 12]
    probs = torch.softmax(model(graph.tokens[None])[0, -1], -1)
    torch.testing.assert_close(graph.logit_probabilities, probs[graph.logit_token_ids].detach())


@pytest.fixture(scope="module")
def tiny():
    model = random_model("gpt2", n_ctx=8)
    return ReplacementModel(model, random_transcoders(model))


@pytest.mark.parametrize(
    "prompt,kwargs,error,message",
    [
        ("", {}, PromptError, "empty"),
        ("   ", {}, PromptError, "empty"),
        ([], {}, PromptError, "empty"),
        ("w1 " * 8, {}, PromptError, "context holds 8"),
        ("w1 zebra w2", {}, PromptError, "zebra"),
        ([1, 2, 999], {}, PromptError, "outside the vocabulary"),
        ("w1 w2", {"max_feature_nodes": 0}, BudgetError, "max_feature_nodes"),
        ("w1 w2", {"batch_size": 0}, BudgetError, "batch_size"),
        ("w1 w2", {"desired_logit_prob": 1.5}, TargetError, "desired_logit_prob"),
        ("w1 w2", {"desired_logit_prob": 0}, TargetError, "desired_logit_prob"),
        ("w1 w2", {"max_n_logits": 0}, TargetError, "max_n_logits"),
        ("w1 w2", {"targets": ["zebra"]}, TargetError, "not in the model's vocabulary"),
        ("w1 w2", {"targets": ["w1 w2"]}, TargetError, "exactly one token"),
        ("w1 w2", {"targets": [10_000]}, TargetError, "outside"),
    ],
)
def test_bad_input_raises_a_clear_error(tiny, prompt, kwargs, error, message):
    with pytest.raises(error, match=message):
        attribute(prompt, tiny, **kwargs)


def test_transcoders_for_another_model_are_refused():
    model = random_model("gpt2")
    wider = random_model("gpt2", d_model=48, d_head=12)
    deeper = random_model("gpt2", n_layers=4)
    with pytest.raises(ModelMismatchError, match="d_model=48"):
        ReplacementModel(model, random_transcoders(wider))
    with pytest.raises(ModelMismatchError, match="cover 4 layers"):
        ReplacementModel(model, random_transcoders(deeper))
    with pytest.raises(ModelMismatchError, match="no hook 'blocks.0.ln2.hook_missing'"):
        ReplacementModel(model, random_transcoders(model, feature_input_hook="ln2.hook_missing"))
