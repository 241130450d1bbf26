"""Store benchmarks (issue 4): edge-matrix write/read, a 10M-row group-by, compacting 10k files.

    python benchmarks/bench_store.py [--root DIR] [--repeat 3] [--parts edges,nodes,compact]

Each figure is the median of `--repeat` runs (min in brackets) and includes everything a stage
pays: hashing, the atomic publish, and on reads the completeness check and per-file digest checks.
The work directory is deleted at the end unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from circuitflow.store import QuerySession, Store, stage_key
from circuitflow.store.maintenance import compact
from circuitflow.tasks import PIPELINE, catalog_tables

CPU_S: dict[str, float] = {}  # CPU seconds (user + system, all threads) of the last timed() call


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float, object]:
    """Median and min wall seconds of `repeat` calls, and the last result.

    The median CPU time goes to CPU_S["last"]: on a shared machine wall time mostly measures
    the neighbours, CPU time what the code costs.
    """
    times, cpus, result = [], [], None
    for _ in range(repeat):
        cpu = time.process_time()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    CPU_S["last"] = statistics.median(cpus)
    return statistics.median(times), min(times), result


def bench_edge_matrix(root: Path, repeat: int) -> dict[str, float]:
    matrix = np.random.default_rng(0).standard_normal((8000, 8000), dtype=np.float32)
    counter = iter(range(1000))

    def write() -> str:
        store = Store(root / "edges")
        key = stage_key("rows", 1, {"trial": next(counter)})
        with store.writer("rows", key, version=1) as w:
            w.put_tensor("edges", matrix)
        return key

    w_med, w_min, key = timed(write, repeat)
    w_cpu = CPU_S["last"]

    def read() -> np.ndarray:
        return Store(root / "edges").get("rows", str(key)).tensor("edges")

    r_med, r_min, back = timed(read, repeat)
    r_cpu = CPU_S["last"]
    assert np.array_equal(back, matrix)
    size = sum(
        f.stat().st_size
        for f in Path(Store(root / "edges").object_path("rows", str(key))).rglob("*")
    )
    return {
        "write_s": w_med,
        "write_min_s": w_min,
        "write_cpu_s": w_cpu,
        "read_s": r_med,
        "read_min_s": r_min,
        "read_cpu_s": r_cpu,
        "stored_mb": size / 2**20,
    }


def _nodes(run: int, n: int, rng: np.random.Generator) -> pa.Table:
    layer = rng.integers(0, 26, n).astype(np.int32)
    pos = rng.integers(0, 64, n).astype(np.int32)
    feature = rng.integers(0, 16384, n)
    kind = pa.array(
        rng.choice(["feature", "error", "token", "logit"], n, p=[0.9, 0.05, 0.04, 0.01])
    )
    influence = rng.exponential(1e-3, n)
    node_id = pc.binary_join_element_wise(
        pc.cast(pa.array(layer), pa.string()),
        pc.cast(pa.array(feature), pa.string()),
        pc.cast(pa.array(pos), pa.string()),
        "_",
    )
    return pa.table(
        {
            "node_id": node_id,
            "kind": kind,
            "layer": layer,
            "pos": pos,
            "feature": feature,
            "activation": rng.random(n),
            "influence": influence,
            "cumulative_influence": np.cumsum(influence),
            "kept": rng.random(n) < 0.05,
        }
    )


GROUP_BY = (
    "SELECT kind, layer, count(*) AS n, sum(influence) AS influence, avg(activation) AS act "
    "FROM nodes WHERE kept OR influence > 1e-3 GROUP BY kind, layer"
)
PER_RUN = "SELECT run_id, count(*) AS n, max(cumulative_influence) AS c FROM nodes GROUP BY run_id"


def bench_nodes_query(root: Path, repeat: int, runs: int = 100, rows: int = 100_000) -> dict:
    store = Store(root / "nodes", tables=catalog_tables(PIPELINE))
    rng = np.random.default_rng(1)
    start = time.perf_counter()
    for run in range(runs):
        store.catalog.write("nodes", f"run-{run:04d}", _nodes(run, rows, rng))
    write_s = time.perf_counter() - start

    def session_and_query() -> int:
        with QuerySession(store.catalog) as session:
            return session.arrow(GROUP_BY).num_rows

    session = QuerySession(store.catalog)
    g_med, g_min, groups = timed(lambda: session.arrow(GROUP_BY).num_rows, repeat)
    g_cpu = CPU_S["last"]
    p_med, p_min, per_run = timed(lambda: session.arrow(PER_RUN).num_rows, repeat)
    total = session.arrow("SELECT count(*) AS n FROM nodes")["n"][0].as_py()
    session.close()
    c_med, c_min, _ = timed(session_and_query, repeat)
    assert total == runs * rows and per_run == runs
    return {
        "rows": total,
        "runs": runs,
        "write_100_runs_s": write_s,
        "group_by_s": g_med,
        "group_by_min_s": g_min,
        "group_by_cpu_s": g_cpu,
        "groups": groups,
        "per_run_group_by_s": p_med,
        "per_run_group_by_min_s": p_min,
        "open_session_and_group_by_s": c_med,
    }


def bench_compact(root: Path, files: int = 10_000) -> dict:
    store = Store(root / "compact", tables=catalog_tables(PIPELINE))
    rng = np.random.default_rng(2)
    stages = ["tokenize", "precompute", "targets", "rows", "influence", "prune", "export"]
    start = time.perf_counter()
    for run in range(files):
        keys = [f"{k:064x}" for k in rng.integers(0, 2**62, len(stages))]
        store.catalog.write(
            "stage_events",
            f"run-{run:05d}",
            {"stage": stages, "key": keys, "status": ["cached"] * 7, "seconds": rng.random(7)},
        )
    write_s = time.perf_counter() - start
    summary = "SELECT stage, count(*), avg(seconds) FROM stage_events GROUP BY stage"
    start = time.perf_counter()
    store.query(summary)
    query_before_s = time.perf_counter() - start
    before = store.query("SELECT count(*) AS n, sum(seconds) AS s FROM stage_events").to_pylist()
    start = time.perf_counter()
    done = compact(store, ["stage_events"])
    compact_s = time.perf_counter() - start
    after = store.query("SELECT count(*) AS n, sum(seconds) AS s FROM stage_events").to_pylist()
    assert before[0]["n"] == after[0]["n"] and abs(before[0]["s"] - after[0]["s"]) < 1e-6
    left = len(list((root / "compact" / "tables" / "stage_events").rglob("*.parquet")))
    start = time.perf_counter()
    store.query(summary)
    query_after_s = time.perf_counter() - start
    return {
        "files_in": files,
        "write_files_s": write_s,
        "compact_s": compact_s,
        "files_merged": sum(c.files_in for c in done),
        "files_after": left,
        "query_before_compact_s": query_before_s,
        "query_after_compact_s": query_after_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None, help="work dir (default: temp)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--parts", default="edges,nodes,compact", help="comma-separated subset to run"
    )
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="bench-store-"))
    root.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores",
        "load_avg_at_start": os.getloadavg(),
    }
    try:
        parts = args.parts.split(",")
        if "edges" in parts:
            results["edge_matrix_8000x8000_f32"] = bench_edge_matrix(root, args.repeat)
        if "nodes" in parts:
            results["nodes_10M_rows_100_runs"] = bench_nodes_query(root, args.repeat)
        if "compact" in parts:
            results["compact_10k_files"] = bench_compact(root)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    results["load_avg_at_end"] = os.getloadavg()
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
