"""Which Prefect API a command uses: the user's own, a `circuitflow server`, or a temporary one."""

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.flows.test_schedule import free_port

pytestmark = pytest.mark.slow  # a real Prefect server


def flow_runs(api: str) -> list[dict]:
    return httpx.post(f"{api}/flow_runs/filter", json={}, timeout=10).json()


def run(command: list[str], env: dict, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_commands_reuse_a_running_server_and_respect_the_users_profile(tmp_path, toy_model_dir):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env |= {
        "PREFECT_HOME": str(tmp_path / "home"),
        "CIRCUITFLOW_CACHE_DIR": str(tmp_path / "cache"),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp_path}/server.db",
    }
    cli = [sys.executable, "-m", "circuitflow.flows.cli"]
    server = subprocess.Popen(
        [*cli, "server", "start", "--port", str(port)],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{api}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        recorded = json.loads((tmp_path / "cache" / "server.json").read_text())
        assert recorded["api_url"] == api
        status = subprocess.run([*cli, "server", "status"], env=env, capture_output=True,
                                text=True)  # fmt: skip
        assert f"running at {api}" in status.stdout

        attribute = [*cli, "attribute", "w1 w2 w3", "--model", str(toy_model_dir), "--json"]
        done = run(attribute + ["--store", str(tmp_path / "s1")], env, tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        assert [r["name"] for r in flow_runs(api)] and len(flow_runs(api)) == 1
        assert not (tmp_path / ".circuitflow" / "prefect.db").exists()  # no temporary server

        # A user's own profile wins over the recorded server, and is used as configured.
        other = env | {"CIRCUITFLOW_CACHE_DIR": str(tmp_path / "empty-cache")}
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        (home / "profiles.toml").write_text(
            f'active = "mine"\n[profiles.mine]\nPREFECT_API_URL = "{api}"\n'
        )
        done = run(attribute + ["--store", str(tmp_path / "s2")], other, tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        assert len(flow_runs(api)) == 2
    finally:
        os.kill(server.pid, signal.SIGTERM)  # `kill PID`, to the command alone
        server.wait(timeout=60)
    assert not (tmp_path / "cache" / "server.json").exists()  # removed when the server stops
    with pytest.raises(httpx.HTTPError):  # and the Prefect server it ran stopped with it
        httpx.get(f"{api}/health", timeout=2)
