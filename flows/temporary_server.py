"""Prefect's temporary API server, started as a bare subprocess before Prefect is imported.

Every run is a Prefect flow run, so a command that finds no Prefect API starts a server of its
own for as long as it runs. Prefect would start it itself (`SubprocessASGIServer`) on the first
API call, but importing the module that does so imports the whole server (FastAPI,
SQLAlchemy, about 6 CPU-seconds) into the command's process, which never serves anything, and
it starts the server only once Prefect has been imported. Here the command launches the very
same server process Prefect launches (uvicorn on `prefect.server.api.server:create_app`,
ephemeral: no UI, only the services a temporary server needs) before it imports Prefect, and
names it in `PREFECT_API_URL`, so this process, and the Dask workers its flows send tasks to,
use it and start none of their own. Its runs are kept in the project's database
(./.circuitflow/prefect.db), which `circuitflow server start` serves with the UI.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path


class TemporaryServer:
    """A Prefect API server subprocess on a free local port."""

    def __init__(self) -> None:
        with socket.socket() as probe:  # a free port, chosen by the system
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        spec = find_spec("prefect")
        app_dir = Path(spec.origin).parent.parent  # site-packages, as Prefect passes it
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        # What Prefect sets for its own temporary server: no UI, ephemeral services only.
        env |= {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1"}
        env["PREFECT__SERVER_FINAL"] = "1"
        # Nor block types: registering them first imports every installed Prefect collection
        # (prefect-dask, so Dask) to hash them, about 0.7 s of its 7 s start here. No run of
        # ours needs a block, and `circuitflow server start` registers them in the same database.
        env["PREFECT_SERVER_REGISTER_BLOCKS_ON_START"] = "0"
        env["PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION"] = "0"
        # And no usage heartbeat to Prefect's servers from a server the user did not start.
        env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "0"
        command = [sys.executable, "-m", "uvicorn", "--app-dir", str(app_dir), "--factory"]
        command += ["prefect.server.api.server:create_app", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--log-level", "error", "--lifespan", "on"]
        # A file, not a pipe: a pipe nobody reads would block the server once full.
        self.errors = tempfile.TemporaryFile()  # noqa: SIM115  (closed by stop)
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=self.errors
        )
        self.up = False

    def wait(self) -> None:
        """Return once the server answers; a RuntimeError (one line) if it cannot start."""
        import httpx

        timeout = float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", 120))
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    self.errors.seek(0)
                    last = self.errors.read().decode(errors="replace").strip()
                    last = last.splitlines()[-1] if last else ""
                    raise RuntimeError(f"Prefect's temporary server exited at start: {last}")
                try:
                    if client.get(f"{self.api_url}/health").status_code == 200:
                        self.up = True
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"Prefect's temporary server did not answer within {timeout:.0f} s (machine busy?): "
            "start one with `circuitflow server start`, or set "
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
        )

    def stop(self) -> None:
        """Stop the server (5 s to shut down cleanly, then killed)."""
        self.up = False
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.errors.close()
