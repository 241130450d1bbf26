"""The `sweep` flow: many prompts x a grid of settings, on a Dask task runner.

Runs go to Dask a few at a time, as `attribute-runs` tasks; workers are separate processes,
each with its own copy of the model, loaded once. Inside a run every stage is looked up in the
store first, so a sweep that was interrupted resumes where it stopped, recomputing nothing
stored. A failing prompt is recorded in `runs` with its error; the others go on.
"""

from __future__ import annotations

import dataclasses
import time

from prefect import flow
from prefect.futures import as_completed
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from circuitflow.attribution import RunParams
from circuitflow.flows.sweep_files import expand
from circuitflow.tasks import RunOutcome, Setup
from circuitflow.tasks.execute import attribute_runs_task


def dask_runner(workers: int = 2, address: str | None = None):
    """A Dask task runner: an existing cluster at `address`, else a local one of `workers`
    single-threaded processes (the model is not thread-safe; processes each load their own)."""
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": workers,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
        }
    )


@flow(name="sweep")
def sweep(
    file: str,
    model: str | None = None,
    transcoders: str | None = None,
    store: str | None = None,
    params: dict | None = None,
    show_progress: bool = True,
    workers: int = 2,
    validate: bool = False,
) -> list[dict]:
    """Run every prompt of `file` with every combination of its grid (see `sweep_files`);
    with `validate`, each run's causal checks too (`VALIDATE_PIPELINE`).

    `params` is a RunParams as a dict (Prefect records flow parameters: they stay JSON-like).
    """
    items, file_model = expand(file, RunParams.from_dict(params or {}), transcoders)
    setups = {
        tc: Setup.resolve(model or file_model, tc, store) for tc in {i.transcoders for i in items}
    }
    runs = [(setups[i.transcoders], i.request) for i in items]
    size = batch_size(len(runs), workers)
    futures = [
        attribute_runs_task.submit(runs[start : start + size], validate)
        for start in range(0, len(runs), size)
    ]

    outcomes: list[RunOutcome] = []
    start = time.perf_counter()
    with _progress(show_progress) as progress:
        bar = progress.add_task("runs", total=len(runs), cached=0, computed=0, failed=0, rate=0.0)
        for future in as_completed(futures):
            done = future.result()
            outcomes.extend(done)
            failed = sum(o.status == "failed" for o in outcomes)
            cached = sum(o.cached for o in outcomes)
            rate = 60 * len(outcomes) / max(time.perf_counter() - start, 1e-9)
            progress.update(
                bar,
                advance=len(done),
                cached=cached,
                computed=len(outcomes) - cached - failed,
                failed=failed,
                rate=rate,
            )
    return [
        {k: v for k, v in dataclasses.asdict(o).items() if k != "stages"}
        | {"stages": [dataclasses.asdict(s) for s in o.stages]}
        for o in outcomes
    ]


def batch_size(n_runs: int, workers: int) -> int:
    """Runs per task: enough to spread the fixed cost of a task run, small enough that every
    worker gets several tasks (so they finish together) and progress moves often."""
    return max(1, min(8, n_runs // (4 * max(workers, 1))))


def _progress(show: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "cached {task.fields[cached]}  computed {task.fields[computed]}  "
            "failed {task.fields[failed]}  {task.fields[rate]:.1f}/min"
        ),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not show,
    )
