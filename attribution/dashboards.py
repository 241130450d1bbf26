"""Feature dashboards: what each transcoder feature does over a corpus, computed in one pass.

A graph node "layer 1, feature 968" means nothing until you know when the feature fires and
what it writes. Running a corpus through the model and encoding every token with the
transcoders tells us, for every feature:

- its top-k activating contexts: the k tokens where it is strongest, each with a window of the
  text around it (`before` tokens, the token, `after` tokens) and the feature's activation on
  every token of the window;
- how often it fires (activation > 0) and its mean activation over all tokens;
- a histogram of its positive activations over fixed log-spaced bins, from which quantiles
  are estimated (exact quantiles would need every activation kept);
- the tokens its decoder direction promotes and suppresses most through the unembedding (its
  direct logit effect, demeaned over the vocabulary like a logit target's vector).

The statistics of two parts of a corpus combine exactly (`FeatureStats.merge`): counts and
sums add, histograms add, and the top-k of the union is the top-k of the two top-k lists. So a
corpus is cut into chunks that are computed independently (in parallel, or resumed after an
interruption) and merged in any order. The start token at position 0 is never counted, as in
attribution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from circuitflow.attribution.replacement import ReplacementModel
from circuitflow.attribution.serialize import Record

HISTOGRAM_LOW, HISTOGRAM_HIGH, HISTOGRAM_BINS = 1e-3, 1e3, 48  # log-spaced activation bins


@dataclass(frozen=True)
class DashboardParams:
    """How dashboards are computed: top-k contexts, their window, and tokens per batch."""

    top_k: int = 20
    before: int = 8  # tokens shown before the activating token
    after: int = 2  # and after it
    n_logits: int = 10  # promoted and suppressed tokens listed
    batch_sequences: int = 64

    @property
    def window(self) -> int:
        return self.before + 1 + self.after

    def to_dict(self) -> dict:
        return {
            "top_k": self.top_k,
            "before": self.before,
            "after": self.after,
            "n_logits": self.n_logits,
        }  # batch_sequences changes nothing in the result, so it is not part of any key


def histogram_edges() -> torch.Tensor:
    """(HISTOGRAM_BINS + 1,) log-spaced bin edges; values below the first go in bin 0, above
    the last in the last bin."""
    return torch.logspace(math.log10(HISTOGRAM_LOW), math.log10(HISTOGRAM_HIGH), HISTOGRAM_BINS + 1)


@dataclass
class FeatureStats(Record):
    """Statistics of every feature of every layer over some documents of a corpus.

    n_tokens:    tokens counted (position 0 and padding excluded)
    count:       (L, F) int64 tokens on which the feature is active (> 0)
    total:       (L, F) float64 sum of its activations
    act_max:     (L, F) float32 largest activation (0 if never active)
    histogram:   (L, F, HISTOGRAM_BINS) int64 positive activations per log-spaced bin
    top_values:  (L, F, k) float32 top activations, largest first (0 = empty slot)
    top_where:   (L, F, k, 2) int64 (document, position) of each (-1 = empty slot)
    window_ids:  (L, F, k, W) int64 token ids of each context's window (-1 = outside the text)
    window_acts: (L, F, k, W) float32 the feature's activation on each window token
    """

    n_tokens: int
    count: torch.Tensor
    total: torch.Tensor
    act_max: torch.Tensor
    histogram: torch.Tensor
    top_values: torch.Tensor
    top_where: torch.Tensor
    window_ids: torch.Tensor
    window_acts: torch.Tensor

    @classmethod
    def empty(cls, n_layers: int, n_features: int, params: DashboardParams) -> FeatureStats:
        lf, k, w = (n_layers, n_features), params.top_k, params.window
        return cls(
            n_tokens=0,
            count=torch.zeros(lf, dtype=torch.long),
            total=torch.zeros(lf, dtype=torch.float64),
            act_max=torch.zeros(lf),
            histogram=torch.zeros(*lf, HISTOGRAM_BINS, dtype=torch.long),
            top_values=torch.zeros(*lf, k),
            top_where=torch.full((*lf, k, 2), -1, dtype=torch.long),
            window_ids=torch.full((*lf, k, w), -1, dtype=torch.long),
            window_acts=torch.zeros(*lf, k, w),
        )

    def merge(self, other: FeatureStats) -> FeatureStats:
        """The statistics of both parts together (see the module docs)."""
        k = self.top_values.shape[-1]
        values = torch.cat([self.top_values, other.top_values], dim=-1)  # (L, F, 2k)
        top, order = torch.topk(values, k, dim=-1, sorted=True)

        def pick(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            both = torch.cat([a, b], dim=2)
            index = order.reshape(*order.shape, *([1] * (both.ndim - 3)))
            return torch.gather(both, 2, index.expand(*order.shape, *both.shape[3:]))

        return FeatureStats(
            n_tokens=self.n_tokens + other.n_tokens,
            count=self.count + other.count,
            total=self.total + other.total,
            act_max=torch.maximum(self.act_max, other.act_max),
            histogram=self.histogram + other.histogram,
            top_values=top,
            top_where=pick(self.top_where, other.top_where),
            window_ids=pick(self.window_ids, other.window_ids),
            window_acts=pick(self.window_acts, other.window_acts),
        )

    @property
    def frequency(self) -> torch.Tensor:
        """(L, F) share of tokens on which each feature is active."""
        return self.count.double() / max(self.n_tokens, 1)

    @property
    def mean_activation(self) -> torch.Tensor:
        """(L, F) mean activation over all tokens (zeros included)."""
        return self.total / max(self.n_tokens, 1)

    def quantiles(self, layer: int, feature: int, levels: tuple[float, ...]) -> list[float]:
        """Quantiles of a feature's positive activations, estimated from its histogram by
        interpolating inside the bin (log-linearly), capped at its largest activation."""
        counts = self.histogram[layer, feature].double()
        n = float(counts.sum())
        if n == 0:
            return [0.0 for _ in levels]
        edges = histogram_edges().double()
        cumulative = torch.cumsum(counts, 0)
        out = []
        for level in levels:
            rank = level * n
            b = min(int(torch.searchsorted(cumulative, torch.tensor(rank))), HISTOGRAM_BINS - 1)
            below = float(cumulative[b - 1]) if b else 0.0
            share = (rank - below) / max(float(counts[b]), 1.0)
            low, high = math.log10(edges[b]), math.log10(edges[b + 1])
            value = 10 ** (low + min(max(share, 0.0), 1.0) * (high - low))
            out.append(min(value, float(self.act_max[layer, feature])))
        return out


@torch.no_grad()
def layer_inputs(replacement: ReplacementModel, tokens: torch.Tensor) -> torch.Tensor:
    """(L, B, T, d) the transcoders' inputs for a batch of sequences tokens: (B, T)."""
    tc = replacement.transcoders
    cache: dict[int, torch.Tensor] = {}

    def keep(layer: int):
        def hook(acts, hook):
            cache[layer] = acts.detach()

        return hook

    hooks = [(tc.input_hook(layer), keep(layer)) for layer in range(tc.n_layers)]
    stop = tc.n_layers - 1  # nothing after the last transcoder's input is needed
    with replacement.model.hooks(fwd_hooks=hooks):
        replacement.model(tokens.to(replacement.device), stop_at_layer=stop + 1)
    return torch.stack([cache[layer] for layer in range(tc.n_layers)])


