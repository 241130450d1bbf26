"""A one-worker sweep's compute process (flows/compute_process.py, tasks/compute_child.py):
killed with its command, resumed with nothing lost; its errors reach the command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from circuitflow.flows.compute_process import ComputeProcess, ComputeProcessError
from circuitflow.store import Store
from circuitflow.tasks import RunRequest, Setup
from tests.flows.test_sweep import write_prompts

pytestmark = pytest.mark.slow  # subprocesses

CLI = [sys.executable, "-m", "circuitflow.flows"]


def compute_children(parent: int) -> list[int]:
    """Pids of the compute processes started by `parent` (their command line names it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                words = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"circuitflow.tasks.compute_child" in words and str(parent).encode() in words:
                found.append(int(entry.name))
    return found


def ok_runs(store_root: Path) -> list[dict]:
    if not (store_root / "tables" / "batches").exists():
        return []
    return [r for r in Store(store_root).catalog.read("runs").to_pylist() if r["status"] == "ok"]


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds processes in /proc")
def test_killing_the_command_ends_its_compute_process_and_the_sweep_resumes(
    prefect_api, toy_model_dir, tmp_path
) -> None:
    prompts = write_prompts(tmp_path / "prompts.txt", 45)  # two batches (32 a batch) and a bad one
    store_root = tmp_path / "store"
    command = [*CLI, "sweep", str(tmp_path / "prompts.txt"), "--model", str(toy_model_dir)]
    command += ["--store", str(store_root), "--workers", "1", "--json"]
    env = os.environ | {"PREFECT_API_URL": prefect_api}

    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not ok_runs(store_root) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert first.poll() is None, first.stderr.read().decode()[-2000:]
    children = compute_children(first.pid)
    assert len(children) == 1
    first.send_signal(signal.SIGKILL)  # the command alone, as an OOM killer would
    first.wait()
    deadline = time.monotonic() + 30
    while compute_children(first.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not compute_children(first.pid), "the compute process outlived its command"
    done_before = {r["run_id"] for r in ok_runs(store_root)}
    assert 0 < len(done_before) < 45

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    outcomes = {o["run_id"]: o for o in json.loads(second.stdout)}
    assert len(outcomes) == len(prompts) == 46
    for rid in done_before:
        assert {s["status"] for s in outcomes[rid]["stages"]} == {"cached"}
    rows = Store(store_root).catalog.read("runs").to_pylist()
    assert len(rows) == 46 and len({r["run_id"] for r in rows}) == 46
    assert [r["prompt"] for r in rows if r["status"] == "failed"] == ["w1 zebra w2"]


def test_a_compute_process_that_died_is_one_error_naming_what_to_do(toy_model_dir, tmp_path):
    setup = Setup.resolve(str(toy_model_dir), None, str(tmp_path / "store"))
    with ComputeProcess() as compute:
        compute._process.kill()
        with pytest.raises(ComputeProcessError, match="run the same command again"):
            compute.run([(setup, RunRequest("w1 w2 w3"))])


def test_an_error_in_a_batch_is_raised_in_the_command(toy_model_dir, tmp_path):
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the store should be")
    setup = Setup.resolve(str(toy_model_dir), None, str(tmp_path / "store"))
    with ComputeProcess() as compute:
        good = compute.run([(setup, RunRequest("w1 w2 w3"))])
        assert [o.status for o in good] == ["ok"]
        compute.finish()
        bad = Setup.resolve(str(toy_model_dir), None, str(blocked / "store"))
        with pytest.raises(Exception, match="not-a-directory"):
            compute.run([(bad, RunRequest("w1 w2 w3"))])
    assert len(Store(tmp_path / "store").catalog.read("runs")) == 1
