"""A one-worker sweep's compute process, started as the command starts.

In one process, a sweep's start-up was the sum of two import chains that cannot overlap
(imports hold the GIL): Prefect's and the store's for the flow, then torch's and
TransformerLens's for the model, about 13 s of one core on a 2-core machine before the first
run. Here the command starts `tasks/compute_child.py` before it imports anything heavy; the
child imports the pipeline and TransformerLens and loads the model on the other core while this
process imports Prefect and creates the flow run. Each batch is still a Prefect task run of
the sweep flow, here; its runs execute in the child exactly as they would in this process
(stages inline, objects on a publishing thread, one catalog batch), and the outcomes come back.

`active()` is the compute process the sweep flow should use, set by `using` around the flow.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from types import TracebackType
from typing import Any


class ComputeProcessError(RuntimeError):
    """The compute process ended before it answered."""


class ComputeProcess:
    """The child process and the pipes to it. A context manager: leaving it ends the child."""

    def __init__(self) -> None:
        self._process: subprocess.Popen | None = None
        self._used = False  # a batch was sent: closing lets the child finish writing it

    def __enter__(self) -> ComputeProcess:
        command = [sys.executable, "-m", "circuitflow.tasks.compute_child", str(os.getpid())]
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def warm(self, models: list) -> None:
        """Load these `(Setup, dtype)` models in the child before its first batch."""
        self._send(("warm", models))

    def run(self, runs: list) -> list:
        """The outcomes of `execute.attribute_runs(runs)`, run in the child."""
        self._used = True
        self._send(("batch", runs))
        return self._answer()

    def finish(self) -> None:
        """Wait until the child has written every object and catalog batch."""
        self._send(("finish", None))
        self._answer()

    def close(self) -> None:
        """End the child. One that ran batches finishes writing them (at the end of its input
        it drains its publishing thread) before it exits; one that ran none (the command failed
        early, or needed more workers) is stopped at once."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(OSError):
            process.stdin.close()
        if not self._used:
            process.kill()
        process.wait()
        process.stdout.close()

    def _send(self, message: tuple[str, Any]) -> None:
        try:
            pickle.dump(message, self._process.stdin)
            self._process.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._ended() from None

    def _answer(self) -> Any:
        try:
            status, value = pickle.load(self._process.stdout)
        except EOFError:
            raise self._ended() from None
        if status == "error":
            raise value
        return value

    def _ended(self) -> ComputeProcessError:
        code = self._process.wait()
        return ComputeProcessError(
            f"the sweep's compute process ended with exit code {code} (its error is above); "
            "run the same command again: stored stages are kept"
        )


_active: ComputeProcess | None = None


def active() -> ComputeProcess | None:
    return _active


@contextlib.contextmanager
def using(compute: ComputeProcess | None) -> Iterator[None]:
    """Sweep flows run inside the block use `compute` for their in-process batches."""
    global _active
    previous, _active = _active, compute
    try:
        yield
    finally:
        _active = previous
