"""`circuitflow schedule` against a real Prefect server: a deployment, and a scheduled run."""

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from store import Store


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


def completed_runs(api: str) -> list[dict]:
    body = {"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}}
    return httpx.post(f"{api}/flow_runs/filter", json=body, timeout=10).json()


def test_schedule_registers_a_deployment_whose_scheduled_run_executes(
    prefect_server, toy_model_dir, tmp_path
):
    prompts = tmp_path / "nightly.txt"
    prompts.write_text("w1 w2 w3\nw4 w5 w6 w7\n")
    store_root = tmp_path / "store"
    env = os.environ | {
        "PREFECT_API_URL": prefect_server,
        "PREFECT_HOME": str(tmp_path / "client-home"),
    }
    serve = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "schedule",
            str(prompts),
            "--cron",
            "* * * * *",
            "--model",
            str(toy_model_dir),
            "--store",
            str(store_root),
            "--workers",
            "1",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 200  # the next minute boundary, then the sweep itself
        deployments = []
        while time.monotonic() < deadline:
            deployments = httpx.post(
                f"{prefect_server}/deployments/filter", json={}, timeout=10
            ).json()
            if completed_runs(prefect_server) or serve.poll() is not None:
                break
            time.sleep(2)
        assert serve.poll() is None, serve.stdout.read().decode()[-3000:]
        assert [d["name"] for d in deployments] == ["sweep-nightly"]
        assert deployments[0]["schedules"][0]["schedule"]["cron"] == "* * * * *"
        runs = completed_runs(prefect_server)
        assert runs and runs[0]["deployment_id"] == deployments[0]["id"]
    finally:
        os.killpg(serve.pid, 15)
        serve.wait(timeout=30)
    recorded = Store(store_root).catalog.read("runs").to_pylist()
    assert sorted(r["prompt"] for r in recorded) == ["w1 w2 w3", "w4 w5 w6 w7"]
    assert {r["status"] for r in recorded} == {"ok"}
