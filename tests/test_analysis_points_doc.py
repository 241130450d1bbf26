"""docs/analysis-points.md is current, and every point is fired by some stage of the pipeline."""

import subprocess
import sys
from pathlib import Path

from circuitflow.attribution.analysis import POINTS
from circuitflow.tasks import PIPELINE

REPO = Path(__file__).resolve().parents[1]


def test_the_committed_table_of_points_is_current():
    done = subprocess.run(
        [sys.executable, "scripts/analysis_points.py", "--check"],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_point_belongs_to_a_stage():
    fired = {point for stage in PIPELINE for point in stage.points}
    assert fired == set(POINTS)
