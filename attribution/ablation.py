"""Ablation curves: does removing the graph's top features move the answer more than chance?

A graph claims that its most influential features carry the prediction. The check: zero-ablate
the top k of them (`intervene`, setting each to 0 at its position) and measure how much the
target moves; then ablate k active features drawn at random, several times, and measure the
same. A faithful graph's top-k move the target further than random-k do, for every k.

The target is one of a graph's targets (its first: the answer): a token's logit and probability,
or a direction's value (dot product with the final normalised residual; a direction has no
probability). Changes are ablated minus clean.

Random draws are nested: draw d is one seeded permutation of the candidate features, and its
random-k set is the permutation's first k, as the top-k sets are nested too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from circuitflow.attribution.intervene import Intervener
from circuitflow.attribution.replacement import ReplacementModel
from circuitflow.attribution.targets import Targets


@dataclass
class AblationCurves:
    """Ablation results, one row per (k, selection, draw).

    k:            (n,) int64 how many features were ablated
    random:       (n,) bool: False for the top-k row, True for a random draw
    draw:         (n,) int64: the draw (0 for top-k rows)
    value_change: (n,) the target's logit (or direction value), ablated minus clean
    prob_change:  (n,) its probability, ablated minus clean (NaN for a direction)
    top:          (n_top, 3) int64 (layer, position, feature), the ranked features ablated
    draws:        (n_draws, max k, 3) int64, each draw's random order
    clean_value, clean_prob: the target before any ablation (clean_prob NaN for a direction)
    """

    k: torch.Tensor
    random: torch.Tensor
    draw: torch.Tensor
    value_change: torch.Tensor
    prob_change: torch.Tensor
    top: torch.Tensor
    draws: torch.Tensor
    clean_value: float
    clean_prob: float


def doubling_ks(n_top: int, also: Sequence[int] = ()) -> list[int]:
    """k = 1, 2, 4, 8, ... below n_top, then n_top itself (all of them), plus any of `also`
    that fit."""
    ks = {n_top} if n_top else set()
    k = 1
    while k < n_top:
        ks.add(k)
        k *= 2
    ks.update(k for k in also if 0 < k <= n_top)
    return sorted(ks)


@torch.no_grad()
def ablation_curves(
    model: ReplacementModel,
    tokens: torch.Tensor,  # (n_pos,)
    targets: Targets,
    top: torch.Tensor,  # (n_top, 3) (layer, position, feature), most important first
    candidates: torch.Tensor,  # (n_cand, 3) what random draws pick from
    ks: Sequence[int],
    *,
    n_draws: int,
    seed: int = 0,
    target: int = 0,
    freeze_attention: bool = True,
) -> AblationCurves:
    """Ablate the top-k and `n_draws` random k-sets of `candidates` for every k in `ks`."""
    if any(k > len(top) or k > len(candidates) or k < 1 for k in ks):
        raise ValueError(f"every k must be in [1, {min(len(top), len(candidates))}], got {ks}")
    runner = Intervener(model, tokens, freeze_attention=freeze_attention)

    def measure(features: torch.Tensor) -> tuple[float, float]:
        settings = [(layer, pos, feature, 0.0) for layer, pos, feature in features.tolist()]
        result = runner.run(settings, activations=False)
        return targets.measure(target, result.logits[-1], result.final_residual[-1])

    clean_value, clean_prob = measure(top[:0])
    k_max = max(ks, default=0)
    orders = (
        torch.stack(
            [
                candidates[torch.randperm(len(candidates), generator=_generator(seed + d))[:k_max]]
                for d in range(n_draws)
            ]
        )
        if n_draws
        else torch.zeros(0, k_max, 3, dtype=torch.long)
    )
    rows = []
    for k in ks:
        rows.append((k, False, 0, *measure(top[:k])))
        rows += [(k, True, d, *measure(orders[d, :k])) for d in range(n_draws)]
    k_col, random_col, draw_col, values, probs = zip(*rows, strict=True) if rows else ([],) * 5
    return AblationCurves(
        k=torch.tensor(k_col, dtype=torch.long),
        random=torch.tensor(random_col, dtype=torch.bool),
        draw=torch.tensor(draw_col, dtype=torch.long),
        value_change=torch.tensor(values, dtype=torch.float64) - clean_value,
        prob_change=torch.tensor(probs, dtype=torch.float64) - clean_prob,
        top=top.clone(),
        draws=orders,
        clean_value=clean_value,
        clean_prob=clean_prob,
    )


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def nan_to_none(value: float) -> float | None:
    """A float for a catalog column: NaN (no probability) as null."""
    return None if math.isnan(value) else value
