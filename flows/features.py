"""The `features` flow: feature dashboards of a transcoder set over a corpus, in chunks.

The corpus is cut into chunks of documents (`tasks.features`); each chunk is one task that
computes and stores its statistics unless the store already holds them, so an interrupted job
resumes with the chunks it lacks. With one worker the chunks run in this process (the model
loads once); with more (or `dask_address`) they run on a Dask cluster, one process per worker
with its own model, like sweeps. A progress bar counts chunks. The merge then stores the
dashboards and writes the `features` catalog table.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from circuitflow.attribution.dashboards import DashboardParams
from circuitflow.flows.sweep import dask_runner
from circuitflow.tasks.corpus import read_corpus
from circuitflow.tasks.features import (
    DashboardJob,
    Dashboards,
    chunk_done,
    compute_chunk,
    merge_job,
)
from circuitflow.tasks.runtime import Setup


@task(name="feature-chunks", cache_policy=NO_CACHE)
def chunks_task(job: DashboardJob, chunks: list[int]) -> list[str]:
    """Several chunks, one after the other: "computed" or "cached" for each."""
    return [compute_chunk(job, chunk) for chunk in chunks]


@task(name="merge-features", cache_policy=NO_CACHE)
def merge_task(job: DashboardJob) -> Dashboards:
    return merge_job(job)


def feature_dashboards(
    setup: Setup,
    corpus: str | None = None,
    params: DashboardParams | None = None,
    *,
    chunk_documents: int = 256,
    workers: int = 1,
    dask_address: str | None = None,
    show_progress: bool = True,
) -> tuple[Dashboards, dict]:
    """Run the flow (on Dask when asked); returns the dashboards and a summary.

    `corpus` is a file (see `tasks.corpus`) or None for the built-in model's text; it is read
    inside the flow, so that Prefect records its name, not its documents."""
    settings = dataclasses.asdict(params or DashboardParams())
    flow_run = features_flow
    if workers > 1 or dask_address:
        flow_run = features_flow.with_options(task_runner=dask_runner(workers, dask_address))
    in_process = not (workers > 1 or dask_address)
    return flow_run(setup, corpus, settings, chunk_documents, in_process, show_progress)


@flow(name="features")
def features_flow(
    setup: Setup,
    corpus: str | None,
    params: dict,
    chunk_documents: int,
    in_process: bool,
    show_progress: bool,
):
    start = time.perf_counter()
    job = DashboardJob(setup, read_corpus(corpus), DashboardParams(**params), chunk_documents)
    todo = [c for c in range(job.n_chunks) if not chunk_done(job, c)]
    counts = {"cached": job.n_chunks - len(todo), "computed": 0}
    groups = [todo[i : i + 2] for i in range(0, len(todo), 2)]  # two chunks a task
    with _progress(show_progress) as progress:
        bar = progress.add_task("chunks", total=job.n_chunks, completed=counts["cached"],
                                cached=counts["cached"], computed=0)  # fmt: skip
        for statuses in _results(job, groups, in_process):
            for status in statuses:
                counts[status] += 1
            progress.update(bar, advance=len(statuses), **counts)
    dashboards = merge_task(job) if in_process else merge_task.submit(job).result()
    summary = {
        "id": job.id,
        "key": dashboards.key,
        "chunks": job.n_chunks,
        **{f"chunks_{name}": n for name, n in counts.items()},
        "documents": len(job.corpus),
        "tokens": dashboards.stats.n_tokens,
        "features": int(dashboards.stats.count.numel()),
        "seconds": time.perf_counter() - start,
    }
    return dashboards, summary


def _results(job: DashboardJob, groups: list[list[int]], in_process: bool) -> Iterator[list]:
    if in_process:
        for group in groups:
            yield chunks_task(job, group)
        return
    futures = [chunks_task.submit(job, group) for group in groups]
    for future in as_completed(futures):
        yield future.result()


def _progress(show: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("cached {task.fields[cached]}  computed {task.fields[computed]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not show,
    )
