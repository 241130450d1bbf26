"""Catalog tables: one atomic Parquet file per run per table, validated against the schema."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from circuitflow.store import CatalogError, Store
from circuitflow.store.catalog import shard_of
from tests.store.tables import TABLES

RUN = "r-0001"


def test_rows_round_trip_with_defaults_and_casts(store: Store) -> None:
    path = store.catalog.write(
        "nodes",
        RUN,
        [
            {"node_id": "0_12_3", "kind": "feature", "layer": 0, "pos": 3, "feature": 12},
            {"node_id": "E_1_2", "kind": "error", "layer": 1, "influence": 0.25, "kept": True},
        ],
    )
    assert path.endswith(f"tables/nodes/shard={shard_of(RUN)}/{RUN}.parquet")
    rows = store.catalog.read("nodes", RUN)
    assert rows.schema == TABLES["nodes"].schema
    assert rows.column("run_id").to_pylist() == [RUN, RUN]
    assert rows.column("layer").type == pa.int32()
    assert rows.column("influence").to_pylist() == [None, 0.25]

    store.catalog.write("stage_events", RUN, {"stage": ["rows"], "status": ["cached"]})
    created = store.catalog.read("stage_events")["created_at"][0].as_py()
    assert abs((datetime.now(UTC) - created).total_seconds()) < 60


def test_one_file_per_run_and_table(store: Store) -> None:
    store.catalog.write("logits", RUN, {"rank": [0], "prob": [0.9]})
    with pytest.raises(CatalogError, match="already has rows.*replace=True"):
        store.catalog.write("logits", RUN, {"rank": [0], "prob": [0.8]})
    store.catalog.write("logits", RUN, {"rank": [0, 1], "prob": [0.8, 0.1]}, replace=True)
    assert store.catalog.read("logits", RUN)["prob"].to_pylist() == [0.8, 0.1]
    files = list((Path(store.root) / "tables" / "logits").rglob("*.parquet"))
    assert [f.name for f in files] == [f"{RUN}.parquet"]
    assert not list((Path(store.root) / "tmp").iterdir())


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


def test_write_run_writes_tables_in_order_and_stops_at_a_bad_one(store: Store) -> None:
    with pytest.raises(CatalogError):
        store.catalog.write_run(
            RUN,
            {"nodes": [{"kind": "bogus"}], "edges": [{"weight": 1.0}], "runs": [{"status": "ok"}]},
        )
    assert store.catalog.read("runs").num_rows == 0  # no runs row: the run is not complete
    assert store.catalog.read("edges").num_rows == 0
    store.catalog.write_run("r-0002", {"edges": [{"weight": 1.0}], "runs": [{"status": "ok"}]})
    assert store.catalog.read("runs")["run_id"].to_pylist() == ["r-0002"]


def test_catalog_on_a_remote_filesystem(memory_store: Store) -> None:
    memory_store.catalog.write("runs", RUN, [{"status": "ok", "n_tokens": 7}])
    with pytest.raises(CatalogError, match="already has rows"):
        memory_store.catalog.write("runs", RUN, [{"status": "ok"}])
    assert memory_store.catalog.read("runs")["n_tokens"].to_pylist() == [7]
    assert memory_store.query("SELECT n_tokens FROM runs").to_pylist() == [{"n_tokens": 7}]


def test_the_store_knows_no_table_until_one_is_registered(store: Store) -> None:
    bare = Store(store.root)  # the same root, no tables registered
    with pytest.raises(CatalogError, match="unknown table 'nodes'; known tables: none registered"):
        bare.catalog.write("nodes", RUN, {"node_id": ["a"]})
    store.catalog.write("nodes", RUN, {"node_id": ["a", "b"], "influence": [0.5, 0.25]})
    # Written by a registered schema, found on disk and queried by a handle that knows nothing.
    assert bare.catalog.table_names() == ["nodes"]
    assert bare.query("SELECT sum(influence) AS s FROM nodes").to_pylist() == [{"s": 0.75}]
    assert bare.catalog.read("nodes", RUN).num_rows == 2
