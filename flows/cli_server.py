"""`circuitflow server start|status`: a long-lived Prefect server that every command reuses.

Without one, each command starts Prefect's temporary server (seconds) and stops it when it ends.
With one running, commands find it through `~/.cache/circuitflow/server.json` (unless the user
configured a Prefect API of their own, which always wins) and every run shows in its UI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import click

from circuitflow.flows.settings import DATABASE, configure, running_server, server_file


@click.group("server")
def server() -> None:
    """A long-lived local Prefect server that circuitflow commands reuse."""


@server.command("start")
@click.option("--port", type=int, default=4200, show_default=True, help="Port on 127.0.0.1.")
def start(port: int) -> None:
    """Run a Prefect server (with its UI) in the foreground; Ctrl-C stops it.

    Every circuitflow command started while it runs uses it instead of starting a temporary
    server of its own: a cached threshold change then costs about the imports alone. Its
    database is ./.circuitflow/prefect.db.

    \b
    Example:
      circuitflow server start            # in one terminal
      circuitflow attribute "..."         # in another: uses it, shows in http://127.0.0.1:4200
    """
    configure()
    if url := running_server():
        raise click.ClickException(f"a circuitflow server is already running at {url}")
    api_url = f"http://127.0.0.1:{port}/api"
    record = server_file()
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"api_url": api_url, "pid": os.getpid()}))
    click.echo(f"Prefect server for circuitflow at {api_url} (database {DATABASE.resolve()})")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
    child = subprocess.Popen([*command, "--port", str(port)], env=env)
    # `kill PID` (a service manager, a job scheduler) must stop the server too, not orphan it.
    signal.signal(signal.SIGTERM, lambda *_: child.terminate())
    try:
        child.wait()
    except KeyboardInterrupt:  # Ctrl-C reached the server as well: let it finish stopping
        child.wait()
    finally:
        with_pid = json.loads(record.read_text()) if record.exists() else {}
        if with_pid.get("pid") == os.getpid():
            record.unlink()


@server.command("status")
def status() -> None:
    """Say whether a circuitflow server is up, and where.

    \b
    Example:
      circuitflow server status
    """
    url = running_server()
    click.echo(f"running at {url}" if url else "not running (commands start a temporary server)")
