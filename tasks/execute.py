"""Running the pipeline: one generic stage runner, one run driver, and the run's catalog entries.

`run_stage` runs any stage of `tasks.pipeline`:

1. its key: SHA-256 of its name, version, its settings (`Stage.params`), its identities (model,
   transcoders) and the identities of its inputs' outputs;
2. if the store holds a sound object under that key: done, status "cached";
3. else compute the record, publish it atomically, status "computed".

(A run with analysis also computes a stored stage whose analysis points are on, without
publishing it, and observes the stages it computes: `tasks.analysis`.)

`execute_run` drives one run through every stage, in pipeline order, then writes its catalog
entries; bad input (an unknown word, a prompt too long) ends the run as "failed", recorded with its
error. It is the one driver for single prompts and sweeps; they differ only in `call`:

- `inline`: plain calls; sweeps run several whole runs (`attribute_runs`) as one Prefect task,
  because each task run has a fixed orchestration cost that would dwarf a small model's stages.
  Each stage is still looked up, computed only on a miss, and listed in `stage_events`.
- `prefect_tasks.as_task`: each stage a Prefect task run of the current flow (shown as `Cached`
  when stored); used for single prompts and re-pruning, so each stage shows in Prefect's UI.

This module does not import Prefect (`prefect_tasks` holds the Prefect tasks): a sweep's compute
process runs it without paying for that import.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import circuitflow.tasks.analysis as analysis
import circuitflow.tasks.publishing as publishing
from circuitflow.store import ObjectMissing, canonical_json, stage_key
from circuitflow.store.objects import default_code_version
from circuitflow.tasks.analysis_config import AnalysisConfig
from circuitflow.tasks.context import (
    RunContext,
    RunRequest,
    StageOutput,
    remember,
    run_id,
    store_for,
)
from circuitflow.tasks.declare import Stage
from circuitflow.tasks.pipeline import PIPELINE
from circuitflow.tasks.progress import stage_event
from circuitflow.tasks.runtime import Setup, identity, loaded


def stage_key_of(stage: Stage, run: RunContext) -> tuple[str, dict, dict]:
    """(key, params, inputs) of a stage in a run whose inputs have already run."""
    params = {name: run.param(name) for name in stage.params}
    inputs = {name: identity(run.setup, name) for name in stage.identities}
    inputs |= {name: run.outputs[name].identity for name in stage.inputs}
    return stage_key(stage.name, stage.version, params, inputs), params, inputs


def run_stage(stage: Stage, run: RunContext) -> StageOutput:
    """The stage's output from the store, or computed and published (see module docs)."""
    start = time.perf_counter()
    key, params, inputs = stage_key_of(stage, run)
    publishing.settle((run.store.root, stage.name, key))
    stored = run.store.get(stage.name, key)
    if stored is None:
        with contextlib.ExitStack() as held:
            held.enter_context(run.store.computing(stage.name, key))
            stored = run.store.get(stage.name, key)  # published while we waited?
            if stored is None:
                stage_event(stage.name, "computing")
                record = analysis.compute(stage, run)
                meta = publish_record(stage, run, record, key, params, inputs, held.pop_all())
                name = meta[stage.identity] if stage.identity else key
                seconds = time.perf_counter() - start
                stage_event(stage.name, "computed", seconds)
                return StageOutput(stage.name, key, "computed", seconds, name)
    analysis.replay(stage, run)  # only for a run with analysis points of this stage on
    name = stored.attrs["record"][stage.identity] if stage.identity else key
    stage_event(stage.name, "cached", time.perf_counter() - start)
    return StageOutput(stage.name, key, "cached", time.perf_counter() - start, name)


