"""Analysis in a run: an analysis config's functions attached while the stages that fire their
points compute, and what they return recorded apart from the stage objects.

A run with analysis (`execute_run(..., analysis=config)`, `circuitflow attribute --analysis
FILE`) is the same run as without: same run id, same keys, same stored objects, same catalog
rows. On top of it, for each stage in pipeline order:

- a stage the store does not hold computes with the functions of its points attached (its
  declaration lists the points it fires: `Stage.points`), and is published as usual;
- a stored stage with an enabled point computes again with the functions attached and its
  result is thrown away: a stored stage never runs otherwise, so this is how its points fire,
  and nothing is published twice. Enabling a point costs one execution of its stage;
- a stage without enabled points runs as it would without analysis.

Functions are attached only while a stage that declares their point runs, so each firing
belongs to one stage. `graph_assembled` fires when the influence stage assembles the graph: the
run's graph is forgotten first, in case this process already holds it.

A function that modifies a value in place taints the capture (`attribution.analysis`): the
memory of recent records is dropped (it may hold the modified tensors) and a stage that was to
be published computes again with nothing attached, so a faulty function never reaches the
store. A function that raises is recorded as a failure and the run goes on.

After the run's own catalog entries, the captured values are recorded as the run's latest
analysis: rows of the `analysis` table and one store object (`tasks.analysis_table`). Only
single runs (`execute_run`) take an analysis; when a damaged stored object makes a run's chain
start over, the firings of the first attempt stay in the capture (their `sequence` numbers
tell them apart).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from circuitflow.attribution import analysis
from circuitflow.store import CatalogError
from circuitflow.tasks.analysis_config import AnalysisConfig
from circuitflow.tasks.analysis_table import write_analysis
from circuitflow.tasks.context import RunContext, forget_graph, forget_records, store_for
from circuitflow.tasks.declare import Stage
from circuitflow.tasks.runtime import Setup


class AnalysisSession:
    """One run's analysis: the config's functions, imported, and the capture they fill."""

    def __init__(self, config: AnalysisConfig) -> None:
        self.config = config
        self.attachments = config.attachments()
        self.capture = analysis.Capture()

    def attachments_for(self, stage: Stage) -> list[analysis.Attachment]:
        return [a for a in self.attachments if a.point in stage.points]

    def observes(self, stage: Stage) -> bool:
        return bool(self.attachments_for(stage))


_active: AnalysisSession | None = None  # the run in progress in this process, if analysed


@contextlib.contextmanager
def analysing(config: AnalysisConfig | None) -> Iterator[AnalysisSession | None]:
    """Make `config` the analysis of the run executed inside the block (None: no analysis)."""
    global _active
    if config is None:
        yield None
        return
    session = AnalysisSession(config)
    outer, _active = _active, session
    try:
        yield session
    finally:
        _active = outer


def _compute_attached(session: AnalysisSession, stage: Stage, run: RunContext) -> tuple[Any, bool]:
    """stage.compute(run) with the functions of its points attached -> (record, tainted)."""
    attachments = session.attachments_for(stage)
    if any(a.point == "graph_assembled" for a in attachments):
        forget_graph(run)
    capture = session.capture
    before, capture.tainted = capture.tainted, False
    try:
        with analysis.capture(into=capture), analysis.attached(attachments, stage=stage.name):
            record = stage.compute(run)
    finally:
        tainted, capture.tainted = capture.tainted, before or capture.tainted
    if tainted:
        forget_records()
    return record, tainted


def compute(stage: Stage, run: RunContext) -> Any:
    """The stage's record, computed with its points observed when the run has analysis."""
    session = _active
    if session is None or not session.observes(stage):
        return stage.compute(run)
    record, tainted = _compute_attached(session, stage, run)
    return stage.compute(run) if tainted else record


def replay(stage: Stage, run: RunContext) -> None:
    """Compute a stored stage again, for its enabled points only; the result is dropped."""
    session = _active
    if session is not None and session.observes(stage):
        _compute_attached(session, stage, run)


def record_analysis(
    setup: Setup, pipeline: Sequence[Stage], run_id: str, session: AnalysisSession
) -> dict[str, Any]:
    """Write the run's captured values; return a summary for reports (counts, failures)."""
    capture = session.capture
    report: dict[str, Any] = {
        "config": session.config.source,
        "fired": {
            point: capture.fired(point) for point in session.config.points if capture.fired(point)
        },
        "not_fired": [p for p in session.config.points if not capture.fired(p)],
        "values": len(capture.kept),
        "failures": [str(f) for f in capture.failures],
    }
    store = store_for(setup.store, pipeline)
    try:
        report["analysis_id"] = write_analysis(store, run_id, capture, session.config.describe())
    except CatalogError as error:
        report["failures"].append(f"the analysis could not be recorded: {error}")
    return report
