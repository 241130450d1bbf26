"""Analysis points: attach your own functions to named places inside attribution.

The attribution code fires a named point at each step (the table is `analysis_points.POINTS`,
rendered in docs/analysis-points.md): the end of precompute, the targets, the forward pass, the
logit and feature rows, graph assembly, every term of the influence series, each step of pruning.
A function attached to a point is called with an `Event` (the point's local values) and the
options it was attached with; what it returns is kept in the open `Capture`:

    from circuitflow.attribution import analysis, attribute, node_influence
    from circuitflow.attribution.analysis_functions import shapes, trace

    with analysis.attached({"precompute_end": shapes, "influence_iteration": trace}) as capture:
        graph = attribute(prompt, model)
        node_influence(graph)                     # fires influence_* with phase "node"
    capture.values("influence_iteration", "term") # one (N,) tensor per term of the series

A function returns None (nothing kept), a mapping {key: value}, or one value (kept as "value").
A value is a tensor (copied on the spot), a `Summary` (`summarize(tensor)`: shape, dtype,
min/max/mean, top-k, without the tensor), a number, a string or a list of those.

Guarantees:
- Free when unused. A call site tests `wants(point)` (one dict lookup) before it builds anything,
  so with nothing attached a point costs one lookup (benchmarks/RESULTS.md, issue 13).
- Results unchanged. Functions read the values; they must not modify them. A tensor modified in
  place (its version counter moved) is reported as a failure and the capture is marked
  `tainted`, so that the caller can discard what was computed (the workflow then recomputes the
  stage with nothing attached). Writes through `.data` or numpy views escape this check.
- A function that raises does not stop the attribution: the failure is kept with the point's and
  the function's names (`Capture.failures`); without an open capture it is a warning.

Attachments are process-wide (a module-level registry), like the model's hooks: do not run two
attributions with different attachments at once in one process.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch

from circuitflow.attribution.analysis_points import POINTS, Point, Value

__all__ = [
    "POINTS",
    "AnalysisError",
    "Attachment",
    "Capture",
    "Event",
    "Failure",
    "Kept",
    "Point",
    "Summary",
    "Value",
    "attached",
    "capture",
    "fire",
    "off",
    "on",
    "summarize",
    "wants",
]


class AnalysisError(ValueError):
    """An analysis function or point that cannot be used (unknown point, bad return value)."""


@dataclass(frozen=True)
class Event:
    """One firing of a point, as an attached function receives it.

    values:   the point's local values by name (documented in `POINTS[point].values`); read
        them, never modify them
    firing:   how many times this point fired before, in the open capture (0 without one)
    sequence: how many firings of any point came before, in the open capture: the order in
        which attribution reached them
    stage:    the pipeline stage running when it fired (set by the workflow; None otherwise)
    """

    point: str
    values: Mapping[str, Any]
    firing: int = 0
    sequence: int = 0
    stage: str | None = None

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    @property
    def labels(self) -> dict[str, Any]:
        """The point's plain scalar values (phase, iteration, ...): what tells firings apart."""
        return {k: v for k, v in self.values.items() if isinstance(v, bool | int | float | str)}


AnalysisFunction = Callable[..., Any]


@dataclass(frozen=True)
class Attachment:
    """A function attached to a point, with the keyword options it is called with."""

    point: str
    function: AnalysisFunction
    options: Mapping[str, Any] = field(default_factory=dict)
    name: str = ""

    @property
    def label(self) -> str:
        """How reports name the function: `name`, else module:qualname."""
        if self.name:
            return self.name
        fn = self.function
        return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"


@dataclass(frozen=True)
class Summary:
    """What is kept of a tensor when the tensor itself is not: enough to print a table row.

    top-k: the k largest elements (by value, or by absolute value when asked) as values and
    flat row-major indices. min/max/mean are None for an empty tensor; nnz counts non-zeros.
    """

    shape: tuple[int, ...]
    dtype: str
    min: float | None
    max: float | None
    mean: float | None
    nnz: int
    topk_values: tuple[float, ...] = ()
    topk_indices: tuple[int, ...] = ()


