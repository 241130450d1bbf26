"""The pipeline as Prefect tasks: a stage as a task run, a sweep's batch of runs as a task run.

`execute.py` runs stages and runs as plain Python; this module is what Prefect sees of them:

- `as_task` is the `call` of `execute_run` for single prompts and re-pruning: each stage becomes
  a task run of the current flow, and a stage found in the store ends in a state named `Cached`,
  so the Prefect UI shows which stages computed;
- `attribute_runs_task` is one batch of a sweep (`execute.attribute_runs`) as one task run.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed

from circuitflow.tasks.context import RunContext, RunRequest, StageOutput
from circuitflow.tasks.declare import Stage
from circuitflow.tasks.execute import RunOutcome, attribute_runs, run_stage
from circuitflow.tasks.pipeline import PIPELINE
from circuitflow.tasks.runtime import Setup


@task(name="stage", cache_policy=NO_CACHE)
def stage_task(
    stage: str,
    setup: Setup,
    request: RunRequest,
    outputs: dict[str, StageOutput],
    rid: str,
    pipeline: list[Stage] | None = None,
):
    """Run one stage as a Prefect task; a stored stage ends in the `Cached` state.

    `outputs` (the earlier stages' outputs) is a parameter so that Prefect draws the edges of
    the run's task graph from it.
    """
    pipeline = PIPELINE if pipeline is None else pipeline
    run = RunContext(setup, request, dict(outputs), pipeline, rid)
    declared = next(s for s in pipeline if s.name == stage)
    output = run_stage(declared, run)
    if output.status == "cached":
        return Completed(data=output, name="Cached", message=f"{stage} {output.key[:12]} stored")
    return output


def as_task(stage: Stage, run: RunContext) -> StageOutput:
    """Run `stage` of `run` as a task run of the current flow (an `execute.Call`)."""
    pipeline = None if run.pipeline is PIPELINE else list(run.pipeline)
    named = stage_task.with_options(name=stage.name, task_run_name=stage.name)
    state = named(
        stage.name, run.setup, run.request, dict(run.outputs), run.run_id, pipeline,
        return_state=True,
    )  # fmt: skip
    return state.result()


@task(name="attribute-runs", cache_policy=NO_CACHE)
def attribute_runs_task(runs: list[tuple[Setup, RunRequest]]) -> list[RunOutcome]:
    """A sweep's batch: `execute.attribute_runs` as one task run."""
    return attribute_runs(runs)
