"""Objects: atomic publish, races, crashes, and damage read as a miss (never as zeros)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from circuitflow.store import ObjectCorrupted, Store, stage_key
from circuitflow.store.fs import default_root
from circuitflow.store.maintenance import gc, verify
from circuitflow.store.tensors import IntegrityError
from tests.store.procs import run_python, spawn_python


def _put(store: Store, name: str, array: np.ndarray, chunks=None, pack_bytes=0) -> str:
    """An object holding `array`; its chunks are files on disk unless `pack_bytes` packs them."""
    key = stage_key("rows", 1, {"name": name})
    with store.writer("rows", key, version=1, params={"name": name}, pack_bytes=pack_bytes) as w:
        w.put_tensor("edges", array, chunks=chunks)
    return key


def test_publish_writes_manifest_with_digests(store: Store) -> None:
    params = {"max_feature_nodes": 100, "batch_size": 8}
    inputs = {"precompute": "ab" * 32}
    key = stage_key("rows", 2, params, inputs)
    with store.writer("rows", key, version=2, params=params, inputs=inputs, attrs={"n": 3}) as w:
        w.put_tensor("edges", np.eye(4, dtype=np.float32))
        w.put_table("order", {"node": [1, 2]})
    assert w.won is True
    path = Path(store.object_path("rows", key))
    assert path.parent.parent.name == "rows" and path.parent.name == key[:2]
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["stage"] == "rows" and manifest["key"] == key and manifest["version"] == 2
    assert manifest["params"] == params and manifest["inputs"] == inputs
    assert manifest["code_version"].startswith("circuitflow")
    assert manifest["created_at"].endswith("+00:00")
    on_disk = {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == on_disk - {"manifest.json"}
    assert "tables/order.parquet" in manifest["files"]
    assert not list((Path(store.root) / "tmp").iterdir())
    assert store.get("rows", key).attrs == {"n": 3}


def test_failed_write_publishes_nothing(store: Store) -> None:
    key = stage_key("rows", 1, {})
    with pytest.raises(RuntimeError), store.writer("rows", key, version=1) as w:
        w.put_tensor("edges", np.ones(3))
        raise RuntimeError("stage failed")
    assert store.get("rows", key) is None
    assert not list((Path(store.root) / "tmp").iterdir())


@pytest.mark.parametrize("kind", ["path", "file-url", "memory"])
def test_same_code_path_for_paths_and_urls(tmp_path: Path, kind: str) -> None:
    root = {
        "path": str(tmp_path / "s"),
        "file-url": f"file://{tmp_path}/s",
        "memory": f"memory://objects-{tmp_path.name}",
    }[kind]
    store = Store(root)
    key = _put(store, "x", np.arange(20.0).reshape(4, 5))
    again = Store(root)  # a second handle finds it
    assert np.array_equal(again.get("rows", key).tensor("edges"), np.arange(20.0).reshape(4, 5))
    assert again.get("rows", key).verify() == []


def test_default_root_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CIRCUITFLOW_STORE", str(tmp_path / "env-store"))
    assert Store().root == str(tmp_path / "env-store")
    monkeypatch.delenv("CIRCUITFLOW_STORE")
    monkeypatch.chdir(tmp_path)
    assert default_root() == str(tmp_path / ".circuitflow" / "store")


def test_second_writer_of_a_key_discards_its_copy(store: Store) -> None:
    key = stage_key("rows", 1, {"race": True})
    first = store.writer("rows", key, version=1)
    second = store.writer("rows", key, version=1)
    first.put_tensor("edges", np.zeros(3))
    second.put_tensor("edges", np.zeros(3))
    first.publish()
    obj = second.publish()
    assert (first.won, second.won) == (True, False)
    assert obj.path == store.object_path("rows", key)
    assert os.listdir(Path(store.object_path("rows", key)).parent) == [key]
    assert not list((Path(store.root) / "tmp").iterdir())


SLOW_WRITER = """
import sys, time
import numpy as np
from circuitflow.store import Store
store, key, delay = Store(sys.argv[1]), sys.argv[2], float(sys.argv[3])
with store.writer("rows", key, version=1, pack_bytes=0) as w:  # files on disk as they come
    for i in range(6):
        w.put_tensor(f"part{i}", np.full((256, 2048), i, dtype=np.float32))  # 2 MB each
        time.sleep(delay)
