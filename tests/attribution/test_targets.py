"""Custom targets on the built-in model: parity with circuit-tracer's `CustomTarget`, logit
differences, direction values, and direction rows checked by intervention on the frozen model."""

import pytest
import torch
from circuit_tracer.attribution.targets import CustomTarget

from circuitflow.attribution import TargetError, attribute, intervene, node_influence, prune
from circuitflow.attribution.target_specs import direction, logit_diff
from circuitflow.training.world import SEED_PROMPT
from tests.attribution.reference import assert_same_graph, reference_attribute, reference_model

AUSTIN_DALLAS = "logit(Austin)-logit(Dallas)"


def token(rm, text: str) -> int:
    (token_id,) = rm.tokenizer.encode(text, add_special_tokens=False)
    return token_id


def random_direction(rm, seed: int) -> torch.Tensor:
    return torch.randn(rm.cfg.d_model, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", ["plt", "clt"])
def test_custom_targets_match_circuit_tracer(builtin, kind):
    rm = builtin(kind)
    a, b = token(rm, " Austin"), token(rm, " Dallas")
    v = random_direction(rm, 0)
    ours = attribute(
        SEED_PROMPT, rm, targets=[logit_diff(" Austin", " Dallas"), direction("random", v, 0.5)]
    )
    ref = reference_attribute(
        SEED_PROMPT,
        reference_model(rm.model, rm.transcoders),
        attribution_targets=[
            CustomTarget(AUSTIN_DALLAS, 1.0, (rm.W_U[:, a] - rm.W_U[:, b]).detach()),
            CustomTarget("random", 0.5, v),
        ],
    )
    assert ours.logit_tokens == [t.token_str for t in ref.logit_targets]
    d_vocab = rm.cfg.d_vocab  # directions carry virtual ids after the vocabulary, as there
    assert ours.logit_token_ids.tolist() == [d_vocab, d_vocab + 1]
    assert_same_graph(ours, ref)


def test_logit_difference_graph_explains_austin_rather_than_dallas(builtin):
    rm = builtin("plt")
    graph = attribute(SEED_PROMPT, rm, targets=[logit_diff(" Austin", " Dallas")])
    assert graph.logit_tokens == [AUSTIN_DALLAS]
    kept = prune(graph).node_mask
    influence, _ = node_influence(graph)
    dallas = graph.token_strings.index("Dallas")
    tokens = range(graph.token_start, graph.logit_start)
    # Token nodes are always kept; Dallas's is the most influential of them, and features at
    # Dallas's position are kept too.
    assert max(tokens, key=lambda i: float(influence[i])) == graph.token_start + dallas
    assert kept[graph.token_start + dallas]
    features_at_dallas = [
        i for i in range(graph.n_features) if graph.node(i).pos == dallas and kept[i]
    ]
    assert features_at_dallas


def test_direction_values_are_what_the_model_computes(builtin):
    rm = builtin("plt")
    from circuitflow.attribution import choose_targets, precompute, tokenize

    pre = precompute(rm, tokenize(rm, SEED_PROMPT))
    v = random_direction(rm, 1)
    targets = choose_targets(rm, pre, [logit_diff(" Austin", " Dallas"), direction("v", v), 7])
    with torch.no_grad():
        logits, cache = rm.model.run_with_cache(pre.tokens[None])
        final = rm.model.ln_final(cache[f"blocks.{rm.n_layers - 1}.hook_resid_post"])[0, -1]
    last = logits[0, -1]
    a, b = token(rm, " Austin"), token(rm, " Dallas")
    assert targets.kinds == ["direction", "direction", "token"]
    assert targets.token_strings == [AUSTIN_DALLAS, "v", rm.tokenizer.decode([7])]
    expected = torch.stack([last[a] - last[b], v @ final, last[7]]).float()
    torch.testing.assert_close(targets.values, expected, atol=1e-4, rtol=1e-5)
    for rank in range(3):  # measuring the clean pass gives the stored values back
        value, prob = targets.measure(rank, last, final)
        assert value == pytest.approx(float(expected[rank]), abs=1e-4)
    assert targets.measure(2, last, final)[1] == pytest.approx(float(last.softmax(-1)[7]))


@pytest.mark.parametrize("kind", ["plt", "clt"])
def test_direction_rows_are_direct_effects_on_the_frozen_model(builtin, kind):
    """Ablating a feature with every layer constrained (frozen attention, norms and MLPs: the
    linear replacement) moves a direction's value by exactly minus its edge."""
    rm = builtin(kind)
    v = random_direction(rm, 2)
    graph = attribute(
        SEED_PROMPT, rm, targets=[logit_diff(" Austin", " Dallas"), direction("v", v)]
    )
    clean = intervene(rm, SEED_PROMPT, [], constrained_layers=range(rm.n_layers))
    vectors = {0: rm.W_U[:, token(rm, " Austin")] - rm.W_U[:, token(rm, " Dallas")], 1: v}
    scale = float(graph.adjacency.abs().max())
    for rank, vector in vectors.items():
        row = graph.adjacency[graph.logit_start + rank, : graph.n_features]
        for source in torch.argsort(row.abs(), descending=True)[:5].tolist():
            node = graph.node(source)
            ablated = intervene(
                rm,
                SEED_PROMPT,
                [(node.layer, node.pos, node.feature, 0.0)],
                constrained_layers=range(rm.n_layers),
            )
            change = vector.detach() @ (ablated.final_residual[-1] - clean.final_residual[-1])
            assert float(change) == pytest.approx(-float(row[source]), abs=1e-4 * scale)


def test_tokens_and_directions_mix_without_changing_each_other(builtin):
    rm = builtin("plt")
    tokens_only = attribute(SEED_PROMPT, rm, targets=[" Austin"])
    mixed = attribute(SEED_PROMPT, rm, targets=[" Austin", logit_diff(" Austin", " Dallas")])
    assert mixed.logit_token_ids.tolist() == [token(rm, " Austin"), rm.cfg.d_vocab + 1]
    n = tokens_only.logit_start
    torch.testing.assert_close(mixed.adjacency[mixed.logit_start, :n], tokens_only.adjacency[n, :n])


@pytest.mark.parametrize(
    "targets,message",
    [
        ([direction("short", [1.0, 2.0])], "has 2 entries; the model's residual stream"),
        ([logit_diff(" Austin", "Austin")], "names one token twice"),
        ([logit_diff(" Austin", "zebra")], "not in the model's vocabulary"),
        ([{"direction": "d"}], "needs a 'vector'"),
    ],
)
def test_bad_custom_targets_are_clear_errors(builtin, targets, message):
    with pytest.raises(TargetError, match=message):
        attribute(SEED_PROMPT, builtin("plt"), targets=targets)
