"""Target specs: one canonical JSON form per question, and a clear error for anything else."""

import json

import pytest
import torch
from circuit_tracer.attribution.targets import CustomTarget

from circuitflow.attribution import RunParams
from circuitflow.attribution.target_specs import (
    TargetSpecError,
    canonical_target,
    direction,
    label,
    logit_diff,
)


@pytest.mark.parametrize(
    "given,canonical",
    [
        (" Austin", " Austin"),
        ({"token": " Austin"}, " Austin"),
        (7, 7),
        ({"id": 7}, 7),
        ({"logit_diff": (" Austin", 7)}, {"logit_diff": [" Austin", 7]}),
        ({"logit_diff": ["a", "b"], "weight": 1}, {"logit_diff": ["a", "b"]}),
        (
            {"direction": "d", "vector": torch.tensor([1, 0])},
            {"direction": "d", "vector": [1.0, 0.0]},
        ),
        (
            CustomTarget("d", 0.25, torch.tensor([0.5, -2.0])),
            {"direction": "d", "vector": [0.5, -2.0], "weight": 0.25},
        ),
    ],
)
def test_each_question_has_one_canonical_form(given, canonical):
    assert canonical_target(given) == canonical
    assert canonical_target(canonical) == canonical  # canonical forms are fixed points
    json.dumps(canonical)  # plain JSON


def test_helpers_build_canonical_specs():
    assert logit_diff(" Austin", " Dallas") == {"logit_diff": [" Austin", " Dallas"]}
    assert direction("texas", [0, 2], weight=0.5) == {
        "direction": "texas",
        "vector": [0.0, 2.0],
        "weight": 0.5,
    }
    assert label(logit_diff(" Austin", 4)) == "logit( Austin)-logit(#4)"
    assert label(direction("texas", [1.0])) == "direction:texas"


def test_run_params_hold_specs_canonically_and_stay_hashable():
    a = RunParams(targets=[{"token": "w1"}, {"logit_diff": ["w1", "w2"], "weight": 1.0}])
    b = RunParams(targets=("w1", logit_diff("w1", "w2")))
    assert a == b and hash(a) == hash(b)
    assert RunParams.from_dict(json.loads(json.dumps(a.to_dict()))) == a
    a.to_dict()["targets"][1]["logit_diff"][0] = "changed"  # a copy: the params stay as they were
    assert a.targets[1] == {"logit_diff": ["w1", "w2"]}
    assert a.to_columns()["targets"] == ["w1", "logit(w1)-logit(w2)"]


@pytest.mark.parametrize(
    "bad,message",
    [
        (2.5, "a target is a token"),
        (-1, "a token id is an integer >= 0"),
        (True, "a target is a token"),
        ({"token": "a", "id": 3}, "names one of token, id, logit_diff, direction"),
        ({"logit_diff": ["a"]}, "takes two tokens"),
        ({"logit_diff": ["a", "a"]}, "two different tokens"),
        ({"logit_diff": ["a", "b"], "colour": 1}, "unknown key 'colour'"),
        ({"direction": "", "vector": [1.0]}, "needs a name"),
        ({"direction": "d"}, "needs a 'vector'"),
        ({"direction": "d", "vector": [0.0, 0.0]}, "is zero"),
        ({"direction": "d", "vector": [1.0, float("nan")]}, "non-finite"),
        ({"direction": "d", "vector": [[1.0], [2.0]]}, "flat list"),
        ({"direction": "d", "vector": [1.0], "weight": 0}, "weight is a number > 0"),
    ],
)
def test_bad_specs_say_what_is_wrong(bad, message):
    with pytest.raises(TargetSpecError, match=message.replace("(", "\\(")):
        canonical_target(bad)
