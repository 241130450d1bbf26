"""The settings of one attribution run, declared once: defaults, valid ranges and help.

`RunParams` is the only place where a default (node threshold 0.8, ...) or a valid range is
written. Everything else derives from it: the keyword defaults of `attribute` and `prune`, the
checks those functions make, the workflow's stage keys, the command line's options, the keys a
sweep file may set, and the columns of the catalog's `runs` table.

Each field carries its help text and its check in `dataclasses.field(metadata=...)`:

    help:     one line for people (the CLI's --help shows it)
    check:    a function value -> error text or None
    flag:     the command-line option, when not --field-name (e.g. --target for `targets`)
    aliases:  more option names that mean the same (circuit-tracer's spellings)
    choices:  the values a text setting takes
    more:     further options that add items to a list setting (`ListFlag`: --logit-diff A B)
    column:   value -> what the catalog's `runs` table shows (when not the value itself)
    unlimited: a word that means None (no limit) wherever the setting is written: the command
              line (`--max-feature-nodes all`), sweep files and Python
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from circuitflow.attribution.target_specs import (
    TargetSpecError,
    canonical_targets,
    check_targets,
    label,
    logit_diff,
)


class ParamError(ValueError):
    """A run setting with a value it cannot take; `name` says which."""

    def __init__(self, message: str, name: str | None = None) -> None:
        super().__init__(message)
        self.name = name


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def unit_interval(value: Any) -> str | None:
    """A share in (0, 1]."""
    if not _is_number(value) or math.isnan(value) or not 0 < value <= 1:
        return f"must be in (0, 1], got {value!r}"
    return None


def positive_int(value: Any) -> str | None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        return f"must be a positive integer, got {value!r}"
    return None


def optional_positive_int(value: Any) -> str | None:
    return None if value is None else positive_int(value)


def boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, got {value!r}"


EDGE_PRECISIONS = ("float32", "bfloat16", "float16")
PRECISIONS = EDGE_PRECISIONS  # the model's dtype takes the same three names


def edge_precision(value: Any) -> str | None:
    if value not in EDGE_PRECISIONS:
        return f"must be one of {', '.join(EDGE_PRECISIONS)}, got {value!r}"
    return None


@dataclass(frozen=True)
class ListFlag:
    """A further command-line option of a list setting: each use adds one item.

    `--logit-diff A B` adds `item("A", "B")` to `targets`; `metavars` names the option's
    values (their number is the option's arity).
    """

    flag: str
    metavars: tuple[str, ...]
    help: str
    item: Callable[..., Any]


precision = edge_precision  # the check, under a name the `edge_precision` field does not hide


def token_list(value: Any) -> str | None:
    if not isinstance(value, tuple) or not all(isinstance(t, str | int) for t in value):
        return f"must be a list of tokens (strings or ids), got {value!r}"
    return None


def param(
    default: Any,
    help: str,
    check: Callable[[Any], str | None],
    *,
    flag: str | None = None,
    aliases: tuple[str, ...] = (),
    choices: tuple[str, ...] | None = None,
    more: tuple[ListFlag, ...] = (),
    column: Callable[[Any], Any] | None = None,
    unlimited: str | None = None,
) -> Any:
    """A RunParams field with its help text, check and command-line spelling."""
    metadata = {
        "help": help,
        "check": check,
        "flag": flag,
        "aliases": aliases,
        "choices": choices,
        "more": more,
        "column": column,
        "unlimited": unlimited,
    }
    return field(default=default, metadata=metadata)


def _labels(targets: tuple) -> list[str]:
    return [label(spec) for spec in targets]


@dataclass(frozen=True)
class RunParams:
    """Every setting of an attribution run besides the model, transcoders and prompt."""

    node_threshold: float = param(
        0.8, "Keep the nodes that carry this share of the influence.", unit_interval
    )
    edge_threshold: float = param(
        0.98, "Keep the edges that carry this share of the edge scores.", unit_interval
    )
    max_feature_nodes: int | None = param(
        7500,
        "Feature-node budget, filled in order of estimated influence (circuit-tracer's CLI "
        "default); 'all' keeps every active feature. A run says when the budget cut.",
        optional_positive_int,
        aliases=("--max_feature_nodes",),
        unlimited="all",
    )
    max_n_logits: int = param(
        10, "At most this many salient logit targets.", positive_int, aliases=("--max_n_logits",)
    )
    desired_logit_prob: float = param(
        0.95,
        "Salient targets until their probabilities add up to this.",
        unit_interval,
        aliases=("--desired_logit_prob",),
    )
    targets: tuple[str | int | dict, ...] = param(
        (),
        "Explain this token's logit instead of the salient ones.",
        check_targets,
        flag="--target",
        more=(
            ListFlag(
                "--logit-diff",
                ("A", "B"),
                "Explain logit(A) - logit(B): why A rather than B. Repeatable.",
                logit_diff,
            ),
        ),
        column=_labels,
    )
    batch_size: int = param(
        64, "Targets per backward pass.", positive_int, aliases=("--batch_size",)
    )
    update_interval: int = param(
        4, "Backward passes between re-rankings of features for the budget.", positive_int
    )
    edge_precision: str = param(
        "float32",
        "Precision the edge matrix is stored in: bfloat16 or float16 halve it; influence and "
        "pruning then read the rounded weights (what that changes: benchmarks/RESULTS.md).",
        edge_precision,
        choices=EDGE_PRECISIONS,
    )
    validate: bool = param(
        False,
        "Also check the graph causally and store the checks: ablate its top-k features and "
        "random ones (table `interventions`).",
        boolean,
    )

    dtype: str = param(
        "float32",
        "Precision the model and transcoders compute in. float32 is exact (it matches "
        "circuit-tracer); bfloat16 and float16 halve memory but round every activation, so "
        "which features are active near zero, the salient targets, the feature budget's order "
        "and the edge weights (to about 1e-2 relative) can change, and float16 can overflow on "
        "large residuals. Part of the stored stages' keys.",
        precision,
        choices=PRECISIONS,
    )

    def __post_init__(self) -> None:
        # YAML, JSON and Python give targets in several spellings; keys need the one canonical.
        try:
            object.__setattr__(self, "targets", canonical_targets(self.targets))
        except TargetSpecError as error:
            raise ParamError(f"targets: {error}", "targets") from None
        for f in dataclasses.fields(self):
            if f.metadata["unlimited"] and getattr(self, f.name) == f.metadata["unlimited"]:
                object.__setattr__(self, f.name, None)
        for name in self.names():
            check(name, getattr(self, name))

    def __hash__(self) -> int:  # direction targets are dicts: hash the canonical JSON instead
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (targets as a list)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_columns(self) -> dict[str, Any]:
        """The values as the catalog's `runs` table shows them (targets as short labels)."""
        values = self.to_dict()
        for f in dataclasses.fields(self):
            if f.metadata["column"] is not None:
                values[f.name] = f.metadata["column"](getattr(self, f.name))
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RunParams:
        """The inverse of `to_dict`; unknown names are a `ParamError`."""
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise ParamError(
                f"{unknown[0]} is not a run setting; settings are: {', '.join(cls.names())}",
                unknown[0],
            )
        return cls(**values)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def replace(self, **changes: Any) -> RunParams:
        return dataclasses.replace(self, **changes)


def _plain(value: Any) -> Any:
    # A copy: target specs hold dicts and lists, which callers must not change under us.
    return copy.deepcopy(list(value)) if isinstance(value, tuple) else value


def check(name: str, value: Any, error: type[ValueError] = ParamError) -> None:
    """Raise `error` unless `value` is valid for the RunParams field `name`."""
    problem = RunParams.__dataclass_fields__[name].metadata["check"](value)
    if problem:
        exception = error(f"{name} {problem}")
        exception.name = name
        raise exception


DEFAULTS = RunParams()
