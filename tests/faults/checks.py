"""What every fault test asserts of a store after the fault: sound, and nothing done twice."""

from __future__ import annotations

import collections
import subprocess
import sys

from circuitflow.store import Store
from circuitflow.store.maintenance import verify
from tests.store.procs import REPO, child_env

PROMPTS = [
    "The capital of the state containing Dallas is",
    "The capital of the state containing Miami is",
    "The capital of the country containing Lyon is",
    "The language spoken in the country containing Munich is",
    "The capital of the state containing Seattle is",
    "The capital of the country containing Osaka is",
]


def assert_sound(root: str, prompts: list[str]) -> Store:
    """`store verify` finds nothing wrong, nothing is left half-written outside tmp/, and the
    catalog holds exactly one ok run row per prompt."""
    store = Store(root)
    report = verify(store)
    assert report.ok, [str(p) for p in report.problems]
    runs = store.query("SELECT prompt, status, count(*) AS n FROM runs GROUP BY ALL").to_pylist()
    assert sorted(r["prompt"] for r in runs) == sorted(set(prompts))
    assert all(r["n"] == 1 and r["status"] == "ok" for r in runs), runs
    return store


def computed_twice(store: Store) -> list[tuple[str, str]]:
    """(stage, key) pairs that more than one recorded run says it computed."""
    events = store.query(
        "SELECT stage, key FROM stage_events WHERE status = 'computed'"
    ).to_pylist()
    counts = collections.Counter((e["stage"], e["key"]) for e in events)
    return [pair for pair, n in counts.items() if n > 1]


def start_sweep(root: str, prompts: list[str]) -> subprocess.Popen[str]:
    """`tests.faults.driver` over `prompts` against the store at `root`, in its own process."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.faults.driver", root, *prompts],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
        cwd=REPO,
    )
