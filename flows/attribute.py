"""The `attribute_prompt` flow: one prompt through every stage, then its rows in the catalog.

    tokenize -> precompute -> targets -> rows -> influence -> prune -> export -> record-run

Each task returns at once when its output is already stored, so a rerun costs nothing and a new
threshold recomputes only prune and export. The flow returns a `RunSummary` for people and
`--json`; the numbers in it are read back from the stored objects.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from prefect import flow

from attribution import PromptError
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


@dataclass
class RunSummary:
    run_id: str
    status: str
    stages: list[StageOutput]
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def stage_chain(setup: Setup, request: RunRequest, slug: str, call=None) -> list:
    """Every stage of one run, in order. `call(task, *args, **kwargs)` runs a task: directly in
    this flow by default, or `lambda t, *a, **k: t.submit(*a, **k)` to hand them to a task
    runner (the outputs are then futures, and dependencies follow from the arguments)."""
    call = call or _call_here
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


def _call_here(task, *args, **kwargs):
    """Run a task in this flow and return its output (a cached stage ends in a `Cached` state
    that carries the output, so ask for the state and read its result)."""
    return task(*args, return_state=True, **kwargs).result()


def chain_with_repair(setup: Setup, request: RunRequest, rid: str) -> list[StageOutput]:
    """The stage chain, run again once if a stored input turned out damaged.

    A cache check looks at sizes, not contents; contents are verified as they are read. A stage
    that reads a damaged input gets `ObjectMissing` (the store has quarantined the object), and
    the second pass recomputes it like any miss.
    """
    try:
        return stage_chain(setup, request, slug=rid)
    except ObjectMissing:
        return stage_chain(setup, request, slug=rid)


@flow(name="attribute-prompt", log_prints=False)
def attribute_prompt(setup: Setup, request: RunRequest) -> RunSummary:
    """Attribute one prompt and record it in the catalog."""
    start = time.perf_counter()
    rid = run_id(setup, request)
    try:
        stages = chain_with_repair(setup, request, rid)
    except (PromptError, ValueError) as error:
        record_failure_task(setup, request, str(error))
        return RunSummary(run_id=rid, status="failed", stages=[], error=str(error))
    record_run_task(setup, request, stages, time.perf_counter() - start)
    return RunSummary(run_id=rid, status="ok", stages=stages)