@torch.no_grad()
def batch_stats(
    replacement: ReplacementModel,
    tokens: torch.Tensor,  # (B, T) int64, start token first, padded with anything
    lengths: torch.Tensor,  # (B,) tokens of each sequence
    first_document: int,
    params: DashboardParams,
) -> FeatureStats:
    """The statistics of one batch of sequences (documents first_document, +1, ...)."""
    tc = replacement.transcoders
    n_batch, n_pos = tokens.shape
    counted = torch.arange(n_pos)[None, :] < lengths[:, None]  # (B, T)
    counted[:, 0] = False  # the start token is never a node
    inputs = layer_inputs(replacement, tokens)  # (L, B, T, d)
    stats = FeatureStats.empty(tc.n_layers, tc.d_transcoder, params)
    stats.n_tokens = int(counted.sum())
    edges = histogram_edges()
    k = min(params.top_k, n_batch * n_pos)
    offsets = torch.arange(-params.before, params.after + 1)  # (W,)
    for layer in range(tc.n_layers):
        acts = tc.encode(layer, inputs[layer]).float().cpu()  # (B, T, F)
        acts = acts * counted[..., None]
        flat = acts.reshape(n_batch * n_pos, -1)  # (N, F)
        stats.count[layer] = (flat > 0).sum(0)
        stats.total[layer] = flat.double().sum(0)
        stats.act_max[layer] = flat.max(0).values.clamp(min=0)
        where = flat.nonzero()  # (n, 2) (token, feature)
        bins = torch.bucketize(flat[where[:, 0], where[:, 1]], edges[1:-1])
        hist = torch.bincount(where[:, 1] * HISTOGRAM_BINS + bins,
                              minlength=flat.shape[1] * HISTOGRAM_BINS)  # fmt: skip
        stats.histogram[layer] = hist.view(-1, HISTOGRAM_BINS)
        values, index = torch.topk(flat, k, dim=0)  # (k, F)
        values, index = values.T, index.T  # (F, k)
        seq, pos = index // n_pos, index % n_pos
        window = pos[..., None] + offsets  # (F, k, W)
        inside = (window >= 0) & (window < lengths[seq][..., None])
        clamped = window.clamp(0, n_pos - 1)
        ids = tokens[seq[..., None], clamped]
        features = torch.arange(flat.shape[1])[:, None, None]
        window_acts = acts[seq[..., None], clamped, features]
        live = values > 0
        stats.top_values[layer, :, :k] = torch.where(live, values, 0.0)
        stats.top_where[layer, :, :k, 0] = torch.where(live, seq + first_document, -1)
        stats.top_where[layer, :, :k, 1] = torch.where(live, pos, -1)
        keep = live[..., None] & inside
        stats.window_ids[layer, :, :k] = torch.where(keep, ids, -1)
        stats.window_acts[layer, :, :k] = torch.where(keep, window_acts, 0.0)
    return stats


