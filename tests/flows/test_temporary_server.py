"""A command with no Prefect API starts one temporary server, and only one: its Dask workers use
it (each used to start its own), and every run is recorded in the project's database."""

import os
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.flows.test_sweep import write_prompts

pytestmark = pytest.mark.slow  # a Prefect server, a Dask cluster, a subprocess


def servers_under(pid: int) -> set[int]:
    """Prefect server processes started by `pid` or its descendants."""
    table = subprocess.run(["ps", "-ww", "-eo", "pid=,ppid=,args="], capture_output=True, text=True)
    parent, args = {}, {}
    for line in table.stdout.splitlines():
        child, ppid, *rest = line.split(None, 2)
        parent[int(child)], args[int(child)] = int(ppid), " ".join(rest)

    def descends(p: int) -> bool:
        while p > 1:
            if p == pid:
                return True
            p = parent.get(p, 0)
        return False

    return {
        p for p, a in args.items() if "prefect.server.api.server:create_app" in a and descends(p)
    }


def test_a_sweep_on_workers_shares_one_temporary_server(toy_model_dir, tmp_path) -> None:
    write_prompts(tmp_path / "prompts.txt", 8)
    # No API, no recorded `circuitflow server`; configure() names the project's database.
    drop = ("PREFECT_API", "PREFECT_SERVER_DATABASE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env |= {"PREFECT_HOME": str(tmp_path / "home"), "CIRCUITFLOW_CACHE_DIR": str(tmp_path / "c")}
    # A new database is created on this first start: minutes on a loaded 2-core machine.
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "600"
    command = [sys.executable, "-m", "circuitflow.flows.cli", "sweep", "prompts.txt"]
    command += ["--model", str(toy_model_dir), "--workers", "2", "--store", "store", "--json"]
    sweep = subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    seen: set[int] = set()
    while sweep.poll() is None:
        seen |= servers_under(sweep.pid)
        time.sleep(0.25)  # a server lives for seconds at least; `ps` each time costs CPU
    out, err = sweep.communicate()
    assert sweep.returncode == 0, err[-3000:]
    assert len(seen) == 1, f"{len(seen)} Prefect servers started"

    with sqlite3.connect(tmp_path / ".circuitflow" / "prefect.db") as db:
        flows = db.execute(
            "SELECT fr.id FROM flow_run fr JOIN flow f ON f.id = fr.flow_id "
            "WHERE f.name = 'sweep' AND fr.state_type = 'COMPLETED'"
        ).fetchall()
        assert len(flows) == 1
        tasks = db.execute(
            "SELECT count(*) FROM task_run WHERE flow_run_id = ? AND state_type = 'COMPLETED'",
            flows[0],
        ).fetchone()[0]
    assert tasks >= 2  # the batches, each a task run of the sweep's flow run
