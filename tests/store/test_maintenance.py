"""Maintenance: du, gc (dry run first), verify of tables, compact (atomic, idempotent)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from circuitflow.store import Store, stage_key
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
    target = next((Path(store.root) / "tables" / "batches").rglob("nodes.parquet"))
    target.write_bytes(b"not parquet")
    report = verify(store)
    assert [p.where for p in report.problems] == [str(target.relative_to(store.root))]


def _fill(store: Store, n: int) -> None:
    for i in range(n):
        _run(store, f"run-{i:03d}", {}, f"2025-01-01T00:{i % 60:02d}:00Z")


def _batches(store: Store) -> list[Path]:
    return sorted((Path(store.root) / "tables" / "batches").iterdir())


SUMMARY = "SELECT count(*) AS n, count(DISTINCT run_id) AS runs, sum(influence) AS s FROM nodes"


def test_compact_merges_small_batches_and_keeps_every_row_once(store: Store) -> None:
    _fill(store, 40)
    store.catalog.write("runs", "retried", [{"status": "failed"}], final=False)
    store.catalog.write("runs", "retried", [{"status": "ok"}])
    before = store.query(SUMMARY).to_pylist()
    runs_before = store.query("SELECT run_id, status FROM runs ORDER BY 1").to_pylist()
    assert len(_batches(store)) == 42

    (done,) = compact(store)
    assert done.batches_in == 42 and done.runs == 41  # the superseded attempt is dropped
    assert len(_batches(store)) == 1
    assert store.query(SUMMARY).to_pylist() == before
    assert store.query("SELECT run_id, status FROM runs ORDER BY 1").to_pylist() == runs_before
    assert compact(store) == []  # nothing left to merge
    assert store.catalog.read("nodes", "run-007")["node_id"].to_pylist() == ["a", "b"]
    assert verify(store).ok

    assert not store.catalog.write("nodes", "run-007", {"node_id": ["z"]})  # recorded: kept
    _run(store, "run-new", {}, "2025-02-01T00:00:00Z")  # new runs are still welcome
    assert store.query("SELECT count(*) AS n FROM nodes").to_pylist() == [{"n": 82}]


def test_interrupted_compaction_shows_rows_once_and_is_finished_later(store: Store) -> None:
    _fill(store, 12)
    before = store.query(SUMMARY).to_pylist()
    backup = Path(store.root).parent / "backup"
    shutil.copytree(Path(store.root) / "tables" / "batches", backup)
    compact(store)
    compacted = _batches(store)
    # Simulate a crash between publishing the merged batch and deleting its sources.
    for source in backup.iterdir():
        shutil.copytree(source, Path(store.root) / "tables" / "batches" / source.name)
    assert len(_batches(store)) == 13
    assert store.query(SUMMARY).to_pylist() == before
    assert store.catalog.read("nodes").num_rows == 24

    assert compact(store) == []  # finishes the job: the absorbed batches go
    assert _batches(store) == compacted
    assert store.query(SUMMARY).to_pylist() == before


def _kept_object(store: Store, stage: str, name: str, size: int, retention: str) -> str:
    key = stage_key(stage, 1, {"name": name})
    with store.writer(stage, key, version=1, attrs={"retention": retention}) as w:
        w.put_tensor("x", np.random.default_rng(0).standard_normal(size).astype(np.float32))
    return key


def test_max_size_evicts_edge_matrices_first_then_the_least_recently_used(store: Store) -> None:
    import time

    big = [_kept_object(store, "rows", f"r{i}", 50_000, "recompute-first") for i in range(3)]
    small = [_kept_object(store, "precompute", f"p{i}", 10_000, "recompute") for i in range(2)]
    graph = _kept_object(store, "prune", "g", 50_000, "keep")
    _run(
        store,
        "r1",
        {"rows": big[0], "precompute": small[0], "prune": graph},
        "2025-01-01T00:00:00Z",
    )
    size = {k: sum(f["size"] for f in store.open(s, k).files.values())
            for s, ks in (("rows", big), ("precompute", small)) for k in ks}  # fmt: skip
    time.sleep(0.05)
    store.open("rows", big[0])  # used just now: the last edge matrix to go
    store.open("precompute", small[1])
    total = sum(u.bytes for u in du(store))

    plan = gc(store, max_size=total - size[big[1]] - size[big[2]])  # two edge matrices must go
    evicted = [i.path.split("/")[-1] for i in plan.items if i.kind == "evict"]
    assert sorted(evicted) == sorted(big[1:])  # big[0] was used last
    assert not plan.applied and store.get("rows", big[1]) is not None

    every_matrix = sum(size[k] for k in big)
    plan = gc(store, max_size=total - every_matrix - 1, apply=True)  # and one precompute
    evicted = [i.path.split("/")[-1] for i in plan.items if i.kind == "evict"]
    assert sorted(evicted[:3]) == sorted(big) and evicted[3:] == [small[0]]
    assert all(store.get("rows", k) is None for k in big)
    assert store.get("precompute", small[1]) is not None
    assert store.get("prune", graph) is not None  # pruned graphs are never evicted
    assert store.catalog.read("runs", "r1").num_rows == 1  # neither is the catalog
    gc(store, max_size=0, apply=True)  # everything recomputable goes; the rest stays
    assert store.get("precompute", small[1]) is None
    assert store.get("prune", graph) is not None
