"""A copy of the seed run analysed with the influence series kept (the `trace` function at
`influence_iteration`), shared by the viewer tests that only read it."""

import shutil

import pytest


@pytest.fixture(scope="session")
def analysed_seed(_seed_store, tmp_path_factory):
    """(store root, run id) of the seed run, with an analysis that kept every term."""
    from circuitflow.tasks import RunRequest, Setup, execute_run
    from circuitflow.tasks.analysis_config import parse_analysis
    from circuitflow.tasks.pipeline import PIPELINE

    source, rid = _seed_store
    root = tmp_path_factory.mktemp("analysed") / "store"
    shutil.copytree(source, root)
    config = parse_analysis(
        {"points": {"influence_iteration": {"function": "trace", "options": {"values": ["term"]}}}},
        fired={point for stage in PIPELINE for point in stage.points},
    )
    outcome = execute_run(
        Setup.resolve(None, "plt", str(root)), RunRequest(SEED), analysis_config=config
    )
    assert outcome.status == "ok" and outcome.run_id == rid, outcome.error
    assert outcome.analysis["failures"] == []
    return str(root), rid


SEED = "The capital of the state containing Dallas is"
