"""Prefect, configured for a quiet and fast local tool.

Prefect always talks to an API; with none configured it starts a temporary local server. We give
it a project-local home (`.circuitflow/prefect` beside the default store), no telemetry, logs at
warning level unless asked, and no flow heartbeat (a 1 s join at the end of every flow run).
`configure()` must run before Prefect is imported; `quiet_flows()` wraps each flow call.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path


def configure(verbose: bool = False) -> None:
    """Set Prefect's environment, keeping whatever the user set explicitly."""
    defaults = {
        "PREFECT_HOME": str(Path(".circuitflow", "prefect").resolve()),
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_TO_API_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TQDM_DISABLE": "1",
        "DASK_LOGGING__DISTRIBUTED": "error",  # Dask's cluster start/stop chatter
        # Idle OpenMP threads spinning made 2 threads 5-10x slower on a shared 2-core machine;
        # this must be set before torch is first imported.
        "OMP_WAIT_POLICY": "PASSIVE",
        "DASK_DISTRIBUTED__WORKER__DAEMON": "false",
        # The temporary server is a subprocess: its spurious "Error flushing events" tracebacks
        # while it stops reach the terminal unless its own log level says otherwise.
        "PREFECT_SERVER_LOGGING_LEVEL": "CRITICAL",
        # Its 20 s default to boot was too short on a busy 2-core machine (measured: failures).
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    }
    # Failed runs are reported by the commands themselves, without Prefect's tracebacks; these
    # variables reach Dask worker processes too.
    for logger in ("FLOW_RUNS", "TASK_RUNS"):
        defaults[f"PREFECT_LOGGING_LOGGERS_PREFECT_{logger}_LEVEL"] = "CRITICAL"
    for name, value in defaults.items():
        os.environ.setdefault(name, value)
    # Prefect does not create its home; without it the temporary server never starts.
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    if verbose:
        os.environ["PREFECT_LOGGING_LEVEL"] = "INFO"
        os.environ["PREFECT_SERVER_LOGGING_LEVEL"] = "WARNING"
        for logger in ("FLOW_RUNS", "TASK_RUNS"):
            os.environ[f"PREFECT_LOGGING_LOGGERS_PREFECT_{logger}_LEVEL"] = "INFO"


def start_server_early() -> Callable[[], None]:
    """Start Prefect's temporary server now, in a thread, when no API is configured.

    It takes seconds to boot, and so does importing PyTorch and TransformerLens: doing both at
    once saves the shorter of the two. Returns a function that waits until it is up; call it
    before the first flow runs. With PREFECT_API_URL set, nothing starts.
    """
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return lambda: None
    from prefect.server.api.server import SubprocessASGIServer

    thread = threading.Thread(target=SubprocessASGIServer().start, daemon=True)
    thread.start()
    return thread.join


@contextlib.contextmanager
def quiet_flows() -> Iterator[None]:
    """No heartbeat thread, and no tracebacks from the temporary server's shutdown."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    # The temporary server logs spurious "Error flushing events" tracebacks while it stops.
    logging.getLogger("prefect.server").setLevel(logging.CRITICAL)
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield
