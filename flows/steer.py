"""Steering as people ask for it: `LAYER:POS:FEATURE=VALUE` settings, clean versus steered.

`parse_setting` reads one `--set` of `circuitflow steer`; `steer_report` runs the prompt clean
and with the settings (`attribution.intervene`), and, when asked, continues both greedily
(`attribution.generate`). No workflow and no store: a steering question is cheap to ask again.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch

from circuitflow.attribution import ReplacementModel
from circuitflow.attribution.intervene import Intervener, Intervention, generate
from circuitflow.attribution.targets import explicit_targets

_SETTING = re.compile(r"^\s*(\d+):(-?\d+)(\+?):(\d+)=(.+?)\s*$")


def parse_setting(text: str) -> Intervention:
    """`LAYER:POS:FEATURE=VALUE` -> (layer, position, feature, value); `POS+` means every
    position from POS onward (generated tokens too). ValueError says what is wrong."""
    match = _SETTING.match(text)
    if not match:
        raise ValueError(
            f"{text!r} is not LAYER:POS:FEATURE=VALUE (e.g. 3:8:128=0, or 3:5+:128=2.5 for "
            "every position from 5 on)"
        )
    layer, pos, onward, feature, value = match.groups()
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{text!r}: the value {value!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{text!r}: the value must be finite")
    if onward and int(pos) < 0:
        raise ValueError(f"{text!r}: POS+ needs a position >= 0")
    position: int | slice = slice(int(pos), None) if onward else int(pos)
    return int(layer), position, int(feature), number


def _top(model: ReplacementModel, logits: torch.Tensor, n: int) -> list[dict]:
    probs = torch.softmax(logits.float(), dim=-1)
    values, ids = probs.topk(min(n, len(probs)))
    return [
        {"token": model.tokenizer.decode([i]), "token_id": i, "prob": p, "logit": float(logits[i])}
        for p, i in zip(values.tolist(), ids.tolist(), strict=True)
    ]


def _watched_ids(model: ReplacementModel, tokens: Sequence[str | int]) -> list[int]:
    """Token ids of watched tokens, checked as targets are (TargetError if not one token)."""
    if not tokens:
        return []
    found = explicit_targets(tokens, torch.zeros(model.cfg.d_vocab), model.W_U, model.tokenizer)
    return found.token_ids.tolist()


def _watch(model: ReplacementModel, logits: torch.Tensor, tokens: Sequence[int]) -> list[dict]:
    probs = torch.softmax(logits.float(), dim=-1)
    return [
        {
            "token": model.tokenizer.decode([t]),
            "token_id": t,
            "prob": float(probs[t]),
            "logit": float(logits[t]),
        }
        for t in tokens
    ]


def steer_report(
    model: ReplacementModel,
    prompt: str,
    settings: Sequence[Intervention],
    *,
    freeze_attention: bool = True,
    watch: Sequence[str | int] = (),
    n_top: int = 5,
    n_new: int = 0,
) -> dict:
    """Clean and steered next-token predictions (top tokens, and the `watch` tokens: strings
    that are one token, or ids) and, with `n_new`, both greedy continuations."""
    watch = _watched_ids(model, watch)
    runner = Intervener(model, prompt, freeze_attention=freeze_attention)
    clean = runner.run([])
    steered = runner.run(settings, activations=False)
    tokens = runner.tokens.tolist()
    report = {
        "prompt": prompt,
        "freeze_attention": freeze_attention,
        "settings": [],
        "clean": {
            "top": _top(model, clean.logits[-1], n_top),
            "watch": _watch(model, clean.logits[-1], watch),
        },
        "steered": {
            "top": _top(model, steered.logits[-1], n_top),
            "watch": _watch(model, steered.logits[-1], watch),
        },
    }
    for layer, pos, feature, value in settings:
        positions = range(len(tokens))[pos] if isinstance(pos, slice) else [pos % len(tokens)]
        report["settings"].append(
            {
                "layer": layer,
                "pos": pos.start if isinstance(pos, slice) else pos,
                "onward": isinstance(pos, slice),
                "feature": feature,
                "value": value,
                "clean": [float(clean.activations[layer, p, feature]) for p in positions],
                "tokens": [model.tokenizer.decode([tokens[p]]) for p in positions],
            }
        )
    if n_new:
        for name, chosen in (("clean", []), ("steered", settings)):
            out = generate(model, prompt, chosen, n_new, freeze_attention=freeze_attention)
            report[name]["generated"] = out.text
    return report
