"""A long sweep under load: wall time, throughput, memory per worker over time, store size and
catalog query times afterwards.

    nice -n 10 python benchmarks/bench_load.py --prompts 1000 --workers 2

Runs `circuitflow sweep FILE --workers W` (a fresh process on a cold store, start-up included)
over N distinct prompts of the built-in model's world (its facts, then its filler sentences),
sampling every 2 s the resident memory of the sweep process and each of its descendants (the
Dask scheduler, nannies and workers) together with the number of runs recorded so far. Memory
that does not grow with the number of runs done is the point: the report shows each process's
memory at a quarter of the runs and at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
QUERIES = {
    "count runs": "SELECT count(*) FROM runs",
    "mean scores": "SELECT avg(replacement_score), avg(completeness_score) FROM runs",
    "top features": "SELECT layer, feature, count(*) AS n, sum(influence) AS total FROM nodes "
    "WHERE kept GROUP BY ALL ORDER BY total DESC LIMIT 20",
    "one run's edges": "SELECT count(*) FROM edges WHERE run_id = (SELECT min(run_id) FROM runs)",
}


def prompts(n: int) -> list[str]:
    from circuitflow.training.world import all_filler_sentences, one_hop_facts, two_hop_facts

    pool = [f.prompt for f in two_hop_facts() + one_hop_facts()] + all_filler_sentences()
    unique = list(dict.fromkeys(p for p in pool if p.strip()))
    assert n <= len(unique), f"the world has {len(unique)} distinct prompts"
    return unique[:n]


def runs_recorded(store: Path) -> int:
    """Runs committed to the catalog so far (from the batches' commit files: cheap to read)."""
    total = 0
    for commit in store.glob("tables/batches/*/commit.json"):
        with contextlib.suppress(OSError, ValueError):
            total += len(json.loads(commit.read_text())["tables"].get("runs", {}).get("runs", {}))
    return total


def sample(proc: psutil.Process, store: Path, out: list[dict], stop: threading.Event) -> None:
    while not stop.is_set():
        row = {"t": time.perf_counter(), "done": runs_recorded(store), "rss": {}}
        try:
            for p in [proc, *proc.children(recursive=True)]:
                with_name = f"{p.pid} {' '.join(p.cmdline()[1:4])[:60]}"
                row["rss"][with_name] = p.memory_info().rss
        except psutil.Error:
            pass
        out.append(row)
        stop.wait(2.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    store = work / "store"
    file = work / "prompts.txt"
    file.write_text("\n".join(prompts(args.prompts)) + "\n")
    print(f"load average before: {os.getloadavg()}; {os.cpu_count()} CPUs", flush=True)

    command = [sys.executable, "-m", "circuitflow.flows.cli", "sweep", str(file)]
    command += ["--workers", str(args.workers), "--store", str(store), "--json"]
    start = time.perf_counter()
    sweep = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    samples: list[dict] = []
    stop = threading.Event()
    sampler = threading.Thread(
        target=sample, args=(psutil.Process(sweep.pid), store, samples, stop)
    )
    sampler.start()
    out, err = sweep.communicate()
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    assert sweep.returncode == 0, err.decode()[-3000:]
    outcomes = json.loads(out)
    ok = sum(o["status"] == "ok" for o in outcomes)

    print(f"\n{len(outcomes)} runs ({ok} ok) in {wall:.1f} s: {60 * len(outcomes) / wall:.1f}/min")
    print(f"load average after: {os.getloadavg()}")
    print("\nresident memory per process (MiB): peak; with 25%, 50%, 75% of runs done; last seen")
    n = len(outcomes)
    for name in sorted({n for s in samples for n in s["rss"]}):
        seen = [s for s in samples if name in s["rss"]]
        peak = max(s["rss"][name] for s in seen) / 2**20
        at = [next((s["rss"][name] for s in seen if s["done"] >= f * n), 0) / 2**20
              for f in (0.25, 0.5, 0.75)]  # fmt: skip
        last = seen[-1]["rss"][name] / 2**20
        print(f"  {name:60} {peak:6.0f} " + " ".join(f"{m:6.0f}" for m in at) + f" {last:6.0f}")
    size = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
    print(f"\nstore size: {size / 2**20:.1f} MiB ({size / len(outcomes) / 2**10:.0f} KiB a run)")

    from circuitflow.store import QuerySession, Store

    catalog = Store(store).catalog
    print("\ncatalog queries (ms, best of 3, after the sweep):")
    with QuerySession(catalog) as session:
        for name, sql in QUERIES.items():
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                session.batches(sql).read_all()
                times.append(1000 * (time.perf_counter() - t0))
            print(f"  {name:16} {min(times):8.1f}")
    (work / "samples.json").write_text(json.dumps(samples))
    print(f"\nsamples: {work / 'samples.json'}")


if __name__ == "__main__":
    main()
