"""Feature dashboards and circuits across runs (issue 12).

    python benchmarks/bench_features.py [--runs 1000] [--repeat 3] [--root DIR]

1. Dashboards: every feature of the built-in per-layer transcoders (4 x 1024) over the built-in
   corpus (2,048 documents), in a fresh store, in this process: chunks computed, merged, the
   `features` table written (the `features` flow's work, without Prefect's start-up).
2. Circuits over a catalog of `--runs` runs. Attributing 1,000 prompts would take about
   1,000 x 1 s here, so the catalog is synthesized from real runs: the capital question is
   attributed for the 72 cities of the built-in world, and their real `nodes`, `edges` and
   `runs` rows are copied under new run ids (with influences jittered by up to 10%) until there
   are `--runs` runs, written in batches of 50 runs like a sweep. Then the circuits query
   (features), the edges query and the similarity query are timed.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from circuitflow.tasks import RunRequest, Setup
from circuitflow.tasks.circuits import circuit_edges_sql, circuit_features_sql, similar_runs_sql
from circuitflow.tasks.corpus import builtin_corpus
from circuitflow.tasks.execute import Recorder, execute_run
from circuitflow.tasks.features import DashboardJob, compute_chunk, merge_job
from circuitflow.tasks.pipeline import PIPELINE, open_store
from circuitflow.tasks.runtime import loaded
from circuitflow.training.world import PLACES


def timed(fn, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def bench_dashboards(root: Path, repeat: int) -> None:
    setup = Setup.resolve(None, "plt", str(root / "dash"))
    loaded(setup)  # the model load is not part of the figure
    corpus = builtin_corpus()
    times = []
    for _ in range(repeat):
        shutil.rmtree(setup.store, ignore_errors=True)
        start = time.perf_counter()
        job = DashboardJob(Setup.resolve(None, "plt", setup.store), corpus)
        for chunk in range(job.n_chunks):
            compute_chunk(job, chunk)
        dashboards = merge_job(job)
        times.append(time.perf_counter() - start)
    print(f"dashboards: {dashboards.stats.count.numel()} features, {len(corpus)} documents, "
          f"{dashboards.stats.n_tokens} tokens: median {statistics.median(times):.2f} s "
          f"(min {min(times):.2f})")  # fmt: skip


def synthesize(root: Path, n_runs: int) -> tuple[object, str]:
    setup = Setup.resolve(None, "plt", str(root / "runs"))
    cities = [c for place in PLACES if place.kind == "state" for c in place.all_cities]
    cities += [c for place in PLACES if place.kind == "country" for c in place.all_cities]
    recorder = Recorder()
    for city in cities:
        kind = "state" if any(city in p.all_cities and p.kind == "state" for p in PLACES) else (
            "country")  # fmt: skip
        execute_run(setup, RunRequest(f"The capital of the {kind} containing {city} is"),
                    recorder=recorder)  # fmt: skip
    recorder.flush(PIPELINE)
    store = open_store(setup.store)
    tables = {t: store.catalog.read(t).to_pylist() for t in ("runs", "nodes", "edges")}
    by_run = {t: {} for t in tables}
    for table, rows in tables.items():
        for row in rows:
            by_run[table].setdefault(row["run_id"], []).append(row)
    real = sorted(by_run["runs"])
    rng = random.Random(0)
    batch: dict[str, dict] = {}
    for k in range(n_runs - len(real)):
        source = real[k % len(real)]
        rid = f"synth{k:05d}"
        jitter = {"nodes": "influence", "edges": "weight"}
        entry = {}
        for table in tables:
            rows = []
            for row in by_run[table][source]:
                row = dict(row, run_id=rid)
                if table in jitter:
                    row[jitter[table]] *= 1 + rng.uniform(-0.1, 0.1)
                rows.append(row)
            entry[table] = rows
        batch[rid] = entry
        if len(batch) == 50:
            store.catalog.write_batch(batch, final=list(batch))
            batch = {}
    if batch:
        store.catalog.write_batch(batch, final=list(batch))
    return store, real[0]


def bench_circuits(root: Path, n_runs: int, repeat: int) -> None:
    start = time.perf_counter()
    store, some_run = synthesize(root, n_runs)
    count = store.query("SELECT count(*) AS n FROM runs").to_pylist()[0]["n"]
    nodes = store.query("SELECT count(*) AS n FROM nodes").to_pylist()[0]["n"]
    edges = store.query("SELECT count(*) AS n FROM edges").to_pylist()[0]["n"]
    print(f"catalog: {count} runs, {nodes} nodes, {edges} kept edges "
          f"(made in {time.perf_counter() - start:.0f} s)")  # fmt: skip
    tables = set(store.catalog.table_names())
    queries = {
        "circuits (features)": circuit_features_sql(None, 20, tables),
        "circuits --where prompt LIKE '%state%'": circuit_features_sql(
            "prompt LIKE '%state%'", 20, tables
        ),  # fmt: skip
        "circuits --edges": circuit_edges_sql(None, 20),
        "circuits --similar": similar_runs_sql(some_run, None, 20),
    }
    for name, sql in queries.items():
        median, best = timed(lambda sql=sql: store.query(sql), repeat)
        print(f"{name}: median {median:.2f} s (min {best:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--root", default=None)
    parser.add_argument("--parts", default="dashboards,circuits")
    args = parser.parse_args()
    root = Path(args.root or tempfile.mkdtemp(prefix="bench-features-"))
    print(f"{platform.node()}: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    try:
        if "dashboards" in args.parts:
            bench_dashboards(root, args.repeat)
        if "circuits" in args.parts:
            bench_circuits(root, args.runs, args.repeat)
    finally:
        if not args.root:
            shutil.rmtree(root, ignore_errors=True)
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
