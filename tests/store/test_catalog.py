"""Catalog tables: runs recorded in atomic batches, validated, final runs recorded once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from circuitflow.store import CatalogError, Store
from tests.store.tables import TABLES

RUN = "r-0001"


def test_rows_round_trip_with_defaults_and_casts(store: Store) -> None:
    assert store.catalog.write(
        "nodes",
        RUN,
        [
            {"node_id": "0_12_3", "kind": "feature", "layer": 0, "pos": 3, "feature": 12},
            {"node_id": "E_1_2", "kind": "error", "layer": 1, "influence": 0.25, "kept": True},
        ],
    )
    rows = store.catalog.read("nodes", RUN)
    assert rows.schema == TABLES["nodes"].schema
    assert rows.column("run_id").to_pylist() == [RUN, RUN]
    assert rows.column("layer").type == pa.int32()
    assert rows.column("influence").to_pylist() == [None, 0.25]

    store.catalog.write("stage_events", "r-0002", {"stage": ["rows"], "status": ["cached"]})
    created = store.catalog.read("stage_events")["created_at"][0].as_py()
    assert abs((datetime.now(UTC) - created).total_seconds()) < 60


def test_a_batch_is_one_directory_with_a_file_per_table(store: Store) -> None:
    runs = {
        f"r-{i}": {"runs": [{"status": "ok"}], "logits": {"rank": [0, 1], "prob": [0.5, 0.1]}}
        for i in range(5)
    }
    batch = store.catalog.write_batch(runs, final=runs)
    assert sorted(p.name for p in Path(batch.path).iterdir()) == [
        "commit.json", "logits.parquet", "runs.parquet",
    ]  # fmt: skip
    assert store.catalog.read("logits").num_rows == 10
    assert store.catalog.read("logits", "r-3")["rank"].to_pylist() == [0, 1]
    assert not list((Path(store.root) / "tmp").iterdir())


def test_a_final_run_is_recorded_once_and_a_non_final_one_superseded(store: Store) -> None:
    assert store.catalog.write("runs", "failing", [{"status": "failed"}], final=False)
    assert store.catalog.write("runs", "failing", [{"status": "ok"}])
    assert store.catalog.recorded("failing")
    # the earlier, non-final rows are hidden from reads and from SQL
    assert store.catalog.read("runs")["status"].to_pylist() == ["ok"]
    assert store.query("SELECT status FROM runs").to_pylist() == [{"status": "ok"}]
    # a final run is not recorded twice: the second batch leaves it out
    assert not store.catalog.write("runs", "failing", [{"status": "ok", "prompt": "again"}])
    mixed = store.catalog.write_batch(
        {"failing": {"runs": [{"status": "ok"}]}, "new": {"runs": [{"status": "ok"}]}},
        final=["failing", "new"],
    )
    assert mixed.tables == {"runs": {"new": True}}
    counts = store.query("SELECT run_id, count(*) AS n FROM runs GROUP BY ALL ORDER BY 1")
    assert counts.to_pylist() == [{"run_id": "failing", "n": 1}, {"run_id": "new", "n": 1}]


@pytest.mark.parametrize(
    ("table", "rows", "message"),
    [
        ("nodez", {"x": [1]}, "unknown table 'nodez'"),
        ("nodes", {"nodeid": ["a"]}, "unknown column.*nodeid"),
        ("nodes", {"run_id": ["other"]}, "other than"),
        ("nodes", {"kind": ["feature", "bias"]}, r"nodes.kind: invalid value.*bias"),
        ("stage_events", {"status": ["skipped"]}, "status: invalid"),
        ("edges", {"weight": ["heavy"]}, "edges.weight: cannot store as double"),
        ("runs", 42, "cannot read rows"),
    ],
)
def test_bad_rows_are_refused_with_a_clear_message(
    store: Store, table: str, rows: object, message: str
) -> None:
    with pytest.raises(CatalogError, match=message):
        store.catalog.write(table, RUN, rows)


def test_bad_run_ids_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="invalid run_id"):
        store.catalog.write("runs", "../escape", [{}])


def test_a_bad_table_writes_nothing_of_its_batch(store: Store) -> None:
    with pytest.raises(CatalogError):
        store.catalog.write_batch(
            {
                "fine": {"edges": [{"weight": 1.0}], "runs": [{"status": "ok"}]},
                RUN: {"nodes": [{"kind": "bogus"}], "runs": [{"status": "ok"}]},
            }
        )
    assert store.catalog.read("runs").num_rows == 0
    assert store.catalog.read("edges").num_rows == 0
    assert not (Path(store.root) / "tables" / "batches").exists()


def test_catalog_on_a_remote_filesystem(memory_store: Store) -> None:
    assert memory_store.catalog.write("runs", RUN, [{"status": "ok", "n_tokens": 7}])
    assert not memory_store.catalog.write("runs", RUN, [{"status": "ok"}])
    assert memory_store.catalog.read("runs")["n_tokens"].to_pylist() == [7]
    assert memory_store.query("SELECT n_tokens FROM runs").to_pylist() == [{"n_tokens": 7}]


def test_rows_are_kept_per_table_and_run(store: Store) -> None:
    """A later table for a recorded run is added; re-saving a non-final table supersedes only
    that table's rows of that run."""
    store.catalog.write_run("r", {"runs": [{"status": "ok"}], "nodes": {"node_id": ["a"]}})
    assert store.catalog.write("logits", "r", {"rank": [0]}, final=False)
    assert store.catalog.write("logits", "r", {"rank": [0, 1]}, final=False)
    assert store.catalog.read("logits", "r")["rank"].to_pylist() == [0, 1]
    assert store.catalog.read("nodes", "r")["node_id"].to_pylist() == ["a"]
    assert store.query("SELECT count(*) AS n FROM runs").to_pylist() == [{"n": 1}]
    assert not store.catalog.write("nodes", "r", {"node_id": ["b"]})  # final: kept as it was


def test_the_store_knows_no_table_until_one_is_registered(store: Store) -> None:
    bare = Store(store.root)  # the same root, no tables registered
    with pytest.raises(CatalogError, match="unknown table 'nodes'; known tables: none registered"):
        bare.catalog.write("nodes", RUN, {"node_id": ["a"]})
    store.catalog.write("nodes", RUN, {"node_id": ["a", "b"], "influence": [0.5, 0.25]})
    # Written by a registered schema, found on disk and queried by a handle that knows nothing.
    assert bare.catalog.table_names() == ["nodes"]
    assert bare.query("SELECT sum(influence) AS s FROM nodes").to_pylist() == [{"s": 0.75}]
    assert bare.catalog.read("nodes", RUN).num_rows == 2
