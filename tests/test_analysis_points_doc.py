"""docs/analysis-points.md is current, and every point is fired by some stage of the pipeline."""

from circuitflow.attribution.analysis import POINTS
from circuitflow.tasks import PIPELINE
from scripts.analysis_points import OUT, render


def test_the_committed_table_of_points_is_current():
    assert OUT.read_text() == render(), "stale: run python scripts/analysis_points.py"


def test_every_point_belongs_to_a_stage():
    fired = {point for stage in PIPELINE for point in stage.points}
    assert fired == set(POINTS)
