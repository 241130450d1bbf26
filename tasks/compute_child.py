"""A sweep's compute process: runs batches of runs for the command that started it.

    python -m circuitflow.tasks.compute_child PARENT_PID

Started by `flows.compute_process.ComputeProcess` as a one-worker sweep's command starts, it
imports the pipeline and TransformerLens at once, on its own core, while the command imports
Prefect and creates the flow run (imports hold the GIL: in one process they only take turns).

It reads pickled messages on stdin and answers each on its own stdout (anything printed goes to
stderr instead):

- ("warm", [(setup, dtype), ...]): load these models; no answer (a model that fails to load
  fails the runs that need it, which record the error);
- ("batch", [(setup, request), ...]): `execute.attribute_runs`, answered ("ok", outcomes) or
  ("error", exception);
- ("finish", None): wait until every object and catalog batch is written; answered likewise.

Its objects are published by one publishing thread across all batches, as in an in-process
sweep. It ends at the end of its input, and at once if the command dies, as the command's own
thread would have.
"""

from __future__ import annotations

import os
import pickle
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, BinaryIO

import transformer_lens  # noqa: F401 - imported now: the heaviest part of start-up

import circuitflow.tasks.publishing as publishing
from circuitflow.tasks.execute import attribute_runs, warm_up


def _answer(replies: BinaryIO, work: Callable[[], Any]) -> None:
    try:
        message = ("ok", work())
    except BaseException as failed:  # noqa: BLE001 - sent to the command, which raises it
        message = ("error", _picklable(failed))
    pickle.dump(message, replies)
    replies.flush()


def _picklable(error: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001 - any exception that does not survive pickling
        return RuntimeError(f"{type(error).__name__}: {error}")


def serve(commands: BinaryIO, replies: BinaryIO) -> None:
    """Answer messages from `commands` on `replies` until the end of `commands`."""
    with publishing.publishing() as publisher:
        while True:
            try:
                kind, payload = pickle.load(commands)
            except EOFError:
                return
            if kind == "warm":
                warm_up(payload, threads=_threads())
            elif kind == "batch":
                _answer(replies, lambda runs=payload: attribute_runs(runs))
            elif kind == "finish":
                _answer(replies, publisher.drain)
            else:
                raise ValueError(f"unknown message {kind!r}")


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _exit_with(parent: int) -> None:
    """End this process as soon as the command that started it is gone (killed, say)."""
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(1)


def main() -> None:
    parent = int(sys.argv[1])
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print must not break a reply
    sys.stdout = sys.stderr
    serve(sys.stdin.buffer, replies)
    replies.close()
    sys.stderr.flush()
    os._exit(0)  # everything is written: skip the interpreter's teardown (see flows/entry.py)


if __name__ == "__main__":
    main()
