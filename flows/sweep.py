"""The `sweep` flow: many prompts x a grid of settings, in this process or on Dask.

Runs are grouped into batches, each one `attribute-runs` task that runs its runs' stages
inline and records them in the catalog as one batch (see `tasks.execute`):

- one worker: the batches run one after another in the command's compute process
  (`flows.compute_process`), which imports the pipeline and loads the model once, on another
  core, while the command imports Prefect; there is no cluster to start;
- several workers (or `--dask-address`): the batches go to a Dask task runner; each worker is a
  separate process with its own copy of the model (HookedTransformer is not thread-safe).

A prompt's runs (every combination of the grid) share a batch and run back to back, so its
expensive stages (precompute, rows) are computed once and found stored by the rest; and two
workers never compute one key at once (`ObjectStore.computing`). Inside a run every stage is
looked up in the store first, so a sweep that was interrupted resumes where it stopped,
recomputing nothing stored. A failing prompt is recorded in `runs` with its error; the others
go on.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Iterator

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from circuitflow.attribution import RunParams
from circuitflow.flows import compute_process
from circuitflow.flows.sweep_files import expand
from circuitflow.tasks import RunOutcome, RunRequest, Setup
from circuitflow.tasks.prefect_tasks import attribute_runs_task
from circuitflow.tasks.publishing import publishing

Run = tuple[Setup, RunRequest]


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
    device: str = "cpu",
    show_progress: bool = True,
    workers: int = 2,
    in_process: bool = False,
) -> list[dict]:
    """Run every prompt of `file` with every combination of its grid (see `sweep_files`).

    `params` is a RunParams as a dict (Prefect records flow parameters: they stay JSON-like).
    `in_process` runs the batches one after another, instead of on the task runner: in the
    command's compute process when it started one (`flows.compute_process`), else here.
    `device` is a resolved device name ('cuda': each Dask worker takes the GPU of its number).
    """
    items, file_model = expand(file, RunParams.from_dict(params or {}), transcoders)
    setups = {
        tc: Setup.resolve(model or file_model, tc, store, device)
        for tc in {i.transcoders for i in items}
    }
    runs = [(setups[i.transcoders], i.request) for i in items]
    batches = list(batches_of(runs, batch_size(len(runs), workers, in_process)))

    outcomes: list[RunOutcome] = []
    start = time.perf_counter()
    with _progress(show_progress) as progress:
        bar = progress.add_task("runs", total=len(runs), cached=0, computed=0, failed=0, rate=0.0)
        for done in _results(batches, in_process):
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


@task(name="attribute-runs", cache_policy=NO_CACHE)
def attribute_runs_in_child(runs: list[Run]) -> list[RunOutcome]:
    """`attribute_runs_task`'s runs, executed in the command's compute process."""
    return compute_process.active().run(runs)


def _results(batches: list[list[Run]], in_process: bool) -> Iterator[list[RunOutcome]]:
    """Each batch's outcomes as it finishes."""
    if in_process and compute_process.active() is not None:
        # The child publishes each batch while it computes the next; `finish` waits for all.
        for batch in batches:
            yield attribute_runs_in_child(batch)
        compute_process.active().finish()
        return
    if in_process:
        # One publishing thread for every batch: a batch's objects and catalog entries are
        # written while the next one computes; all of them are in place when the sweep ends.
        with publishing():
            for batch in batches:
                yield attribute_runs_task(batch)
        return
    futures = [attribute_runs_task.submit(batch) for batch in batches]
    for future in as_completed(futures):
        yield future.result()


def batch_size(n_runs: int, workers: int, in_process: bool) -> int:
    """Runs per task. In this process: enough to make a catalog batch worth writing, few enough
    that progress moves. On workers: also small enough that every worker gets several tasks
    (so they finish together)."""
    if in_process:
        return 32
    return max(1, min(16, n_runs // (4 * max(workers, 1))))


def batches_of(runs: list[Run], size: int) -> Iterator[list[Run]]:
    """Batches of about `size` runs in which all runs of one prompt (and setup) stay together."""
    key = lambda run: (run[0].transcoders, run[1].prompt)  # noqa: E731
    batch: list[Run] = []
    for _, group in itertools.groupby(sorted(runs, key=key), key=key):
        group = list(group)
        if batch and len(batch) + len(group) > size:
            yield batch
            batch = []
        batch.extend(group)
    if batch:
        yield batch


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