print("published")
"""


def test_kill_9_mid_write_leaves_no_object_and_a_rerun_publishes(store: Store) -> None:
    key = stage_key("rows", 1, {"crash": True})
    child = spawn_python(SLOW_WRITER, store.root, key, "0.5")
    tmp = Path(store.root) / "tmp"
    deadline = time.monotonic() + 30
    while not list(tmp.glob("obj-*/tensors/part1/c.*")):  # mid-write: some tensors, not all
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "the writer never started"
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL

    assert store.get("rows", key) is None
    assert not Path(store.object_path("rows", key)).exists()
    assert len(list(tmp.iterdir())) == 1  # the dead writer's leftovers, out of sight

    assert "published" in run_python(SLOW_WRITER, store.root, key, "0")
    obj = store.get("rows", key, verify=True)
    assert [float(obj.tensor(f"part{i}")[0, 0]) for i in range(6)] == [0, 1, 2, 3, 4, 5]
    leftovers = gc(store, older_than=0)
    assert [i.kind for i in leftovers.items if i.kind == "tmp"] == ["tmp"]


RACER = """
import sys, time
import numpy as np
from circuitflow.store import Store, stage_key
from tests.store.tables import TABLES
store, me, go = Store(sys.argv[1], tables=TABLES), sys.argv[2], float(sys.argv[3])
while time.time() < go:
    time.sleep(0.001)
won = []
for i in range(4):
    shared = stage_key("rows", 1, {"shared": i})
    with store.writer("rows", shared, version=1) as w:
        w.put_tensor("edges", np.full((512, 512), i, dtype=np.float32))
    won.append(int(w.won))
    own = stage_key("rows", 1, {"own": me, "i": i})
    with store.writer("rows", own, version=1) as w:
        w.put_tensor("edges", np.full((64, 64), i, dtype=np.float32))
    store.catalog.write_run(f"run-{me}-{i}", {
        "stage_events": [{"stage": "rows", "key": shared, "status": "computed"},
                         {"stage": "rows", "key": own, "status": "computed"}],
        "runs": [{"status": "ok"}],
    })
