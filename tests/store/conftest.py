"""Fixtures for the store tests: a fresh store per test, local or in memory."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from circuitflow.store import Store
from tests.store.tables import TABLES


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store", tables=TABLES)


@pytest.fixture
def memory_store() -> Store:
    return Store(f"memory://test-{uuid.uuid4().hex}", tables=TABLES)
