"""The `circuitflow` command's entry point: run the command, then leave without a teardown.

When a Python program ends, the interpreter tears itself down: it joins threads, runs the
`atexit` handlers, and then frees every module and object one by one. With torch,
TransformerLens and a loaded model that last part took 1.5-2.5 s on a 2-core machine, longer
than a cached threshold change's own work. Nothing in it matters to a finished command: every
file is written and closed, every server and worker stopped by then.

So `run` registers one `atexit` handler before anything else is imported. Handlers run last
registered first, so this one runs after all the others (Prefect's event and log flushes, the
logging module's, multiprocessing's): it flushes stdout and stderr and ends the process with the
command's exit code at once.

`python -m circuitflow.flows` runs the same; `python -m circuitflow.flows.cli` exits the usual way.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys

_exit_code = 1  # unless the command ends with SystemExit: an exception escaped it


def _leave() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed, or its reader went away
            stream.flush()
    os._exit(_exit_code)


def _code_of(done: SystemExit) -> int:
    if done.code is None:
        return 0
    return done.code if isinstance(done.code, int) else 1  # a message: Python prints it, exits 1


def run() -> None:
    """The console script: the click command group, then a quick exit."""
    global _exit_code
    atexit.register(_leave)  # first registered, so last run
    from circuitflow.flows.cli import main

    try:
        main()
    except SystemExit as done:
        _exit_code = _code_of(done)
        raise
    except KeyboardInterrupt:
        _exit_code = 130
        raise
