"""kill -9 of a whole sweep at random points: the rerun finishes, the store verifies clean, and
no object that was published before the kill is computed again."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from tests.faults.checks import PROMPTS, assert_sound, computed_twice, start_sweep


def _published(root: str) -> dict[str, int]:
    """Every published object directory (one holding a manifest) and its inode: a recomputed
    and republished object would be a new directory."""
    found = {}
    for manifest in Path(root, "objects").glob("*/*/*/manifest.json"):
        found[str(manifest.parent)] = manifest.parent.stat().st_ino
    return found


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_killed_sweep_resumes_without_recomputing(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    root = str(tmp_path / "store")
    prompts = PROMPTS[:4]
    sweep = start_sweep(root, prompts)
    # Wait until the first stage is on disk (imports and model load vary with machine load),
    # then kill at a random moment inside the runs.
    deadline = time.monotonic() + 120
    while not Path(root, "objects").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(rng.uniform(0.0, 3.0))
    os.kill(sweep.pid, signal.SIGKILL)
    sweep.wait()

    before = _published(root)
    rerun = start_sweep(root, prompts)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err

    store = assert_sound(root, prompts)
    after = _published(root)
    assert all(after.get(path) == inode for path, inode in before.items()), "republished"
    assert computed_twice(store) == []
    keys_before = {Path(p).name for p in before}
    # Runs recorded before the kill list their own computations; the rerun must not list any
    # key that was already published when it started.
    recorded_before = {line.split()[1] for line in sweep.stdout.read().splitlines()}
    rerun_events = store.query(
        "SELECT run_id, key, status FROM stage_events WHERE status = 'computed'"
    ).to_pylist()
    again = [
        e for e in rerun_events if e["run_id"] not in recorded_before and e["key"] in keys_before
    ]
    assert again == [], again
    assert rerun_events  # the sweeps did compute something