def publish_record(
    stage: Stage,
    run: RunContext,
    record,
    key: str,
    params: dict,
    inputs: dict,
    lock: contextlib.ExitStack | None = None,
) -> dict:
    """Publish a stage's record under `key` (atomically); returns its JSON metadata.

    The record is remembered for the stages after it at once; the object is written now, or
    by the batch's publishing thread when there is one (`tasks.publishing`). `lock` (the key's
    computing lock) is released once the object is published.
    """
    try:
        tensors, meta, files = record.to_parts()
    except BaseException:
        if lock is not None:
            lock.close()  # nothing will be published: let another process compute the key
        raise
    where = (run.store.root, stage.name, key)
    remember(where, record)

    def write() -> None:
        with lock or contextlib.nullcontext():
            attrs = {"record": meta, "retention": stage.retention}
            dims = dict(stage.dims)
            with run.store.writer(
                stage.name, key, version=stage.version, params=params, inputs=inputs, attrs=attrs
            ) as writer:
                for name, tensor in tensors.items():
                    writer.put_tensor(name, tensor, dims=dims.get(name))
                for name, data in files.items():
                    writer.put_file(name, data)

    publisher = publishing.active()
    if publisher is None:
        write()
    else:
        publisher.submit(write, where)
    return meta


Call = Callable[[Stage, RunContext], StageOutput]


def inline(stage: Stage, run: RunContext) -> StageOutput:
    return run_stage(stage, run)


# ------------------------------------------------------------------------------ the driver


@dataclass
class RunOutcome:
    """How one run ended."""

    run_id: str
    prompt: str
    status: str  # "ok" or "failed"
    cached: bool  # every stage was already stored
    error: str | None = None
    stages: list[StageOutput] = field(default_factory=list)
    analysis: dict | None = None  # with analysis: what fired, values kept, failures


def run_chain(run: RunContext, call: Call = inline) -> list[StageOutput]:
    """Every stage of the run, in pipeline order (those under a switch the run has off skipped)."""
    for stage in run.stages.values():
        if stage.when is None or run.param(stage.when):
            run.outputs[stage.name] = call(stage, run)
    return list(run.outputs.values())


class Recorder:
    """Collects finished runs' catalog entries and writes them as one batch (see
    `store.catalog`): a sweep writes a file per table per batch, not six per run."""

    def __init__(self) -> None:
        self.pending: dict[str, dict[str, dict[str, list[dict]]]] = {}  # store root -> runs
        self.final: set[str] = set()

    def add(self, run: RunContext, entries: dict[str, list[dict]], *, final: bool) -> None:
        self.pending.setdefault(run.setup.store, {})[run.run_id] = entries
        if final:
            self.final.add(run.run_id)

    def flush(self, pipeline: Sequence[Stage]) -> None:
        for root, runs in self.pending.items():
            catalog = store_for(root, pipeline).catalog
            catalog.write_batch(runs, final=[r for r in runs if r in self.final])
        self.pending.clear()
        self.final.clear()


def execute_run(
    setup: Setup,
    request: RunRequest,
    *,
    call: Call = inline,
    pipeline: Sequence[Stage] | None = None,
    recorder: Recorder | None = None,
    analysis_config: AnalysisConfig | None = None,
) -> RunOutcome:
    """One whole run: every stage, then its catalog entries (see the module docs).

    The entries go to `recorder` when one is given (the caller flushes it), else straight to
    the catalog. A run the catalog already holds is not recorded again.

    A stored input found damaged while a later stage reads it has been quarantined by the store
    (`ObjectMissing`); the chain then runs once more and recomputes it like any miss. With an
    `analysis_config`, its functions observe the stages that fire their points, and what they
    return is recorded apart (`tasks.analysis`); keys, objects and entries stay the same.
    """
    pipeline = PIPELINE if pipeline is None else pipeline
    with analysis.analysing(analysis_config) as session:
        outcome = _run(setup, request, call, pipeline, recorder)
        if session is not None and outcome.status == "ok":
            outcome.analysis = analysis.record_analysis(setup, pipeline, outcome.run_id, session)
    return outcome


