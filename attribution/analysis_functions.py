"""Ready analysis functions: attach them to any point (see `analysis.py`), in Python or YAML.

    shapes  a summary of every value: shape, dtype, min/max/mean, top-k (the seed notebook's
            shape tables at each step of attribution)
    topk    the k largest elements of chosen values, optionally row by row
    trace   the chosen tensors themselves at every firing, kept in order (attached to
            influence_iteration with values [term] it keeps the influence series that
            `circuitflow analysis RUN_ID --plot` draws)

Each takes the event and keyword options; the option `values` names which of the point's values
to look at (default: all of them). Names a point does not offer are refused when a YAML config
is loaded, and reported as a failure of the firing otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from circuitflow.attribution.analysis import AnalysisError, Event, summarize


def _chosen(event: Event, values: Sequence[str] | str | None) -> dict[str, Any]:
    if values is None:
        return dict(event.values)
    values = [values] if isinstance(values, str) else values
    missing = [name for name in values if name not in event.values]
    if missing:
        raise AnalysisError(
            f"point {event.point!r} offers no value {', '.join(map(repr, missing))}; "
            f"it offers: {', '.join(event.values)}"
        )
    return {name: event.values[name] for name in values}


def shapes(event: Event, *, values: Sequence[str] | None = None, k: int = 5) -> dict[str, Any]:
    """A summary of each tensor value (no tensor is kept) and each plain value as it is."""
    out: dict[str, Any] = {}
    for name, value in _chosen(event, values).items():
        out[name] = summarize(value, k) if isinstance(value, torch.Tensor) else value
    return out


def topk(
    event: Event,
    *,
    values: Sequence[str] | None = None,
    k: int = 5,
    rows: Sequence[int] | None = None,
    absolute: bool = False,
) -> dict[str, Any]:
    """The `k` largest elements of each tensor value (by |value| when `absolute`).

    `rows` picks rows of 2-D values (negative counts from the end) and ranks each row on its
    own, kept as "name[row]": e.g. the logit rows of the edge matrix, or iterations of a trace.
    """
    out: dict[str, Any] = {}
    for name, value in _chosen(event, values).items():
        if not isinstance(value, torch.Tensor):
            continue
        if rows is None:
            out[name] = summarize(value, k, absolute=absolute)
            continue
        if value.dim() != 2:
            raise AnalysisError(f"rows need a 2-D value; {name!r} has shape {tuple(value.shape)}")
        for row in rows:
            if not -value.shape[0] <= row < value.shape[0]:
                continue  # a short series has fewer iterations than asked for
            out[f"{name}[{row}]"] = summarize(value[row], k, absolute=absolute)
    return out


def trace(event: Event, *, values: Sequence[str] | None = None) -> dict[str, Any]:
    """The tensor values themselves (copied when kept), at every firing, in firing order."""
    return {
        name: value
        for name, value in _chosen(event, values).items()
        if isinstance(value, torch.Tensor)
    }
