"""Shared pytest fixtures: one isolated, quiet Prefect test server for the whole session."""

import os
import tempfile

import pytest

# Quiet, isolated Prefect: set before prefect is imported anywhere in the session.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="prefect-home-"))
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect API for the session (about 6.5 s to start; start it once)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness():
        yield
