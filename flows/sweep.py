"""The `sweep` flow: many prompts x a grid of settings, on a Dask task runner.

Every run's stages are submitted as tasks at once; Dask runs them in worker processes, each with
its own copy of the model (loaded once per process). A run whose stages are all stored costs a
store lookup per stage, so a sweep that was interrupted resumes where it stopped. A failing
prompt is recorded in `runs` with its error; the others go on.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from prefect import flow
from prefect.futures import as_completed
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from flows.attribute import chain_with_repair, stage_chain
from flows.sweeps import expand
from tasks.runs import RunParams, record_failure_task, record_run_task, run_id
from tasks.runtime import Setup


@dataclass
class SweepOutcome:
    run_id: str
    prompt: str
    status: str  # ok, failed
    cached: bool  # every stage was already stored
    error: str | None = None


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


def _submit(task, *args, **kwargs):
    return task.submit(*args, **kwargs)


@flow(name="sweep")
def sweep(
    file: str,
    model: str | None = None,
    transcoders: str | None = None,
    store: str | None = None,
    params: dict | None = None,
    show_progress: bool = True,
) -> list[dict]:
    """Run every prompt of `file` with every combination of its grid; see flows.sweeps."""
    base = RunParams(**(params or {}))
    items, file_model = expand(file, base, transcoders)
    setups = {
        tc: Setup.resolve(model or file_model, tc, store) for tc in {i.transcoders for i in items}
    }
    chains = []
    for item in items:
        setup = setups[item.transcoders]
        rid = run_id(setup, item.request)
        stages = stage_chain(setup, item.request, rid, call=_submit)
        record = record_run_task.submit(setup, item.request, stages)
        chains.append((item, setup, rid, stages, record))

    outcomes: list[SweepOutcome] = []
    by_record = {id(c[4]): c for c in chains}
    start = time.perf_counter()
    with _progress(show_progress) as progress:
        bar = progress.add_task(
            "prompts", total=len(chains), cached=0, computed=0, failed=0, rate=0.0
        )
        for record in as_completed([c[4] for c in chains]):
            item, setup, rid, stages, _ = by_record[id(record)]
            outcomes.append(_outcome(item, setup, rid, stages, record))
            counts = {
                "cached": sum(o.cached for o in outcomes),
                "failed": sum(o.status == "failed" for o in outcomes),
            }
            counts["computed"] = len(outcomes) - counts["cached"] - counts["failed"]
            rate = 60 * len(outcomes) / max(time.perf_counter() - start, 1e-9)
            progress.update(bar, advance=1, rate=rate, **counts)
    return [dataclasses.asdict(o) for o in outcomes]


def _outcome(item, setup, rid, stages, record) -> SweepOutcome:
    prompt = item.request.prompt
    try:
        record.result()
        outputs = [s.result() for s in stages]
        return SweepOutcome(rid, prompt, "ok", all(o.status == "cached" for o in outputs))
    except Exception:
        error = _first_error(stages + [record])
    if error.startswith(("ObjectMissing", "ObjectCorrupted")):
        # A damaged stored input, now quarantined: run this prompt again here, recomputing it.
        outputs = chain_with_repair(setup, item.request, rid)
        record_run_task(setup, item.request, outputs)
        return SweepOutcome(rid, prompt, "ok", False)
    record_failure_task(setup, item.request, error)
    return SweepOutcome(rid, prompt, "failed", False, error)


def _first_error(futures) -> str:
    """The message of the first stage that failed (later ones only failed because of it)."""
    for future in futures:
        future.wait()
        if future.state.is_failed() or future.state.is_crashed():
            error = future.result(raise_on_failure=False)
            if isinstance(error, BaseException):
                return f"{type(error).__name__}: {error}"
            return str(future.state.message)
    return "unknown failure"


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
        transient=False,
    )