print(" ".join(map(str, won)))
"""


def test_concurrent_processes_publish_one_object_per_key(store: Store) -> None:
    store.catalog.write("runs", "warmup", [{"status": "ok"}])  # creates the directories
    go = time.time() + 3  # all children start together, after their imports
    children = [spawn_python(RACER, store.root, str(n), str(go)) for n in range(3)]
    outputs = [c.communicate(timeout=60) for c in children]
    assert all(c.returncode == 0 for c in children), [err for _, err in outputs]

    winners = np.array([[int(x) for x in out.split()] for out, _ in outputs])
    assert winners.sum(axis=0).tolist() == [1, 1, 1, 1]  # exactly one winner per shared key

    objects = list(store.iter_objects())
    assert len(objects) == 4 + 3 * 4
    assert len({key for _, key, _ in objects}) == len(objects)
    for i in range(4):
        obj = store.get("rows", stage_key("rows", 1, {"shared": i}), verify=True)
        assert float(obj.tensor("edges")[0, 0]) == i
    assert verify(store).ok
    assert not list((Path(store.root) / "tmp").iterdir())
    counts = store.query("SELECT count(*) AS runs, count(DISTINCT run_id) AS ids FROM runs")
    assert counts.to_pylist() == [{"runs": 13, "ids": 13}]
    events = store.query("SELECT count(*) AS n FROM stage_events").to_pylist()
    assert events == [{"n": 24}]


def _chunk_files(store: Store, key: str) -> list[Path]:
    chunks = Path(store.object_path("rows", key)) / "tensors" / "edges"
    return sorted(chunks.glob("c.*"), key=lambda p: [int(i) for i in p.name.split(".")[1:]])


def test_flipped_and_deleted_chunks_are_named_and_read_as_misses(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    data = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    flipped_key = _put(store, "flipped", data, chunks=(16, 64))
    deleted_key = _put(store, "deleted", data, chunks=(16, 64))
    checked_key = _put(store, "checked", data, chunks=(16, 64))
    intact_key = _put(store, "intact", data, chunks=(16, 64))

    for key in (flipped_key, checked_key):
        chunk = _chunk_files(store, key)[1]
        raw = bytearray(chunk.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        chunk.write_bytes(bytes(raw))
    deleted = _chunk_files(store, deleted_key)[2]
    deleted.unlink()

    report = verify(store)
    named = {(p.where.split("/")[-1], p.file) for p in report.problems}
    assert (flipped_key, "tensors/edges/c.1.0") in named
    assert (deleted_key, "tensors/edges/c.2.0") in named
    assert (checked_key, "tensors/edges/c.1.0") in named
    assert len(report.problems) == 3

    # A flipped byte keeps the file size: the object opens, and reading the chunk fails.
    obj = store.get("rows", flipped_key)
    with pytest.raises(ObjectCorrupted, match=r"c\.1\.0.*quarantine.*recomputed"):
        obj.tensor("edges")
    assert store.get("rows", flipped_key) is None
    # A missing file is caught when opening; verify=True catches flipped bytes up front.
    assert store.get("rows", deleted_key) is None
    assert store.get("rows", checked_key, verify=True) is None
    assert "is corrupted" in caplog.text

    quarantined = sorted(
        p.name.split("-")[0] for p in (Path(store.root) / "quarantine" / "rows").iterdir()
    )
    assert quarantined == sorted([flipped_key, deleted_key, checked_key])
    assert np.array_equal(store.get("rows", intact_key).tensor("edges"), data)
    assert verify(store).ok
    # The caller recomputes and republishes under the same key.
    _put(store, "flipped", data, chunks=(16, 64))
    assert np.array_equal(store.get("rows", flipped_key).tensor("edges"), data)


def test_chunk_lost_after_open_raises_instead_of_reading_zeros(store: Store) -> None:
    key = _put(store, "late", np.ones((32, 8), np.float32), chunks=(8, 8))
    obj = store.get("rows", key)
    _chunk_files(store, key)[0].unlink()
    with pytest.raises(ObjectCorrupted, match="file is missing"):
        obj.tensor("edges")


def test_damaged_table_and_manifest_are_misses(store: Store) -> None:
    key = stage_key("rows", 1, {"t": 1})
    with store.writer("rows", key, version=1) as w:
        w.put_table("nodes", {"x": list(range(100))})
    path = Path(store.object_path("rows", key))
    table = path / "tables" / "nodes.parquet"
    raw = bytearray(table.read_bytes())
    raw[10] ^= 1
    table.write_bytes(bytes(raw))
    with pytest.raises(ObjectCorrupted, match="nodes.parquet"):
        store.get("rows", key).table("nodes")

    key2 = _put(store, "no-manifest", np.zeros(3))
    (Path(store.object_path("rows", key2)) / "manifest.json").unlink()
    assert store.get("rows", key2) is None
    assert not Path(store.object_path("rows", key2)).exists()


def test_invalid_names_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="invalid key"):
        store.writer("rows", "../../etc", version=1)
    with pytest.raises(ValueError, match="invalid stage"):
        store.get("ro/ws", "a" * 64)
    key = stage_key("rows", 1, {})
    with store.writer("rows", key, version=1) as w:
        w.put_tensor("a", np.zeros(1))
        with pytest.raises(ValueError, match="already written"):
            w.put_table("a", {"x": [1]})


def test_blobs_round_trip_and_a_changed_blob_is_a_miss(store: Store) -> None:
    with store.writer("export", "ab" * 32, version=1) as writer:
        writer.put_file("graph.json", b'{"nodes": []}')
    obj = store.open("export", "ab" * 32)
    assert obj.blobs == ["graph.json"] and obj.blob("graph.json") == b'{"nodes": []}'
    path = Path(obj.blob_path("graph.json"))
    assert path.read_bytes() == b'{"nodes": []}'
    path.write_bytes(b'{"nodes": [1]}')
    with pytest.raises(ObjectCorrupted, match="graph.json"):
        store.open("export", "ab" * 32, verify=True)
    assert store.get("export", "ab" * 32) is None  # quarantined: a miss from now on


def test_an_object_opens_as_a_lazy_verified_xarray_dataset(store: Store) -> None:
    import xarray

    key = stage_key("rows", 1, {"name": "xr"})
    matrix = np.arange(12, dtype=np.float32).reshape(3, 4)
    with store.writer("rows", key, version=1, params={}, pack_bytes=0) as w:
        w.put_tensor("matrix", matrix, dims=("row", "node"), chunks=(1, 4))
        w.put_tensor("order", np.array([2, 0, 1]), dims=("row",))
    obj = store.open("rows", key)
    plain = xarray.open_zarr(Path(obj.path), group="tensors", consolidated=False)
    assert plain["matrix"].dims == ("row", "node") and plain["order"].dims == ("row",)
    assert plain["matrix"].chunks is not None  # lazy: dask arrays, read on demand
    np.testing.assert_array_equal(plain["matrix"].values, obj.tensor("matrix"))
    ours = obj.dataset()
    np.testing.assert_array_equal(ours["order"].values, obj.tensor("order"))

    chunk = Path(obj.path) / "tensors" / "matrix" / "c.1.0"
    data = bytearray(chunk.read_bytes())
    data[-1] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="do not match"):
        obj.dataset()["matrix"].values  # noqa: B018 (the read is the test)
    with pytest.raises(ObjectCorrupted):
        store.open("rows", key).tensor("matrix")
