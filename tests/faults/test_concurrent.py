"""Two sweeps on overlapping prompts against one store at once: both finish, no key is computed
twice (the per-key compute locks), and the catalog holds one row per run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.checks import PROMPTS, assert_sound, computed_twice, start_sweep


@pytest.mark.slow
def test_two_sweeps_on_overlapping_prompts_share_one_store(tmp_path: Path) -> None:
    root = str(tmp_path / "store")
    first, second = PROMPTS[:3], PROMPTS[1:4]  # two prompts in common
    sweeps = [start_sweep(root, prompts) for prompts in (first, second)]
    for sweep in sweeps:
        _, err = sweep.communicate(timeout=300)
        assert sweep.returncode == 0, err
    store = assert_sound(root, first + second)
    assert computed_twice(store) == []
    # One object directory per key, and nothing left in tmp/ but the lock files.
    keys = [p.name for p in Path(root, "objects").glob("*/*/*")]
    assert len(keys) == len(set(keys))
    assert [p.name for p in Path(root, "tmp").iterdir() if p.name != "locks"] == []