def summarize(tensor: torch.Tensor, k: int = 5, *, absolute: bool = False) -> Summary:
    """Shape, dtype, min/max/mean, non-zeros and the top `k` elements of a tensor."""
    t = tensor.detach()
    if t.is_sparse:
        t = t.to_dense()
    flat = t.reshape(-1)  # no float64 copy: an (N, N) adjacency may be hundreds of MB
    if flat.dtype == torch.bool:
        flat = flat.to(torch.uint8)
    elif flat.is_complex():
        flat = flat.abs()
    if flat.numel() == 0:
        return Summary(tuple(t.shape), _dtype_name(t), None, None, None, 0)
    top = torch.topk(flat.abs() if absolute else flat, min(k, flat.numel()))
    if flat.is_floating_point():  # half precision would lose the mean of many values
        mean = flat.mean() if flat.element_size() >= 4 else flat.float().mean()
    else:
        mean = flat.sum() / flat.numel()
    return Summary(
        shape=tuple(t.shape),
        dtype=_dtype_name(t),
        min=_finite(flat.min()),
        max=_finite(flat.max()),
        mean=_finite(mean),
        nnz=int(torch.count_nonzero(flat)),
        topk_values=tuple(float(v) for v in flat[top.indices].tolist()),
        topk_indices=tuple(int(i) for i in top.indices.tolist()),
    )


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _finite(x: torch.Tensor) -> float | None:
    value = float(x)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Where:
    """Which function, at which firing of which point (and in which stage)."""

    point: str
    function: str
    firing: int
    sequence: int
    stage: str | None
    labels: Mapping[str, Any]


@dataclass(frozen=True)
class Kept(Where):
    """One value an attached function returned at one firing."""

    key: str
    value: Any  # a CPU tensor (copied), a Summary, a number, a string, a list


@dataclass(frozen=True)
class Failure(Where):
    """An attached function that raised, returned something unusable, or modified a value."""

    error: str

    def __str__(self) -> str:
        where = f"point {self.point!r} (firing {self.firing}"
        where += f", stage {self.stage})" if self.stage else ")"
        return f"analysis function {self.function} at {where}: {self.error}"


class Capture:
    """What attached functions returned, and what went wrong, while it was open.

    `tainted` turns True when a function modified a value in place: whatever the attribution
    computed afterwards may be wrong and should be computed again with nothing attached.
    """

    def __init__(self) -> None:
        self.kept: list[Kept] = []
        self.failures: list[Failure] = []
        self.tainted = False
        self.stage: str | None = None
        self._firings: dict[str, int] = {}
        self._sequence = 0

    def next_firing(self, point: str) -> tuple[int, int]:
        """(this point's firing number, the firing's place among all firings)."""
        n, sequence = self._firings.get(point, 0), self._sequence
        self._firings[point] = n + 1
        self._sequence += 1
        return n, sequence

    def fired(self, point: str) -> int:
        """How many times `point` fired while this capture was open."""
        return self._firings.get(point, 0)

    def values(self, point: str, key: str | None = None) -> list[Any]:
        """The kept values of `point` (only those under `key` if given), in firing order."""
        return [k.value for k in self.kept if k.point == point and (key is None or k.key == key)]

    def keep(self, event: Event, attachment: Attachment, returned: Any) -> None:
        items = returned.items() if isinstance(returned, Mapping) else [("value", returned)]
        for key, value in items:
            try:
                plain = _plain(value)
            except AnalysisError as error:
                self.fail(event, attachment, f"returned {key!r}: {error}")
                continue
            self.kept.append(Kept(*_where(event, attachment), str(key), plain))

    def fail(self, event: Event, attachment: Attachment, error: str) -> None:
        self.failures.append(Failure(*_where(event, attachment), error))


def _where(event: Event, attachment: Attachment) -> tuple:
    """The `Where` fields of a Kept or a Failure: point, function, firing, sequence, stage,
    labels."""
    labels = dict(event.labels)
    return event.point, attachment.label, event.firing, event.sequence, event.stage, labels


def _plain(value: Any) -> Any:
    """A returned value as it is kept: tensors copied to the CPU, the rest checked."""
    if isinstance(value, torch.Tensor):
        t = value.detach()
        t = t.to_dense() if t.is_sparse else t
        return t.to("cpu", copy=True)
    if isinstance(value, Summary) or value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple) and all(
        v is None or isinstance(v, bool | int | float | str) for v in value
    ):
        return list(value)
    if hasattr(value, "__array__"):  # numpy arrays and the like
        return torch.as_tensor(value).clone()
    raise AnalysisError(
        f"values of type {type(value).__name__} cannot be kept: return tensors, "
        "summarize(tensor), numbers, strings or lists of them"
    )


