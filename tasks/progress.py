"""Progress of the stages running in this process, for whoever is watching (the CLI).

The pipeline reports four things: a stage starts computing, a stage ends (computed or found
stored, with its seconds), a long stage's steps (the rows stage's backward passes), and notes
(a reporter may define `note(name, text)`: the rows stage says when the feature budget cut). They go
to the reporter installed with `reporting(...)`, one per process; with none installed (a Dask
worker, a test, a library user) reporting costs nothing. A module-level reporter rather than a
parameter: Prefect runs stages in its own threads, and keys must not depend on who watches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Protocol


class Reporter(Protocol):
    def stage(self, name: str, status: str, seconds: float | None = None) -> None:
        """`status` is "computing" when a stage starts, then "computed" or "cached"."""

    def steps(self, name: str, done: int, total: int) -> None:
        """`done` of `total` steps of stage `name` are finished."""


_reporter: Reporter | None = None


@contextlib.contextmanager
def reporting(reporter: Reporter) -> Iterator[Reporter]:
    """Send this process's stage progress to `reporter` while the block runs."""
    global _reporter
    previous, _reporter = _reporter, reporter
    try:
        yield reporter
    finally:
        _reporter = previous


def stage_event(name: str, status: str, seconds: float | None = None) -> None:
    if _reporter is not None:
        _reporter.stage(name, status, seconds)


def stage_note(name: str, text: str) -> None:
    """A line for whoever watches about stage `name` (e.g. that the feature budget cut)."""
    note = getattr(_reporter, "note", None)
    if note is not None:
        note(name, text)


def step_callback(name: str) -> Callable[[int, int], None] | None:
    """A (done, total) callback for stage `name`'s steps, or None when nobody watches."""
    reporter = _reporter
    if reporter is None:
        return None
    return lambda done, total: reporter.steps(name, done, total)
