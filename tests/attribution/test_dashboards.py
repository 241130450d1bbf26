"""Feature dashboards, checked against attribution's own forward pass (`precompute`), which
finds active features one prompt at a time by another route."""

import pytest
import torch

from circuitflow.attribution import ReplacementModel, load_model, load_transcoders
from circuitflow.attribution.dashboards import (
    DashboardParams,
    FeatureStats,
    batch_stats,
    logit_effect_matrix,
    logit_effects,
)
from circuitflow.attribution.precompute import precompute
from circuitflow.models import BUILTIN_MODEL

TEXTS = (
    "We visited Dallas last year",
    "The capital of the state containing Houston is Austin",
    "Lubbock is a large city",
    "People in France speak French",
)
PARAMS = DashboardParams(top_k=3, before=2, after=1)


@pytest.fixture(scope="module", params=["plt", "clt"])
def replacement(request):
    model = load_model(BUILTIN_MODEL)
    return ReplacementModel(model, load_transcoders(BUILTIN_MODEL / "transcoders" / request.param))


def token_ids(replacement, text):
    ids = replacement.tokenizer(text, add_special_tokens=False)["input_ids"]
    return torch.tensor([replacement.tokenizer.bos_token_id or 3, *ids])


def padded(sequences):
    lengths = torch.tensor([len(s) for s in sequences])
    tokens = torch.full((len(sequences), int(lengths.max())), 0, dtype=torch.long)
    for row, seq in enumerate(sequences):
        tokens[row, : len(seq)] = seq
    return tokens, lengths


def test_counts_sums_and_top_contexts_match_precompute(replacement):
    sequences = [token_ids(replacement, t) for t in TEXTS]
    stats = batch_stats(replacement, *padded(sequences), 0, PARAMS)
    tc = replacement.transcoders
    count = torch.zeros(tc.n_layers, tc.d_transcoder, dtype=torch.long)
    total = torch.zeros(tc.n_layers, tc.d_transcoder, dtype=torch.float64)
    best = torch.zeros(tc.n_layers, tc.d_transcoder)
    where = {}
    for doc, seq in enumerate(sequences):
        pre = precompute(replacement, seq)
        for (layer, pos, feature), value in zip(
            pre.active_features.tolist(), pre.activation_values.tolist(), strict=True
        ):
            count[layer, feature] += 1
            total[layer, feature] += value
            if value > best[layer, feature]:
                best[layer, feature] = value
                where[layer, feature] = (doc, pos)
    assert stats.n_tokens == sum(len(s) - 1 for s in sequences)  # the start token not counted
    assert torch.equal(stats.count, count)  # padding never counts
    torch.testing.assert_close(stats.total, total, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(stats.top_values[..., 0], best, rtol=1e-4, atol=1e-5)
    assert int(stats.histogram.sum()) == int(count.sum())
    for (layer, feature), (doc, pos) in list(where.items())[:200]:
        assert stats.top_where[layer, feature, 0].tolist() == [doc, pos]
        window = stats.window_ids[layer, feature, 0]
        assert int(window[PARAMS.before]) == int(sequences[doc][pos])  # the marked token
        assert float(stats.window_acts[layer, feature, 0, PARAMS.before]) == pytest.approx(
            float(best[layer, feature]), rel=1e-4
        )


def test_chunks_merge_to_the_whole(replacement):
    sequences = [token_ids(replacement, t) for t in TEXTS]
    whole = batch_stats(replacement, *padded(sequences), 0, PARAMS)
    first = batch_stats(replacement, *padded(sequences[:1]), 0, PARAMS)
    rest = batch_stats(replacement, *padded(sequences[1:]), 1, PARAMS)
    empty = FeatureStats.empty(*whole.count.shape, PARAMS)
    merged = empty.merge(rest).merge(first)  # any order
    assert merged.n_tokens == whole.n_tokens
    assert torch.equal(merged.count, whole.count)
    assert torch.equal(merged.histogram, whole.histogram)
    torch.testing.assert_close(merged.total, whole.total, rtol=1e-4, atol=1e-5)  # float32 batches
    torch.testing.assert_close(merged.top_values, whole.top_values, rtol=1e-4, atol=1e-5)
    live = whole.top_values > 0
    assert torch.equal(merged.top_where[live], whole.top_where[live])


def test_quantiles_are_ordered_and_bounded(replacement):
    stats = batch_stats(replacement, *padded([token_ids(replacement, t) for t in TEXTS]), 0,
                        PARAMS)  # fmt: skip
    layer, feature = map(int, torch.nonzero(stats.count == stats.count.max())[0])
    q = stats.quantiles(layer, feature, (0.1, 0.5, 0.9, 1.0))
    assert q == sorted(q) and q[0] > 0 and q[-1] <= float(stats.act_max[layer, feature])


def test_direct_logit_effect_is_the_decoder_through_the_unembedding(replacement):
    """Writing a feature's decoder rows into the final residual changes the (demeaned) logits
    by its logit effects, when the final norm is left out: checked with the model's own
    unembed."""
    tc = replacement.transcoders
    layer, features = 1, torch.tensor([0, 5, 77])
    direction = tc.decoder_rows(layer, features).sum(1)  # (3, d)
    model = replacement.model
    logits = (
        model.unembed(direction[:, None, :])[:, 0]
        - model.unembed(torch.zeros_like(direction)[:, None, :])[:, 0]
    )
    expected = logits - logits.mean(1, keepdim=True)
    torch.testing.assert_close(logit_effect_matrix(replacement, layer)[features], expected,
                               rtol=1e-4, atol=1e-5)  # fmt: skip
    effects = logit_effects(replacement, 4)
    assert torch.equal(effects.promoted_ids[layer, 5], torch.topk(expected[1], 4).indices)
    assert torch.equal(effects.suppressed_ids[layer, 5], torch.topk(-expected[1], 4).indices)
