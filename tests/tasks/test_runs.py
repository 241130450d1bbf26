"""Run ids and the runtime's setup: stable, and different whenever the result could differ."""

import dataclasses
import subprocess
import sys

import pytest

from tasks.runs import RunParams, RunRequest, run_id
from tasks.runtime import Setup, store_root


@pytest.fixture
def setup(toy_model_dir, tmp_path):
    return Setup.resolve(str(toy_model_dir), "plt", str(tmp_path / "store"))


def test_run_id_is_stable_across_processes(setup):
    here = run_id(setup, RunRequest("w1 w2"))
    code = (
        "from tasks.runs import RunRequest, run_id; from tasks.runtime import Setup; "
        f"setup = Setup.resolve({setup.model!r}, 'plt', {setup.store!r}); "
        "print(run_id(setup, RunRequest('w1 w2')))"
    )
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert there.stdout.strip() == here


@pytest.mark.parametrize(
    "change",
    [
        {"node_threshold": 0.7},
        {"edge_threshold": 0.9},
        {"max_feature_nodes": 10},
        {"max_n_logits": 3},
        {"desired_logit_prob": 0.5},
        {"targets": ("w3",)},
        {"batch_size": 8},
    ],
)
def test_run_id_changes_with_every_parameter(setup, change):
    base = RunRequest("w1 w2")
    changed = RunRequest("w1 w2", dataclasses.replace(RunParams(), **change))
    assert run_id(setup, base) != run_id(setup, changed)


def test_run_id_changes_with_prompt_and_transcoders(setup, toy_model_dir):
    assert run_id(setup, RunRequest("w1 w2")) != run_id(setup, RunRequest("w1 w3"))
    clt = Setup.resolve(str(toy_model_dir), "clt", setup.store)
    assert run_id(setup, RunRequest("w1 w2")) != run_id(clt, RunRequest("w1 w2"))


def test_setup_resolution(toy_model_dir, tmp_path, monkeypatch):
    setup = Setup.resolve(str(toy_model_dir), "clt", None)
    assert setup.transcoders == str(toy_model_dir / "transcoders" / "clt")
    monkeypatch.setenv("CIRCUITFLOW_STORE", str(tmp_path / "elsewhere"))
    assert store_root() == str(tmp_path / "elsewhere")
    assert store_root("memory://x") == "memory://x"
    with pytest.raises(ValueError, match="needs a model directory"):
        Setup.resolve("gpt2", "plt", None)
