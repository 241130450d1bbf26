"""What `attribute` shows on stderr while it runs: a line as each stage starts and ends, and a
bar over the backward passes of the rows stage (the long one on a real model).

    precompute: computing
    precompute: computed in 2.31 s
    rows ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━ 4/7 backward rows 0:00:12
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

    def __enter__(self) -> StageProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.stop()

    def stage(self, name: str, status: str, seconds: float | None = None) -> None:
        if status == "computing":
            self.console.print(f"{name}: computing", highlight=False)
            return
        if name in self.tasks:
            self.bar.remove_task(self.tasks.pop(name))
        took = f" in {seconds:.2f} s" if seconds is not None and status == "computed" else ""
        self.console.print(f"{name}: {status}{took}", highlight=False)

    def note(self, name: str, text: str) -> None:
        self.console.print(f"{name}: {text}", highlight=False)

    def steps(self, name: str, done: int, total: int) -> None:
        if name not in self.tasks:
            self.tasks[name] = self.bar.add_task(name, total=total)
        self.bar.update(self.tasks[name], completed=done, total=total)
