"""Two sweeps on overlapping prompts against one store at once: both finish, no key is computed
twice (the per-key compute locks), and the catalog holds one row per run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.checks import PROMPTS, assert_sound, computed_twice
from tests.store.procs import REPO, child_env


@pytest.mark.slow
def test_two_sweeps_on_overlapping_prompts_share_one_store(tmp_path: Path) -> None:
    root = str(tmp_path / "store")
    first, second = PROMPTS[:3], PROMPTS[1:4]  # two prompts in common
    sweeps = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.faults.driver", root, *prompts],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
            cwd=REPO,
        )
        for prompts in (first, second)
    ]
    for sweep in sweeps:
        _, err = sweep.communicate(timeout=300)
        assert sweep.returncode == 0, err
    store = assert_sound(root, first + second)
    assert computed_twice(store) == []
    # One object directory per key, and nothing left in tmp/ but the lock files.
    keys = [p.name for p in Path(root, "objects").glob("*/*/*")]
    assert len(keys) == len(set(keys))
    assert [p.name for p in Path(root, "tmp").iterdir() if p.name != "locks"] == []