# ------------------------------------------------------------------------------ the registry

_attached: dict[str, list[Attachment]] = {}
_capture: Capture | None = None


def wants(point: str) -> bool:
    """True when a function is attached to `point`. Call sites test this before building the
    point's values, so that a point with nothing attached costs one dict lookup."""
    return point in _attached


def on(
    point: str,
    function: AnalysisFunction,
    options: Mapping[str, Any] | None = None,
    *,
    name: str = "",
) -> Attachment:
    """Attach `function(event, **options)` to `point` until `off`; returns the attachment."""
    check_point(point)
    if not callable(function):
        raise AnalysisError(f"the function attached to {point!r} is not callable: {function!r}")
    attachment = Attachment(point, function, dict(options or {}), name)
    _attached.setdefault(point, []).append(attachment)
    return attachment


def off(attachment: Attachment | None = None) -> None:
    """Detach one attachment, or everything when none is given."""
    if attachment is None:
        _attached.clear()
        return
    remaining = [a for a in _attached.get(attachment.point, []) if a is not attachment]
    if remaining:
        _attached[attachment.point] = remaining
    else:
        _attached.pop(attachment.point, None)


def check_point(point: str) -> Point:
    """The declaration of `point`, or AnalysisError naming the known points."""
    if point not in POINTS:
        raise AnalysisError(f"unknown analysis point {point!r}; points are: {', '.join(POINTS)}")
    return POINTS[point]


@contextlib.contextmanager
def capture(stage: str | None = None, *, into: Capture | None = None) -> Iterator[Capture]:
    """Open a capture for the block: `into` (to go on filling it), else the one already open,
    else a new one. `stage` labels the firings inside the block."""
    global _capture
    outer = _capture
    current = into or outer or Capture()
    before = current.stage
    current.stage = stage if stage is not None else before
    _capture = current
    try:
        yield current
    finally:
        current.stage = before
        _capture = outer


@contextlib.contextmanager
def attached(
    functions: Mapping[str, AnalysisFunction] | list[Attachment],
    stage: str | None = None,
) -> Iterator[Capture]:
    """Attach functions ({point: function} or attachments) for the block, inside a capture."""
    if isinstance(functions, Mapping):
        wanted = [Attachment(point, fn) for point, fn in functions.items()]
    else:
        wanted = list(functions)
    done: list[Attachment] = []
    try:
        for a in wanted:
            done.append(on(a.point, a.function, a.options, name=a.name))
        with capture(stage) as current:
            yield current
    finally:
        for attachment in done:
            off(attachment)


def fire(point: str, **values: Any) -> None:
    """Call every function attached to `point` with these values (see the module docs)."""
    attachments = _attached.get(point)
    if not attachments:
        return
    current = _capture
    firing, sequence = current.next_firing(point) if current is not None else (0, 0)
    stage = current.stage if current is not None else None
    event = Event(point, MappingProxyType(values), firing, sequence, stage)
    versions = _versions(values)
    for attachment in list(attachments):
        try:
            returned = attachment.function(event, **attachment.options)
        except Exception as error:  # a user's function: report it, go on with the attribution
            _report(current, event, attachment, f"raised {type(error).__name__}: {error}")
            continue
        changed = [name for name, v in _versions(values).items() if v != versions[name]]
        if changed:
            if current is not None:
                current.tainted = True
            _report(current, event, attachment, f"modified {', '.join(changed)} in place")
            versions = _versions(values)
        if returned is not None and current is not None:
            current.keep(event, attachment, returned)


def _versions(values: Mapping[str, Any]) -> dict[str, int]:
    return {k: v._version for k, v in values.items() if isinstance(v, torch.Tensor)}


def _report(current: Capture | None, event: Event, attachment: Attachment, error: str) -> None:
    if current is not None:
        current.fail(event, attachment, error)
    else:
        warnings.warn(
            f"analysis function {attachment.label} at point {event.point!r}: {error}",
            RuntimeWarning,
            stacklevel=3,
        )
