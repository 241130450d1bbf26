"""Sweeps on a local Dask cluster: killed halfway, resumed, one catalog row per prompt."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from circuitflow.store import Store

pytestmark = pytest.mark.slow  # servers, clusters and subprocesses

CLI = [sys.executable, "-m", "circuitflow.flows.cli"]


def write_prompts(path: Path, n: int) -> list[str]:
    rng = random.Random(0)
    prompts = [
        " ".join(f"w{rng.randint(0, 45)}" for _ in range(rng.randint(3, 9))) for _ in range(n)
    ]
    prompts.append("w1 zebra w2")  # not in the vocabulary: must fail alone
    path.write_text("\n".join(prompts) + "\n")
    return prompts


def recorded(store_root: Path) -> list[dict]:
    """The runs table as the catalog serves it ([] before the first batch is committed)."""
    if not (store_root / "tables" / "batches").exists():
        return []
    return Store(store_root).catalog.read("runs").to_pylist()


def test_killed_sweep_resumes_without_recomputing(prefect_api, toy_model_dir, tmp_path):
    prompts = write_prompts(tmp_path / "prompts.txt", 12)
    store_root = tmp_path / "store"
    command = CLI + [
        "sweep",
        str(tmp_path / "prompts.txt"),
        "--model",
        str(toy_model_dir),
        "--store",
        str(store_root),
        "--workers",
        "2",
        "--json",
    ]
    env = os.environ | {"PREFECT_API_URL": prefect_api}

    first = subprocess.Popen(
        command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 240
    ok = lambda: [r for r in recorded(store_root) if r["status"] == "ok"]  # noqa: E731
    while len(ok()) < 4 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert first.poll() is None, first.stderr.read().decode()[-2000:]
    os.killpg(first.pid, signal.SIGKILL)  # the sweep and its Dask workers, mid-flight
    first.wait()
    done_before = {r["run_id"] for r in recorded(store_root) if r["status"] == "ok"}
    assert 4 <= len(done_before) < 12

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    outcomes = {o["run_id"]: o for o in json.loads(second.stdout)}
    assert len(outcomes) == len(prompts) == 13
    for rid in done_before:  # finished before the kill: nothing recomputed
        assert outcomes[rid]["cached"], outcomes[rid]
        assert {s["status"] for s in outcomes[rid]["stages"]} == {"cached"}

    rows = recorded(store_root)
    assert len(rows) == 13 and len({r["run_id"] for r in rows}) == 13
    failed = [r for r in rows if r["status"] == "failed"]
    assert (
        len(failed) == 1 and failed[0]["prompt"] == "w1 zebra w2" and "zebra" in failed[0]["error"]
    )
    assert sorted(r["prompt"] for r in rows) == sorted(prompts)


def test_validated_sweep_on_an_existing_dask_cluster(prefect_api, toy_model_dir, tmp_path):
    from distributed import LocalCluster

    (tmp_path / "prompts.txt").write_text("w1 w2 w3\nw4 w5\n")
    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        command = CLI + [
            "sweep",
            str(tmp_path / "prompts.txt"),
            "--model",
            str(toy_model_dir),
            "--store",
            str(tmp_path / "store"),
            "--dask-address",
            cluster.scheduler_address,
            "--validate",
            "--json",
        ]
        env = os.environ | {"PREFECT_API_URL": prefect_api}
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    outcomes = json.loads(done.stdout)
    assert [o["status"] for o in outcomes] == ["ok", "ok"]
    assert all("validate" in {s["stage"] for s in o["stages"]} for o in outcomes)
    assert len(recorded(tmp_path / "store")) == 2
    checked = Store(tmp_path / "store").catalog.read("interventions").to_pylist()  # --validate
    assert {r["run_id"] for r in checked} == {o["run_id"] for o in outcomes}
