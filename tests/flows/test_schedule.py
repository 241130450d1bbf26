"""`circuitflow schedule` against a real Prefect server: a deployment, and a scheduled run."""

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from circuitflow.store import Store

pytestmark = pytest.mark.slow  # servers, clusters and subprocesses


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def prefect_server(tmp_path):
    """`prefect server start` on a free port with its own home; yields the API URL."""
    port = free_port()
    env = os.environ | {
        "PREFECT_HOME": str(tmp_path / "server-home"),
        # Its own database: the session's (conftest) also holds other tests' temporary servers'
        # runs, which would show up among this server's flow runs.
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp_path}/server.db",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    api = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        server.kill()
        pytest.fail("prefect server did not start within 90 s")
    yield api
    os.killpg(server.pid, 15)
    server.wait(timeout=30)


def filtered(api: str, what: str) -> list[dict]:
    """`what` (flow_runs, deployments) as the API lists them; none while it answers 503
    (Prefect's "retry": SQLite busy under load)."""
    answer = httpx.post(f"{api}/{what}/filter", json={}, timeout=10)
    return [] if answer.status_code == 503 else answer.json()


def test_schedule_serves_a_deployment_whose_runs_execute(prefect_server, toy_model_dir, tmp_path):
    """The deployment is registered with its cron; a run of it, triggered through the API
    (as the scheduler would, without waiting for the next cron minute), executes the sweep."""
    prompts = tmp_path / "nightly.txt"
    prompts.write_text("w1 w2 w3\nw4 w5 w6 w7\n")
    store_root = tmp_path / "store"
    env = os.environ | {
        "PREFECT_API_URL": prefect_server,
        "PREFECT_HOME": str(tmp_path / "client-home"),
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
    }
    command = [sys.executable, "-m", "circuitflow.flows.cli", "schedule", str(prompts)]
    command += ["--cron", "0 3 * * *", "--model", str(toy_model_dir), "--store", str(store_root)]
    serve = subprocess.Popen(
        [*command, "--workers", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deployments = wait_for(lambda: filtered(prefect_server, "deployments"), serve)
        assert [d["name"] for d in deployments] == ["sweep-nightly"]
        assert deployments[0]["schedules"][0]["schedule"]["cron"] == "0 3 * * *"
        for _ in range(20):  # 503 is Prefect's "retry" (SQLite busy under load), as its client does
            created = httpx.post(
                f"{prefect_server}/deployments/{deployments[0]['id']}/create_flow_run",
                json={},
                timeout=10,
            )
            if created.status_code != 503:
                break
            time.sleep(0.5)
        assert created.status_code == 201, created.text
        done = wait_for(lambda: [r for r in filtered(prefect_server, "flow_runs")
                                 if r["state_type"] in ("COMPLETED", "FAILED", "CRASHED")],
                        serve)  # fmt: skip
        assert done[0]["state_type"] == "COMPLETED", done[0]["state_name"]
        assert done[0]["deployment_id"] == deployments[0]["id"]
    finally:
        os.killpg(serve.pid, 15)
        serve.wait(timeout=30)
    recorded = Store(store_root).catalog.read("runs").to_pylist()
    assert sorted(r["prompt"] for r in recorded) == ["w1 w2 w3", "w4 w5 w6 w7"]
    assert {r["status"] for r in recorded} == {"ok"}


def wait_for(probe, serve: subprocess.Popen, timeout: float = 180) -> list:
    """Poll `probe()` until it returns something non-empty; fail if the server process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        assert serve.poll() is None, serve.stdout.read().decode()[-3000:]
        time.sleep(1)
    pytest.fail(f"nothing after {timeout} s: {serve.stdout.read1().decode()[-3000:]}")
