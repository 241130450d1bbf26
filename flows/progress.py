"""What `attribute` shows on stderr while it runs: a line as each stage starts and ends, and a
bar over the backward passes of the rows stage (the long one on a real model).

    precompute: computing
    precompute: computed in 2.31 s
    rows ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━ 4/7 edge-matrix rows 0:00:12

A live bar only draws on a terminal. When stderr is a file or a pipe (`2> log`, a batch job, a
parent process reading it) the backward passes are reported as plain lines instead, one per
tenth of the work, so a long run still shows that it is moving:

    rows: 3/7 edge-matrix rows
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class StageProgress:
    """A `tasks.progress.Reporter` that prints to stderr (use it as a context manager)."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, soft_wrap=True)
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("edge-matrix rows"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.tasks: dict[str, int] = {}
        self.tenths_shown: dict[str, int] = {}  # per stage, when stderr is not a terminal

    def __enter__(self) -> StageProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.stop()

    def stage(self, name: str, status: str, seconds: float | None = None) -> None:
        if status == "computing":
            self.console.print(f"{name}: computing", highlight=False)
            return
        self.tenths_shown.pop(name, None)
        if name in self.tasks:
            self.bar.remove_task(self.tasks.pop(name))
        took = f" in {seconds:.2f} s" if seconds is not None and status == "computed" else ""
        self.console.print(f"{name}: {status}{took}", highlight=False)

    def note(self, name: str, text: str) -> None:
        self.console.print(f"{name}: {text}", highlight=False)

    def steps(self, name: str, done: int, total: int) -> None:
        if not self.console.is_terminal:
            self._step_line(name, done, total)
            return
        if name not in self.tasks:
            self.tasks[name] = self.bar.add_task(name, total=total)
        self.bar.update(self.tasks[name], completed=done, total=total)

    def _step_line(self, name: str, done: int, total: int) -> None:
        """A plain line each time another tenth of `total` is done (and at the end)."""
        tenths = 10 if done >= total else done * 10 // max(total, 1)
        if tenths > self.tenths_shown.get(name, 0):
            self.tenths_shown[name] = tenths
            self.console.print(f"{name}: {done}/{total} edge-matrix rows", highlight=False)
