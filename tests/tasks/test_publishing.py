"""Publishing on a background thread inside a sweep's batch: same store, same catalog, keys
locked until published, errors not lost."""

import fcntl
import os
import threading
import time

import pytest
import torch

from circuitflow.attribution import RunParams
from circuitflow.store import StoreError
from circuitflow.store.objects import ObjectWriter
from circuitflow.tasks import PIPELINE, RunRequest, Setup
from circuitflow.tasks.context import RunContext, forget_records
from circuitflow.tasks.execute import attribute_runs, execute_run, run_stage
from circuitflow.tasks.publishing import Publisher, publishing
from circuitflow.tasks.recorded import open_run


def test_jobs_run_in_order_on_one_other_thread_and_errors_surface_at_drain() -> None:
    publisher = Publisher(max_pending=100)
    release = threading.Event()
    ran: list[tuple[int, str]] = []

    def job(i: int, fail: bool = False):
        def run() -> None:
            release.wait(5)
            ran.append((i, threading.current_thread().name))
            if fail:
                raise OSError(f"job {i} failed")

        return run

    for i in range(4):
        publisher.submit(job(i, fail=i == 1), ("root", "stage", str(i)))
    assert ran == []  # queued behind the first, which waits
    release.set()
    publisher.settle(("root", "stage", "0"))
    assert ran[0][0] == 0
    with pytest.raises(OSError, match="job 1 failed"):
        publisher.settle(("root", "stage", "1"))
    with pytest.raises(OSError, match="job 1 failed"):
        publisher.drain()  # the first error, after every job ran
    assert [i for i, _ in ran] == [0, 1, 2, 3]
    assert {name for _, name in ran} != {threading.current_thread().name}
    assert len({name for _, name in ran}) == 1
    publisher.close()


def test_a_full_queue_makes_the_caller_wait() -> None:
    publisher = Publisher(max_pending=2)
    start = time.perf_counter()
    for _ in range(4):
        publisher.submit(lambda: time.sleep(0.2))
    waited = time.perf_counter() - start
    assert waited >= 0.35  # two jobs had to finish before the fourth was queued
    publisher.drain()
    publisher.close()


@pytest.fixture
def setup(toy_model_dir, tmp_path):
    return Setup.resolve(str(toy_model_dir), "plt", str(tmp_path / "store"))


def _runs(setup: Setup) -> list[tuple[Setup, RunRequest]]:
    """Two runs of one prompt (two node thresholds: precompute and rows shared) and another."""
    return [
        (setup, RunRequest("w1 w2 w3", RunParams(node_threshold=0.8))),
        (setup, RunRequest("w1 w2 w3", RunParams(node_threshold=0.5))),
        (setup, RunRequest("w4 w5", RunParams(node_threshold=0.8))),
    ]


def test_a_batch_published_in_the_background_equals_one_published_inline(setup, tmp_path):
    background = attribute_runs(_runs(setup))
    assert [o.status for o in background] == ["ok"] * 3
    shared = {s.stage: s.status for s in background[1].stages}
    assert shared["precompute"] == shared["rows"] == "cached"  # waited for, not recomputed
    assert shared["prune"] == "computed"

    inline_setup = Setup.resolve(setup.model, "plt", str(tmp_path / "inline"))
    forget_records()
    inline = [execute_run(s, r) for s, r in _runs(inline_setup)]
    for ours, theirs in zip(background, inline, strict=True):
        assert [(s.stage, s.key, s.status) for s in ours.stages] == [
            (s.stage, s.key, s.status) for s in theirs.stages
        ]
        mine, other = (
            open_run(setup.store, ours.run_id),
            open_run(inline_setup.store, theirs.run_id),
        )
        for stage in ("precompute", "rows", "prune"):
            assert not mine.object(stage).verify()  # every file there, every digest right
            a, b = mine.object(stage), other.object(stage)
            for name in a.tensors:
                assert torch.equal(a.torch(name), b.torch(name)), (stage, name)
    for table in ("runs", "nodes", "edges", "stage_events"):
        counts = [
            s.query(f"SELECT count(*) AS n FROM {table}").to_pylist()
            for s in (open_run(setup.store, background[0].run_id).store,
                      open_run(inline_setup.store, inline[0].run_id).store)
        ]  # fmt: skip
        assert counts[0] == counts[1] and counts[0][0]["n"] > 0, table


def test_the_key_stays_locked_until_its_object_is_published(setup, monkeypatch):
    """Another process must not compute a key this one computed but has not yet published."""
    release, writing = threading.Event(), threading.Event()
    original = ObjectWriter.publish

    def slow_publish(self):
        writing.set()
        release.wait(10)
        return original(self)

    monkeypatch.setattr(ObjectWriter, "publish", slow_publish)
    run = RunContext(setup, RunRequest("w1 w2"), {}, PIPELINE)
    with publishing():
        output = run_stage(PIPELINE[0], run)
        assert writing.wait(10)
        lock = os.path.join(setup.store, "tmp", "locks", f"{output.key[:2]}.lock")
        fd = os.open(lock, os.O_RDWR)  # another open file: as another process would hold it
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            assert run.store.get("tokenize", output.key) is None  # not published yet
            release.set()
        finally:
            release.set()
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released once published
    finally:
        os.close(fd)
    assert run.store.get("tokenize", output.key) is not None


def test_a_failed_background_publish_fails_the_batch_and_records_nothing(setup, monkeypatch):
    original = ObjectWriter.publish

    def full_disk(self):
        if self.stage == "rows":
            self.discard()
            raise StoreError("cannot write object rows: no space left on device")
        return original(self)

    monkeypatch.setattr(ObjectWriter, "publish", full_disk)
    with pytest.raises(StoreError, match="no space left"):
        attribute_runs(_runs(setup))
    store = RunContext(setup, RunRequest("w1 w2 w3"), {}, PIPELINE).store
    assert store.query("SELECT count(*) AS n FROM runs").to_pylist() == [{"n": 0}]
    stages = {stage for stage, _, _ in store.iter_objects()}
    assert "rows" not in stages and "precompute" in stages  # what was published stays


def test_an_inner_block_shares_the_outer_thread_and_only_the_outer_waits() -> None:
    release = threading.Event()
    landed: list[str] = []
    with publishing() as outer:
        with publishing() as inner:
            assert inner is outer
            inner.submit(lambda: (release.wait(5), landed.append("object")))
        assert landed == []  # the inner block's end did not wait for its job
        release.set()
    assert landed == ["object"]  # the outer one's did
