"""Maintenance: du, gc (dry run first), verify of tables, compact (atomic, idempotent)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from circuitflow.store import CatalogError, Store, stage_key
from circuitflow.store.maintenance import compact, du, gc, verify


def _object(store: Store, stage: str, name: str, size: int = 1000) -> str:
    key = stage_key(stage, 1, {"name": name})
    with store.writer(stage, key, version=1) as w:
        w.put_tensor("x", np.zeros(size, np.float32))
    return key


def _run(store: Store, run_id: str, keys: dict[str, str], created: str) -> None:
    events = [{"stage": s, "key": k, "status": "computed"} for s, k in keys.items()]
    store.catalog.write_run(
        run_id,
        {
            "stage_events": events,
            "nodes": {"node_id": ["a", "b"], "influence": [0.5, 0.25]},
            "runs": [{"status": "ok", "created_at": created, "prompt": run_id}],
        },
    )


def test_du_sizes_by_stage(store: Store) -> None:
    _object(store, "rows", "a", size=100_000)
    _object(store, "rows", "b")
    _object(store, "prune", "c")
    _run(store, "r1", {}, "2025-01-01T00:00:00Z")
    usage = {(u.area, u.name): u for u in du(store)}
    assert usage["objects", "rows"].count == 2
    assert usage["objects", "prune"].count == 1
    assert usage["objects", "rows"].bytes > usage["objects", "prune"].bytes > 0
    assert usage["tables", "nodes"].count == 1


def test_gc_removes_only_unreferenced_old_objects_and_is_a_dry_run_by_default(
    store: Store,
) -> None:
    kept = _object(store, "rows", "kept")
    dropped = _object(store, "rows", "dropped")
    _run(store, "r1", {"rows": kept}, "2025-01-01T00:00:00Z")
    (Path(store.root) / "tmp" / "obj-rows-dead").mkdir(parents=True)

    assert gc(store).items == []  # everything is younger than the grace period
    plan = gc(store, older_than=0)
    assert not plan.applied
    assert {(i.kind, i.path.split("/")[-1]) for i in plan.items} == {
        ("object", dropped),
        ("tmp", "obj-rows-dead"),
    }
    assert plan.bytes > 0
    assert store.get("rows", dropped) is not None  # dry run: nothing deleted

    done = gc(store, older_than=0, apply=True)
    assert done.applied and len(done.items) == 2
    assert store.get("rows", dropped) is None
    assert store.get("rows", kept) is not None
    assert gc(store, older_than=0).items == []


def test_verify_names_unreadable_table_files(store: Store) -> None:
    _run(store, "r1", {}, "2025-01-01T00:00:00Z")
    target = next((Path(store.root) / "tables" / "nodes").rglob("r1.parquet"))
    target.write_bytes(b"not parquet")
    report = verify(store)
    assert [p.where for p in report.problems] == [str(target.relative_to(store.root))]


def _fill(store: Store, n: int) -> None:
    for i in range(n):
        _run(store, f"run-{i:03d}", {}, f"2025-01-01T00:{i % 60:02d}:00Z")


def _table_files(store: Store, table: str) -> list[Path]:
    return sorted((Path(store.root) / "tables" / table).rglob("*.parquet"))


SUMMARY = "SELECT count(*) AS n, count(DISTINCT run_id) AS runs, sum(influence) AS s FROM nodes"


def test_compact_merges_small_files_and_keeps_every_row_once(store: Store) -> None:
    _fill(store, 40)
    before = store.query(SUMMARY).to_pylist()
    assert len(_table_files(store, "nodes")) == 40

    done = compact(store)
    after_files = _table_files(store, "nodes")
    shards = [f.parent for f in after_files]
    assert len(set(shards)) == len(shards) <= 16  # one file per shard (a lone file stays as is)
    merged = sum(c.files_in for c in done if c.table == "nodes")
    assert merged + sum(not f.name.startswith("compact-") for f in after_files) == 40
    assert store.query(SUMMARY).to_pylist() == before
    assert compact(store) == []  # nothing left to merge
    assert store.catalog.read("nodes", "run-007")["node_id"].to_pylist() == ["a", "b"]
    assert verify(store).ok

    with pytest.raises(CatalogError, match="immutable once compacted"):
        store.catalog.write("nodes", "run-007", {"node_id": ["z"]}, replace=True)
    _run(store, "run-new", {}, "2025-02-01T00:00:00Z")  # new runs are still welcome
    assert store.query("SELECT count(*) AS n FROM nodes").to_pylist() == [{"n": 82}]


def test_interrupted_compaction_shows_rows_once_and_is_finished_later(store: Store) -> None:
    _fill(store, 12)
    before = store.query(SUMMARY).to_pylist()
    backup = Path(store.root).parent / "backup"
    shutil.copytree(Path(store.root) / "tables" / "nodes", backup)
    compact(store, ["nodes"])
    compacted = _table_files(store, "nodes")
    # Simulate a crash between publishing the merged files and deleting their sources.
    for source in backup.rglob("*.parquet"):
        dest = Path(store.root) / "tables" / "nodes" / source.relative_to(backup)
        shutil.copy(source, dest)
    assert len(_table_files(store, "nodes")) > 12
    assert store.query(SUMMARY).to_pylist() == before
    assert store.catalog.read("nodes").num_rows == 24

    compact(store, ["nodes"])  # finishes the job: the superseded files go
    assert _table_files(store, "nodes") == compacted
    assert store.query(SUMMARY).to_pylist() == before
