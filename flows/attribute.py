"""The `attribute_prompt` flow: one prompt through every stage, then its rows in the catalog.

    tokenize -> precompute -> targets -> rows -> influence -> prune -> export -> record-run

Each stage is a task of this flow and returns at once when its output is already stored
(Prefect shows it as `Cached`), so a rerun costs nothing and a new threshold recomputes only
prune and export. The flow returns a `RunSummary`; `flows.report` turns it into what people see.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from prefect import flow

from tasks.chain import chain_with_repair
from tasks.runs import RunRequest, record_failure_task, record_run_task, run_id
from tasks.runtime import Setup
from tasks.stages import StageOutput


@dataclass
class RunSummary:
    run_id: str
    status: str
    stages: list[StageOutput]
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@flow(name="attribute-prompt", log_prints=False)
def attribute_prompt(setup: Setup, request: RunRequest) -> RunSummary:
    """Attribute one prompt and record it in the catalog."""
    start = time.perf_counter()
    rid = run_id(setup, request)
    try:
        stages = chain_with_repair(setup, request, rid)
    except ValueError as error:  # bad prompt or settings: PromptError, TargetError, ...
        record_failure_task(setup, request, str(error))
        return RunSummary(run_id=rid, status="failed", stages=[], error=str(error))
    record_run_task(setup, request, stages, time.perf_counter() - start)
    return RunSummary(run_id=rid, status="ok", stages=stages)
