"""Prefect, configured for a quiet and fast local tool that respects the user's Prefect setup.

Every run is a Prefect flow run, so every run command needs a Prefect API. In order:

1. the user's own: `PREFECT_API_URL` in the environment, in the active profile
   (`prefect config set PREFECT_API_URL=...`, a Prefect Cloud login) or in ./prefect.toml;
2. a server started with `circuitflow server start`, if it is up (it records its address in
   `~/.cache/circuitflow/server.json`): nothing to start, so a cached threshold change costs
   about the imports alone;
3. otherwise Prefect's temporary server, started as a subprocess before the command imports
   Prefect and PyTorch (`flows.temporary_server`), and stopped when the command ends. It costs
   seconds (measured in benchmarks/RESULTS.md) and keeps its database in
   ./.circuitflow/prefect.db; only this database is project-local, the user's Prefect home and
   profiles are left alone.

The model hub is left online (only the built-in model, tests and CI are offline), and its
download bars show. Besides: no telemetry, logs at warning level unless asked, no flow
heartbeat (a 1 s join at the end of every flow run) and passive OpenMP waiting. `configure()`
must run before Prefect and torch are imported; `quiet_flows()` wraps each flow call.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

from circuitflow.store.fs import default_cache_dir

SERVER_FILE = "server.json"
DATABASE = Path(".circuitflow", "prefect.db")


def configure(verbose: bool = False) -> None:
    """Set Prefect's environment, keeping whatever the user set explicitly."""
    defaults = {
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_TO_API_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "DASK_LOGGING__DISTRIBUTED": "error",  # Dask's cluster start/stop chatter
        # Idle OpenMP threads spinning made 2 threads 5-10x slower on a shared 2-core machine;
        # this must be set before torch is first imported.
        "OMP_WAIT_POLICY": "PASSIVE",
        "DASK_DISTRIBUTED__WORKER__DAEMON": "false",
        # Only read by a server this process starts (the temporary one).
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{DATABASE.resolve()}",
        # Prefect's 20 s is too short for a first start (database creation) on a busy machine.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    }
    # Failed runs are reported by the commands themselves, without Prefect's tracebacks; these
    # variables reach Dask worker processes too.
    for logger in ("FLOW_RUNS", "TASK_RUNS"):
        defaults[f"PREFECT_LOGGING_LOGGERS_PREFECT_{logger}_LEVEL"] = "CRITICAL"
    for name, value in defaults.items():
        os.environ.setdefault(name, value)
    DATABASE.parent.mkdir(parents=True, exist_ok=True)
    if not user_api_url() and (running := running_server()):
        os.environ["PREFECT_API_URL"] = running
    if verbose:
        os.environ["PREFECT_LOGGING_LEVEL"] = "INFO"
        for logger in ("FLOW_RUNS", "TASK_RUNS"):
            os.environ[f"PREFECT_LOGGING_LOGGERS_PREFECT_{logger}_LEVEL"] = "INFO"


def user_api_url() -> str | None:
    """The Prefect API the user configured, looked up where Prefect looks and in its order
    (environment, ./.env, ./prefect.toml, ./pyproject.toml's [tool.prefect], the active
    profile) without importing Prefect."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    if url := _dotenv_value(Path(".env"), "PREFECT_API_URL"):
        return url
    if url := _toml(Path("prefect.toml")).get("api", {}).get("url"):
        return str(url)
    prefect_table = _toml(Path("pyproject.toml")).get("tool", {}).get("prefect", {})
    if url := prefect_table.get("api", {}).get("url"):
        return str(url)
    home = Path(os.environ.get("PREFECT_HOME", "~/.prefect")).expanduser()
    profiles = _toml(home / "profiles.toml")
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active", "ephemeral")
    url = profiles.get("profiles", {}).get(active, {}).get("PREFECT_API_URL")
    return str(url) if url else None


def _toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


def _dotenv_value(path: Path, name: str) -> str | None:
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    for line in lines:
        key, sep, value = line.strip().removeprefix("export ").partition("=")
        if sep and key.strip() == name:
            return value.strip().strip("'\"") or None
    return None


def server_file() -> Path:
    return default_cache_dir() / SERVER_FILE


def running_server() -> str | None:
    """The API URL of a `circuitflow server start` server that answers, else None."""
    try:
        url = json.loads(server_file().read_text())["api_url"]
    except (OSError, ValueError, KeyError):
        return None
    import httpx

    try:
        healthy = httpx.get(f"{url}/health", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        healthy = False
    return url if healthy else None


def start_server_early() -> Callable[[], None]:
    """Start Prefect's temporary server now, when no API is configured (see
    `flows.temporary_server`), and name it in PREFECT_API_URL.

    It takes seconds to boot, and so does importing PyTorch and TransformerLens: doing both at
    once saves the shorter of the two. Call this before Prefect is imported. Returns a function
    that waits until it is up; call it before the first flow runs. With an API configured (or
    a circuitflow server running), nothing starts.
    """
    if user_api_url() or _api_in_prefect_context():
        return lambda: None
    from circuitflow.flows.temporary_server import TemporaryServer

    server = TemporaryServer()
    _started.append(server)
    os.environ["PREFECT_API_URL"] = server.api_url
    return server.wait


_started: list = []  # temporary servers this process started (and so stops)


def _api_in_prefect_context() -> str | None:
    """An API set in this process's Prefect settings (a test harness, a caller's
    `temporary_settings`): only when Prefect is imported already, so a command's start stays
    free of that import."""
    if "prefect.settings" not in sys.modules:
        return None
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()


@contextlib.contextmanager
def quiet_flows() -> Iterator[None]:
    """No heartbeat thread, the temporary server's address for Dask workers, no tracebacks from
    its shutdown, and the temporary server stopped at the end (not left to an exit handler
    that a hung thread can keep from running)."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        temporary_settings,
    )

    # The temporary server logs spurious "Error flushing events" tracebacks while it stops.
    logging.getLogger("prefect.server").setLevel(logging.CRITICAL)
    updates: dict = {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
    if _started and _started[-1].up:
        # Name the temporary server in the settings that travel with each task to Dask workers:
        # a worker that finds no API URL starts a temporary server of its own (seconds each).
        updates[PREFECT_API_URL] = _started[-1].api_url
    try:
        with temporary_settings(updates=updates):
            yield
    finally:
        stop_temporary_server()


def stop_temporary_server() -> None:
    """Stop the temporary server `start_server_early` started, if any."""
    while _started:
        server = _started.pop()
        server.stop()
        if os.environ.get("PREFECT_API_URL") == server.api_url:
            del os.environ["PREFECT_API_URL"]
