"""What a graph can be asked to explain, written as plain JSON: a run's target specs.

A run's `targets` setting is a list, each item one question about the next token:

    " Austin"                                  a token: a string that is exactly one token
    123                                        a token, by id
    {"logit_diff": [" Austin", " Dallas"]}     logit(Austin) - logit(Dallas): "why Austin
                                               rather than the city in the prompt?"
    {"direction": "name", "vector": [...]}     any direction of the final residual (d_model)

A token's logit node reads its demeaned logit and weighs its probability in the influence
computation. A direction has no probability: its node is weighted by `"weight"` (default 1;
a logit difference is a direction too, so it takes a weight the same way).

Specs are JSON so that they can be a stage's key, a run's id, a sweep file's value and a command
line option alike, and they are *canonical*, so that one question has one form and one key:
{"token": s} is written s, {"id": n} is n, a vector is a list of floats, weight 1 is left out.
circuit-tracer's `CustomTarget(token_str, prob, vec)` is read as a direction with that weight.

Turning specs into vectors needs the model's unembedding and tokenizer: `attribution.targets`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

Spec = str | int | dict[str, Any]

DEFAULT_WEIGHT = 1.0
_EXTRA_KEYS = {"logit_diff": {"weight"}, "direction": {"vector", "weight"}}


class TargetSpecError(ValueError):
    """A target spec that is not one of the forms above, and why."""


def logit_diff(favoured: str | int, other: str | int, weight: float = DEFAULT_WEIGHT) -> dict:
    """The spec of logit(favoured) - logit(other): why `favoured` rather than `other`."""
    return canonical_target({"logit_diff": [favoured, other], "weight": weight})


def direction(name: str, vector: Any, weight: float = DEFAULT_WEIGHT) -> dict:
    """The spec of a residual-stream direction: `vector` (d_model,), a tensor, array or list."""
    return canonical_target({"direction": name, "vector": vector, "weight": weight})


def canonical_targets(items: Any) -> tuple[Spec, ...]:
    """Every item in canonical form, or TargetSpecError naming the first bad one."""
    if isinstance(items, str | bytes | Mapping) or not isinstance(items, Sequence):
        raise TargetSpecError(f"must be a list of targets, got {items!r}")
    return tuple(canonical_target(item) for item in items)


def canonical_target(item: Any) -> Spec:
    """One spec in canonical form (see the module docs), or TargetSpecError."""
    if isinstance(item, str):
        return item
    if _is_int(item):
        return _token_id(item)
    if isinstance(item, tuple) and len(item) == 3 and isinstance(item[0], str):
        name, weight, vector = item  # circuit-tracer's CustomTarget(token_str, prob, vec)
        return canonical_target({"direction": name, "vector": vector, "weight": weight})
    if not isinstance(item, Mapping):
        raise TargetSpecError(
            f"a target is a token (string or id), {{'logit_diff': [A, B]}} or "
            f"{{'direction': NAME, 'vector': [...]}}; got {_short(item)}"
        )
    kinds = [k for k in ("token", "id", "logit_diff", "direction") if k in item]
    if len(kinds) != 1:
        raise TargetSpecError(
            f"a target mapping names one of token, id, logit_diff, direction; got {_short(item)}"
        )
    kind = kinds[0]
    unknown = set(item) - {kind} - _EXTRA_KEYS.get(kind, set())
    if unknown:
        raise TargetSpecError(f"unknown key {sorted(unknown)[0]!r} in target {_short(item)}")
    if kind == "token":
        if not isinstance(item["token"], str):
            raise TargetSpecError(f"'token' must be a string, got {item['token']!r}")
        return item["token"]
    if kind == "id":
        return _token_id(item["id"])
    spec: dict[str, Any] = {}
    if kind == "logit_diff":
        spec["logit_diff"] = _token_pair(item["logit_diff"])
    else:
        spec["direction"] = _name(item["direction"])
        spec["vector"] = _vector(item.get("vector"), spec["direction"])
    weight = _weight(item.get("weight", DEFAULT_WEIGHT))
    if weight != DEFAULT_WEIGHT:
        spec["weight"] = weight
    return spec


def check_targets(value: Any) -> str | None:
    """The RunParams check: an error text, or None for a canonical list of targets."""
    if not isinstance(value, tuple):
        return f"must be a list of targets, got {value!r}"
    try:
        canonical = canonical_targets(value)
    except TargetSpecError as error:
        return str(error)
    return None if canonical == value else "must be in canonical form (see target_specs)"


def kind_of(spec: Spec) -> str:
    """'token' for tokens (strings, ids), 'direction' for directions and logit differences."""
    return "token" if isinstance(spec, str | int) else "direction"


def weight_of(spec: Spec) -> float:
    """A direction's node weight (tokens are weighted by their probability instead)."""
    return spec.get("weight", DEFAULT_WEIGHT) if isinstance(spec, dict) else DEFAULT_WEIGHT


def label(spec: Spec) -> str:
    """A short text for people and for the catalog's `runs.targets` column."""
    if isinstance(spec, str):
        return spec
    if isinstance(spec, int):
        return f"#{spec}"
    if "logit_diff" in spec:
        a, b = (label(t) for t in spec["logit_diff"])
        return f"logit({a})-logit({b})"
    return f"direction:{spec['direction']}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _token_id(value: Any) -> int:
    if not _is_int(value) or value < 0:
        raise TargetSpecError(f"a token id is an integer >= 0, got {value!r}")
    return int(value)


def _token_pair(value: Any) -> list[str | int]:
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
        raise TargetSpecError(f"'logit_diff' takes two tokens [A, B], got {value!r}")
    pair = [v if isinstance(v, str) else _token_id(v) for v in value]
    if pair[0] == pair[1]:
        raise TargetSpecError(f"'logit_diff' needs two different tokens, got {pair[0]!r} twice")
    return pair


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TargetSpecError(f"a direction needs a name (a non-empty string), got {value!r}")
    return value


def _vector(value: Any, name: str) -> list[float]:
    if hasattr(value, "tolist"):  # a tensor or an array
        value = value.tolist()
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise TargetSpecError(f"direction {name!r} needs a 'vector': a non-empty list of numbers")
    if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in value):
        raise TargetSpecError(f"direction {name!r}: its vector must be a flat list of numbers")
    floats = [float(x) for x in value]
    if not all(math.isfinite(x) for x in floats):
        raise TargetSpecError(f"direction {name!r}: its vector has a non-finite entry")
    if not any(floats):
        raise TargetSpecError(f"direction {name!r}: its vector is zero")
    return floats


def _weight(value: Any) -> float:
    if hasattr(value, "item") and not isinstance(value, int | float):
        value = value.item()  # a 0-d tensor, e.g. circuit-tracer's prob
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TargetSpecError(f"a target's weight is a number > 0, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise TargetSpecError(f"a target's weight is a number > 0, got {value!r}")
    return float(value)


def _short(item: Any) -> str:
    text = repr(item)
    return text if len(text) <= 80 else text[:77] + "..."
