"""Run ids and the runtime's setup: stable, and different whenever the result could differ."""

import dataclasses
import subprocess
import sys

import pytest

from circuitflow.attribution import RunParams
from circuitflow.store import default_root
from circuitflow.tasks import RunRequest, Setup, run_id


@pytest.fixture
def setup(toy_model_dir, tmp_path):
    return Setup.resolve(str(toy_model_dir), "plt", str(tmp_path / "store"))


@pytest.mark.slow
def test_run_id_is_stable_across_processes(setup):
    here = run_id(setup, RunRequest("w1 w2"))
    code = (
        "from circuitflow.tasks import RunRequest, Setup, run_id; "
        f"setup = Setup.resolve({setup.model!r}, 'plt', {setup.store!r}); "
        "print(run_id(setup, RunRequest('w1 w2')))"
    )
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert there.stdout.strip() == here


def _another_valid_value(field: dataclasses.Field):
    value = field.default
    if field.metadata["choices"]:
        return next(c for c in field.metadata["choices"] if c != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, tuple):
        return ("w3",)
    if value is None:
        return 10
    if isinstance(value, float):
        return value / 2
    return value + 1


@pytest.mark.parametrize("name", RunParams.names())
def test_run_id_changes_with_every_parameter(setup, name):
    field = RunParams.__dataclass_fields__[name]
    changed = RunParams().replace(**{name: _another_valid_value(field)})
    assert run_id(setup, RunRequest("w1 w2")) != run_id(setup, RunRequest("w1 w2", changed))


def test_run_id_changes_with_prompt_and_transcoders(setup, toy_model_dir):
    assert run_id(setup, RunRequest("w1 w2")) != run_id(setup, RunRequest("w1 w3"))
    clt = Setup.resolve(str(toy_model_dir), "clt", setup.store)
    assert run_id(setup, RunRequest("w1 w2")) != run_id(clt, RunRequest("w1 w2"))


def test_setup_resolution(toy_model_dir, tmp_path, monkeypatch):
    setup = Setup.resolve(str(toy_model_dir), "clt", None)
    assert setup.transcoders == str(toy_model_dir / "transcoders" / "clt")
    monkeypatch.setenv("CIRCUITFLOW_STORE", str(tmp_path / "elsewhere"))
    assert default_root() == str(tmp_path / "elsewhere")
    assert Setup.resolve(str(toy_model_dir)).store == str(tmp_path / "elsewhere")
    assert default_root("memory://x") == "memory://x"
    with pytest.raises(ValueError, match="needs a model directory"):
        Setup.resolve("gpt2", "plt", None)
