"""The stages of one run in order, and the ways to execute them.

    tokenize -> precompute -> targets -> rows -> influence -> prune -> export

`stage_chain` wires the stage tasks together; `call` decides how each task runs:

- `call_task`: as a Prefect task run inside the current flow, so each stage shows in Prefect
  (a stored stage as `Cached`). Used for single prompts and re-pruning.
- `call_inline`: as a plain function call. `attribute_runs_task` runs whole runs this way, a few
  per task: sweeps use it, because every task run handed to a Dask worker pays a fixed
  orchestration cost (measured: a few tenths of a second) that would dwarf a small model's
  stages. Each stage is still looked up in the store, computed only on a miss, and listed in the
  run's stage_events.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.states import State

from store import ObjectMissing
from tasks.runs import RunRequest, record_failure_task, record_run_task, run_id
from tasks.runtime import Setup
from tasks.stages import (
    StageOutput,
    export_task,
    influence_task,
    precompute_task,
    prune_task,
    rows_task,
    targets_task,
    tokenize_task,
)


def call_task(task_, *args, **kwargs):
    """Run a stage as a task of the current flow and return its output (a cached stage ends in
    a `Cached` state that carries the output, so ask for the state and read its result)."""
    return task_(*args, return_state=True, **kwargs).result()


def call_inline(task_, *args, **kwargs):
    """Run a stage's function directly, without a task run of its own."""
    out = task_.fn(*args, **kwargs)
    return out.result() if isinstance(out, State) else out


def stage_chain(setup: Setup, request: RunRequest, slug: str, call=call_task) -> list[StageOutput]:
    """Every stage of one run, in order."""
    p = request.params
    tok = call(tokenize_task, setup, request.prompt)
    pre = call(precompute_task, setup, tok)
    tgt = call(
        targets_task,
        setup,
        pre,
        targets=list(p.targets) or None,
        max_n_logits=p.max_n_logits,
        desired_logit_prob=p.desired_logit_prob,
    )
    rows = call(
        rows_task,
        setup,
        pre,
        tgt,
        max_feature_nodes=p.max_feature_nodes,
        batch_size=p.batch_size,
        update_interval=p.update_interval,
    )
    inf = call(influence_task, setup, pre, tgt, rows)
    pruned = call(
        prune_task,
        setup,
        pre,
        tgt,
        rows,
        inf,
        node_threshold=p.node_threshold,
        edge_threshold=p.edge_threshold,
    )
    exported = call(export_task, setup, pre, tgt, rows, pruned, prompt=request.prompt, slug=slug)
    return [tok, pre, tgt, rows, inf, pruned, exported]


def chain_with_repair(
    setup: Setup, request: RunRequest, rid: str, call=call_task
) -> list[StageOutput]:
    """The stage chain, run again once if a stored input turned out damaged.

    A cache check looks at sizes, not contents; contents are verified as they are read. A stage
    that reads a damaged input gets `ObjectMissing` (the store has quarantined the object), and
    the second pass recomputes it like any miss.
    """
    try:
        return stage_chain(setup, request, rid, call)
    except ObjectMissing:
        return stage_chain(setup, request, rid, call)


@dataclass
class RunOutcome:
    """How one run of a sweep ended."""

    run_id: str
    prompt: str
    status: str  # "ok" or "failed"
    cached: bool  # every stage was already stored
    error: str | None = None
    stages: list[StageOutput] = field(default_factory=list)


@task(name="attribute-runs", cache_policy=NO_CACHE)
def attribute_runs_task(runs: list[tuple[Setup, RunRequest]]) -> list[RunOutcome]:
    """Several whole runs, one after the other, as one task (see `attribute_run`)."""
    return [attribute_run(setup, request) for setup, request in runs]


def attribute_run(setup: Setup, request: RunRequest) -> RunOutcome:
    """A whole run: all stages inline, then its catalog rows. Failures of the prompt itself
    are recorded in the catalog and returned, not raised."""
    start = time.perf_counter()
    rid = run_id(setup, request)
    try:
        stages = chain_with_repair(setup, request, rid, call_inline)
    except ValueError as error:  # bad prompt or settings: PromptError, TargetError, ...
        message = f"{type(error).__name__}: {error}"
        record_failure_task.fn(setup, request, message)
        return RunOutcome(rid, request.prompt, "failed", False, message)
    record_run_task.fn(setup, request, stages, time.perf_counter() - start)
    cached = all(s.status == "cached" for s in stages)
    return RunOutcome(rid, request.prompt, "ok", cached, stages=stages)
