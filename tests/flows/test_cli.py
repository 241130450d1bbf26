"""The `circuitflow query` and `circuitflow store ...` commands, over the pipeline's tables."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from circuitflow.flows.cli import main, parse_duration
from circuitflow.store import Store, stage_key
from circuitflow.tasks import PIPELINE, catalog_tables


@pytest.fixture
def filled(tmp_path: Path) -> Store:
    store = Store(tmp_path / "store", tables=catalog_tables(PIPELINE))
    key = stage_key("rows", 1, {})
    with store.writer("rows", key, version=1, pack_bytes=0) as w:  # chunk files
        w.put_tensor("edges", np.ones((8, 8), np.float32), chunks=(4, 8))
    for i in range(3):
        store.catalog.write_run(
            f"run-{i}",
            {
                "nodes": {"node_id": [f"n{j}" for j in range(40)], "influence": [0.5] * 40},
                "stage_events": [{"stage": "rows", "key": key, "status": "cached"}],
                "runs": [{"status": "ok", "prompt": f"The capital of state {i}"}],
            },
        )
    return store


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_query_formats(filled: Store) -> None:
    sql = "SELECT run_id, count(*) AS n FROM nodes GROUP BY run_id ORDER BY run_id"
    code, out = invoke("query", sql, "--store", filled.root, "--format", "json")
    assert code == 0
    assert json.loads(out) == [{"run_id": f"run-{i}", "n": 40} for i in range(3)]

    code, out = invoke("query", sql, "--store", filled.root, "--format", "csv")
    assert list(csv.DictReader(io.StringIO(out))) == [
        {"run_id": f"run-{i}", "n": "40"} for i in range(3)
    ]

    code, out = invoke("query", sql, "--store", filled.root)
    assert code == 0 and "run-2" in out and "3 rows" in out


def test_query_table_truncates_with_a_count(filled: Store) -> None:
    code, out = invoke("query", "SELECT * FROM nodes", "--store", filled.root, "--limit", "5")
    assert code == 0
    assert "... 115 more rows (120 in all)" in out


def test_query_store_from_environment_and_errors(
    filled: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIRCUITFLOW_STORE", filled.root)
    code, out = invoke("query", "SELECT count(*) AS n FROM runs", "--format", "json")
    assert json.loads(out) == [{"n": 3}]
    code, out = invoke("query", "COPY nodes TO 'x.csv'")
    assert code == 1 and "read-only" in out
    code, out = invoke("store", "ls", "--store", filled.root + "-typo")
    assert code == 1 and "no store at" in out


def test_store_commands(filled: Store) -> None:
    code, out = invoke("store", "ls", "--store", filled.root)
    assert code == 0 and "run-0" in out and "The capital of state" in out

    code, out = invoke("store", "du", "--store", filled.root)
    assert code == 0 and "rows" in out and "nodes" in out and "total" in out

    code, out = invoke("store", "verify", "--store", filled.root)
    assert code == 0 and "all intact" in out

    code, out = invoke("store", "gc", "--store", filled.root, "--older-than", "0")
    assert code == 0 and "would remove 0 entries" in out

    code, out = invoke("store", "compact", "--store", filled.root)
    assert code == 0 and "compacted" in out


def test_store_verify_reports_damage_and_fails(filled: Store) -> None:
    chunk = next(p for p in (Path(filled.root) / "objects").rglob("c.1.0"))
    chunk.write_bytes(b"x" + chunk.read_bytes()[1:])
    code, out = invoke("store", "verify", "--store", filled.root)
    assert code == 1 and "tensors/edges/c.1.0" in out and "1 problem" in out
    code, out = invoke("store", "verify", "--store", filled.root, "--quarantine")
    assert code == 1 and "moved to quarantine/rows/" in out
    code, out = invoke("store", "gc", "--store", filled.root, "--older-than", "0", "--apply")
    assert code == 0 and "removed 1 entries" in out


def test_parse_duration() -> None:
    assert [parse_duration(t) for t in ("90", "30s", "15m", "2h", "7d")] == [
        90,
        30,
        900,
        7200,
        604800,
    ]


def test_the_command_line_starts_without_the_store_s_heavy_imports() -> None:
    # A one-worker sweep starts its compute process from the command: everything the command
    # line imports before that delays the first run (Zarr, PyArrow's dataset layer, DuckDB took
    # 0.9 s of it). The store's names load when a command first uses them.
    code = (
        "import sys, circuitflow.flows.cli; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'zarr', 'duckdb', 'torch'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    import circuitflow.store as store

    assert store.Store.__module__ == "circuitflow.store.store"  # loaded on first use
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        store.Nothing  # noqa: B018
