"""Fixtures of the command-line tests."""

import pytest
from click.testing import CliRunner

from circuitflow.flows.cli import main


@pytest.fixture
def invoke(prefect_api, toy_model_dir, tmp_path):
    """Run a `circuitflow` command in-process on the toy model, with a fresh store."""
    runner = CliRunner()
    store = str(tmp_path / "store")

    def run(*args, model=True):
        extra = ["--model", str(toy_model_dir)] if model else []
        return runner.invoke(main, [*args, *extra, "--store", store], catch_exceptions=False)

    run.store = store
    return run
