"""Publishing stage objects on a background thread while the next stages compute.

A sweep's run computes a stage, and publishing that stage's object (a few dozen files written,
hashed and renamed into place) used to wait for the write before the next stage began. Those
writes are system calls: they release the GIL. So inside a sweep's batch (`publishing()`), a
stage's record is kept in memory for the stages after it (`tasks.context.remember`) and its
object is handed to one publishing thread, and the run's catalog entries follow it there; the
stage chain goes on at compute speed.

What stays true:

- FIFO, one thread: objects land in the order they were computed, and a job that reads an
  earlier object (the catalog entries) finds it published.
- A lookup of a key that is still being published waits for it (`settle`), so the next run of
  the same prompt finds the stage stored ("cached"), as it would without the thread.
- The store's lock on a key (`ObjectStore.computing`) is handed to the job with the record and
  released once the object is published: another process never computes a key this one has
  computed but not yet published. The publishing thread never takes a lock, and the computing
  thread holds none while it waits for the thread (`settle`, back-pressure): no cycle to
  deadlock on, even between processes.
- The batch's catalog batch is written only after `drain`: the catalog never names an object
  that is not published; a job's error (disk full) is raised there, or at the `settle` that
  meets it, and fails the batch as it would have failed the run.
- At most `MAX_PENDING` jobs wait, so records in flight stay bounded (each may be large).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

Where = tuple[str, str, str]  # (store root, stage, key)

MAX_PENDING = 8


class Publisher:
    """One publishing thread and the objects it has yet to publish."""

    def __init__(self, max_pending: int = MAX_PENDING) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="circuitflow-publish")
        self._pending: dict[Where, Future] = {}
        self._jobs: deque[Future] = deque()
        self.max_pending = max_pending

    def submit(self, job: Callable[[], Any], where: Where | None = None) -> None:
        """Run `job` after the jobs before it; `where` names the object it publishes."""
        future = self._pool.submit(job)
        self._jobs.append(future)
        if where is not None:
            self._pending[where] = future
            future.add_done_callback(lambda done: self._forget(where, done))
            self._forget(where, future)  # it may have finished before it was listed
        while len(self._jobs) > self.max_pending:
            self._jobs.popleft().result()
        while self._jobs and self._jobs[0].done():
            self._jobs.popleft().result()

    def _forget(self, where: Where, future: Future) -> None:
        """A published object needs no waiting for; a failed one stays, so that `settle`
        raises its error."""
        if future.done() and future.exception() is None:
            self._pending.pop(where, None)

    def settle(self, where: Where) -> None:
        """Wait until the object at `where` is published, if it is being published."""
        future = self._pending.get(where)
        if future is not None:
            future.result()

    def drain(self) -> None:
        """Wait for every job; raise the first job's error."""
        error: BaseException | None = None
        while self._jobs:
            try:
                self._jobs.popleft().result()
            except BaseException as failed:  # noqa: BLE001 - re-raised below, after the rest
                error = error or failed
        if error is not None:
            raise error

    def close(self) -> None:
        self._pool.shutdown(wait=True)


# The publisher of the batch running in this thread (its jobs run without one: they publish).
_active: contextvars.ContextVar[Publisher | None] = contextvars.ContextVar(
    "circuitflow_publisher", default=None
)


def active() -> Publisher | None:
    return _active.get()


@contextlib.contextmanager
def publishing() -> Iterator[Publisher]:
    """Publish on a background thread inside the block; every object is published at its end.

    A block inside another shares the outer one's thread and queue, and only the outermost
    waits: an in-process sweep keeps computing its next batch while the last one lands."""
    outer = _active.get()
    if outer is not None:
        yield outer
        return
    publisher = Publisher()
    token = _active.set(publisher)
    try:
        yield publisher
        publisher.drain()
    finally:
        with contextlib.suppress(BaseException):
            publisher.drain()  # a failed block still lets the objects in flight land
        publisher.close()
        # A sweep's generator closed by the garbage collector may end in another context.
        with contextlib.suppress(ValueError):
            _active.reset(token)


def settle(where: Where) -> None:
    """Wait for a background publish of `where` in this thread's batch, if there is one."""
    publisher = _active.get()
    if publisher is not None:
        publisher.settle(where)
