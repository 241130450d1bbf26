"""The `attribute_prompt` flow: one prompt through every stage, then its rows in the catalog.

Each stage of `tasks.pipeline.PIPELINE` is a task of this flow and returns at once when its
output is already stored (Prefect shows it as `Cached`), so a rerun costs nothing and a new
threshold recomputes only prune and export. The flow returns the run's `RunOutcome`;
`flows.report` turns it into what people see.
"""

from __future__ import annotations

from prefect import flow

from circuitflow.tasks import RunOutcome, RunRequest, Setup, execute_run
from circuitflow.tasks.analysis_config import AnalysisConfig
from circuitflow.tasks.prefect_tasks import as_task


@flow(name="attribute-prompt", log_prints=False)
def attribute_prompt(
    setup: Setup, request: RunRequest, analysis: AnalysisConfig | None = None
) -> RunOutcome:
    """Attribute one prompt and record it in the catalog (with `analysis`: its functions observe
    the stages that fire their points; see `tasks.analysis`)."""
    return execute_run(setup, request, call=as_task, analysis_config=analysis)
