"""RunParams: the one place for defaults and ranges, and what derives from it."""

import inspect
import math

import pytest

from circuitflow.attribution import RunParams, attribute, prune
from circuitflow.attribution.params import DEFAULTS, ParamError
from circuitflow.attribution.rows import compute_rows
from circuitflow.attribution.targets import salient_targets


def test_defaults_of_the_library_functions_are_run_params_defaults():
    for fn in (attribute, prune, compute_rows, salient_targets):
        for name, parameter in inspect.signature(fn).parameters.items():
            if name in RunParams.names() and parameter.default is not inspect.Parameter.empty:
                default = parameter.default
                if name == "targets":  # the library says "no targets given" with None
                    default = () if default is None else default
                assert default == getattr(DEFAULTS, name), (fn.__name__, name)


def test_round_trip_through_plain_values():
    params = RunParams(node_threshold=0.5, targets=("w1", 3), max_feature_nodes=20)
    assert RunParams.from_dict(params.to_dict()) == params
    assert params.to_dict()["targets"] == ["w1", 3]  # JSON-friendly
    assert RunParams(targets=["w1"]).targets == ("w1",)


@pytest.mark.parametrize(
    "values,message",
    [
        ({"node_threshold": 0}, "node_threshold must be in (0, 1], got 0"),
        ({"edge_threshold": 1.5}, "edge_threshold must be in (0, 1]"),
        ({"desired_logit_prob": math.nan}, "desired_logit_prob must be in (0, 1]"),
        ({"node_threshold": "0.5"}, "got '0.5'"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"batch_size": True}, "batch_size must be a positive integer"),
        ({"max_feature_nodes": 2.5}, "max_feature_nodes must be a positive integer"),
        ({"update_interval": -1}, "update_interval must be a positive integer"),
        ({"targets": ("w1", 2.5)}, "targets: a target is a token (string or id)"),
        ({"targets": "w1"}, "targets: must be a list of targets"),
        ({"targets": [{"logit_diff": ["w1", "w1"]}]}, "two different tokens"),
        ({"speed": 3}, "speed is not a run setting"),
    ],
)
def test_bad_values_name_the_setting(values, message):
    with pytest.raises(ParamError) as info:
        RunParams.from_dict(values)
    assert message in str(info.value)
    assert info.value.name == next(iter(values))
