"""kill -9 of a Dask worker in the middle of a sweep: the sweep still finishes, no object is
partial, and every prompt has exactly one run row."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from circuitflow.store import Store
from circuitflow.store.maintenance import verify
from tests.faults.checks import computed_twice
from tests.flows.test_sweep import recorded, write_prompts

pytestmark = pytest.mark.slow  # a cluster, a Prefect server and a subprocess


def test_sweep_survives_a_killed_worker(prefect_api, toy_model_dir, tmp_path: Path) -> None:
    from distributed import Client, LocalCluster

    prompts = write_prompts(tmp_path / "prompts.txt", 24)
    root = tmp_path / "store"
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        command = [sys.executable, "-m", "circuitflow.flows.cli", "sweep"]
        command += [str(tmp_path / "prompts.txt"), "--model", str(toy_model_dir)]
        command += ["--store", str(root), "--dask-address", cluster.scheduler_address, "--json"]
        env = os.environ | {"PREFECT_API_URL": prefect_api}
        sweep = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        # Kill a worker once the sweep is under way (some runs recorded, most not).
        deadline = time.monotonic() + 240
        while not recorded(root) and sweep.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sweep.poll() is None, sweep.stderr.read()[-2000:]
        victim = next(iter(client.run(os.getpid).values()))
        os.kill(victim, signal.SIGKILL)
        out, err = sweep.communicate(timeout=300)
    assert sweep.returncode == 0, err[-3000:]
    outcomes = json.loads(out)
    assert sorted(o["prompt"] for o in outcomes) == sorted(prompts)
    rows = recorded(root)
    assert sorted(r["prompt"] for r in rows) == sorted(prompts)  # one row per prompt
    store = Store(root)
    report = verify(store)
    assert report.ok, [str(p) for p in report.problems]
    assert computed_twice(store) == []