def _run(
    setup: Setup,
    request: RunRequest,
    call: Call,
    pipeline: Sequence[Stage],
    recorder: Recorder | None,
) -> RunOutcome:
    own = recorder is None
    recorder = Recorder() if own else recorder
    start = time.perf_counter()
    rid = run_id(setup, request)
    try:
        try:
            stages = run_chain(RunContext(setup, request, {}, pipeline, rid), call)
        except ObjectMissing:
            stages = run_chain(RunContext(setup, request, {}, pipeline, rid), call)
    except ValueError as error:  # bad prompt or settings: PromptError, TargetError, ...
        message = f"{type(error).__name__}: {error}"
        run = RunContext(setup, request, {}, pipeline, rid)
        failed = [_run_row(run) | {"status": "failed", "error": message}]

        def record() -> None:
            recorder.add(run, {"runs": failed}, final=False)

        outcome = RunOutcome(rid, request.prompt, "failed", False, message)
    else:
        run = RunContext(setup, request, {s.stage: s for s in stages}, pipeline, rid)
        seconds = time.perf_counter() - start

        def record() -> None:
            if not run.store.catalog.recorded(rid):
                recorder.add(run, catalog_entries(run, seconds), final=True)

        cached = all(s.status == "cached" for s in stages)
        outcome = RunOutcome(rid, request.prompt, "ok", cached, stages=stages)
    # The entries go after the run's objects: with a publishing thread, into its queue (which
    # also keeps every change to a batch's recorder on that one thread).
    publisher = publishing.active()
    if publisher is None or own:
        if publisher is not None:
            publisher.drain()
        record()
        if own:
            recorder.flush(pipeline)
    else:
        publisher.submit(record)
    return outcome


# ------------------------------------------------------------------------------ catalog entries


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _run_row(run: RunContext) -> dict:
    """The part of a `runs` row known before any stage runs."""
    setup = run.setup
    return {
        "created_at": _now(),
        "model": setup.model,
        "model_digest": identity(setup, "model"),
        "transcoders": setup.transcoders,
        "transcoders_digest": identity(setup, "transcoders"),
        "prompt": run.prompt,
        **run.params.to_columns(),
        "params": canonical_json(run.params.to_dict()),
        "code_version": default_code_version(),
    }


def catalog_entries(run: RunContext, seconds: float) -> dict[str, list[dict]]:
    """A finished run's entries for every catalog table: the stages' tables, its stage
    events, and its `runs` row (with `seconds`, the run's wall time)."""
    start = time.perf_counter()
    ran = [stage for stage in run.stages.values() if stage.name in run.outputs]
    tables = {table.name: table.entries(run) for stage in ran for table in stage.tables}
    tables["stage_events"] = [
        {"stage": o.stage, "key": o.key, "status": o.status, "seconds": o.seconds}
        for o in run.outputs.values()
    ]
    columns = {c.name: c.value(run) for stage in ran for c in stage.run_columns}
    row = _run_row(run) | columns | {"status": "ok"}
    row["seconds"] = seconds + (time.perf_counter() - start)
    tables["runs"] = [row]
    return tables


# ------------------------------------------------------------------------------ sweeps


def attribute_runs(runs: list[tuple[Setup, RunRequest]]) -> list[RunOutcome]:
    """Several whole runs, one after the other (stages inline), recorded in the catalog as one
    batch when the last one ends: a sweep's unit of work (`prefect_tasks.attribute_runs_task`)."""
    recorder = Recorder()
    with publishing.publishing() as publisher:
        outcomes = [execute_run(setup, request, recorder=recorder) for setup, request in runs]
        # Queued after the batch's objects: the catalog never names one not yet published.
        publisher.submit(lambda: recorder.flush(PIPELINE))
    return outcomes


def warm_up(models: list[tuple[Setup, str]], threads: int) -> int:
    """Make this process ready to run `attribute_runs`: `threads` torch threads, this
    module (so the pipeline) imported and the models `(setup, dtype)` loaded. Sent to each Dask
    worker as it starts, so that imports and loading overlap the Prefect server's start instead
    of delaying the first batch. Returns this process's id."""
    import contextlib
    import os

    import torch

    torch.set_num_threads(threads)
    for setup, dtype in models:
        # A model that fails to load fails each run that needs it, which records the error.
        with contextlib.suppress(OSError, ValueError):
            loaded(setup, dtype)
    return os.getpid()