@dataclass
class LogitEffects(Record):
    """Direct logit effects of every feature's decoder direction.

    promoted_ids, promoted: (L, F, n) the tokens it raises most and by how much
    suppressed_ids, suppressed: (L, F, n) the tokens it lowers most (most negative first)
    """

    promoted_ids: torch.Tensor
    promoted: torch.Tensor
    suppressed_ids: torch.Tensor
    suppressed: torch.Tensor


@torch.no_grad()
def logit_effect_matrix(replacement: ReplacementModel, layer: int) -> torch.Tensor:
    """(F, d_vocab) what one unit of each feature of `layer` adds to each logit through the
    residual stream and the unembedding alone, demeaned over the vocabulary.

    A cross-layer feature writes at several layers; every write reaches the unembedding, so its
    decoder rows are summed. Final normalisation is left out (it depends on the context).
    """
    tc = replacement.transcoders
    rows = tc.decoder_rows(layer, torch.arange(tc.d_transcoder)).sum(1)  # (F, d)
    effects = rows.float() @ replacement.W_U.float().to(rows.device)  # (F, d_vocab)
    return (effects - effects.mean(1, keepdim=True)).cpu()


def logit_effects(replacement: ReplacementModel, n: int) -> LogitEffects:
    """The `n` most promoted and most suppressed tokens of every feature."""
    parts: dict[str, list[torch.Tensor]] = {"pi": [], "p": [], "si": [], "s": []}
    for layer in range(replacement.transcoders.n_layers):
        effects = logit_effect_matrix(replacement, layer)
        k = min(n, effects.shape[1])
        up, up_ids = torch.topk(effects, k, dim=1)
        down, down_ids = torch.topk(-effects, k, dim=1)
        parts["pi"].append(up_ids)
        parts["p"].append(up)
        parts["si"].append(down_ids)
        parts["s"].append(-down)
    stack = {name: torch.stack(values) for name, values in parts.items()}
    return LogitEffects(stack["pi"], stack["p"], stack["si"], stack["s"])
