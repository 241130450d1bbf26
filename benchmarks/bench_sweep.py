"""Sweeps and threshold changes as a user runs them, against a plain circuit-tracer loop.

    python benchmarks/bench_sweep.py --prompts 120 --workers 1 2 [--server] [--repeat 1]

In one run, on the built-in model and the first N prompts of its world (all distinct):

- the reference: a fresh Python process that imports circuit-tracer and loops over its
  `attribute` + `prune_graph` + `Graph.to_pt` (imports and model loading included);
- `circuitflow sweep FILE --workers W`, a fresh process on a cold store, start-up included
  (Prefect's temporary server, or with --server a running `circuitflow server start`);
- a threshold change: `circuitflow attribute PROMPT --node-threshold 0.6` on the swept store,
  every stage but prune and export cached, against `python -c "import torch, prefect, duckdb,
  zarr"`;
- a grid over three node thresholds on 2 workers: how many times each prompt's rows are
  computed (once is the goal).

It prints the figures and checks every run is recorded with all its stages.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from circuitflow.models import BUILTIN_MODEL

LOOP = """
import sys, time
from pathlib import Path
prompts = Path(sys.argv[1]).read_text().splitlines()
out = Path(sys.argv[2])
from circuitflow.attribution import load_model, load_transcoders
from tests.attribution.reference import prune_graph, reference_attribute, reference_model
model = load_model(sys.argv[3])
ref = reference_model(model, load_transcoders(sys.argv[3] + "/transcoders/plt"))
for i, prompt in enumerate(prompts):
    graph = reference_attribute(prompt, ref, batch_size=64)
    prune_graph(graph, 0.8, 0.98)
    graph.to_pt(str(out / f"{i}.pt"))
"""
REPO = Path(__file__).resolve().parents[1]
SEED = "The capital of the state containing Dallas is"


def prompts(n: int) -> list[str]:
    from circuitflow.training.world import one_hop_facts, two_hop_facts

    facts = [f.prompt for f in two_hop_facts() + one_hop_facts()]
    assert n <= len(facts), f"the world has {len(facts)} distinct prompts"
    return facts[:n]


def load() -> str:
    """The 1-minute load average, printed beside each figure: the machine may be shared."""
    return f"load {os.getloadavg()[0]:.2f}"


def cpu_seconds() -> float:
    """CPU time of this script's finished children (and theirs: servers, Dask workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str], env: dict, cwd: Path) -> float:
    """Wall time of the command; its CPU time (all its processes) goes to `timed.cpu`: on a
    shared machine CPU seconds move less with the load than wall time."""
    start, cpu = time.perf_counter(), cpu_seconds()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    timed.cpu = cpu_seconds() - cpu
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} failed:\n{done.stderr[-3000:]}")
    return wall


def recorded(store: Path) -> dict:
    from circuitflow.store import Store

    return (
        Store(store)
        .query(
            "SELECT (SELECT count(*) FROM runs WHERE status = 'ok') AS ok, "
            "(SELECT count(*) FROM stage_events) AS events, "
            "(SELECT count(DISTINCT run_id) FROM nodes) AS with_nodes"
        )
        .to_pylist()[0]
    )


def start_server(env: dict, cwd: Path) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-m", "circuitflow.flows.cli", "server", "start", "--port", "4299"],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get("http://127.0.0.1:4299/api/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.5)
    raise SystemExit("circuitflow server start did not come up in 180 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=120)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--server", action="store_true", help="Also with a running server.")
    parser.add_argument("--repeat", type=int, default=1, help="Threshold-change repeats.")
    parser.add_argument("--no-grid", action="store_true", help="Skip the threshold grid.")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # each figure shows as it is measured

    tmp = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    file = tmp / "prompts.txt"
    file.write_text("\n".join(prompts(args.prompts)) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {
        "PREFECT_HOME": str(tmp / "prefect-home"),
        "CIRCUITFLOW_CACHE_DIR": str(tmp / "cache"),
        "PYTHONPATH": str(REPO),
    }
    cli = [sys.executable, "-m", "circuitflow.flows"]  # what the `circuitflow` script runs
    # The temporary server's database is created on first use (once per project): not timed.
    timed([*cli, "attribute", SEED, "--store", str(tmp / "warm")], env, tmp)

    imports, import_cpu = min(
        (timed([sys.executable, "-c", "import torch, prefect, duckdb, zarr"], env, tmp), timed.cpu)
        for _ in range(3)
    )
    print(
        f"import torch, prefect, duckdb, zarr: {imports:.2f} s, {import_cpu:.1f} CPU s "
        f"(best of 3); {load()}"
    )
    out = tmp / "reference"
    out.mkdir()
    loop = timed([sys.executable, "-c", LOOP, str(file), str(out), str(BUILTIN_MODEL)], env, tmp)
    rate = 60 * args.prompts / loop
    print(
        f"circuit-tracer loop: {args.prompts} prompts in {loop:.1f} s = {rate:.0f} prompts/min "
        f"({timed.cpu:.1f} CPU s); {load()}"
    )

    modes = [("temporary server", None)] + ([("running server", "server")] if args.server else [])
    for label, mode in modes:
        server = start_server(env, tmp) if mode else None
        try:
            for workers in args.workers:
                store = tmp / f"store-{mode}-{workers}"
                command = [*cli, "sweep", str(file), "--workers", str(workers)]
                wall = timed([*command, "--store", str(store), "--json"], env, tmp)
                got = recorded(store)
                assert got["ok"] == got["with_nodes"] == args.prompts, got
                assert got["events"] == 7 * args.prompts, got
                ours = 60 * args.prompts / wall
                print(
                    f"circuitflow sweep, {label}, {workers} worker(s): {wall:.1f} s "
                    f"({timed.cpu:.1f} CPU s) = "
                    f"{ours:.0f} prompts/min; ratio to the loop {ours / rate:.2f}; {load()}"
                )
            change = [*cli, "attribute", SEED, "--store", str(store), "--node-threshold", "0.6"]
            walls, cpus = [], []
            for i in range(args.repeat):
                walls.append(timed([*change[:-1], str(0.6 - 0.01 * i), "--json"], env, tmp))
                cpus.append(timed.cpu)
            wall = statistics.median(walls)
            print(
                f"threshold change, {label}: {wall:.2f} s, {statistics.median(cpus):.1f} CPU s "
                f"(medians of {len(walls)}) = {wall / imports:.2f} x the imports "
                f"({statistics.median(cpus) / import_cpu:.2f} x in CPU); {load()}"
            )
        finally:
            if server:
                os.killpg(server.pid, 15)
                server.wait(timeout=30)

    if args.no_grid:
        return
    grid = tmp / "grid.yaml"
    grid.write_text(
        json.dumps({"prompts_file": "prompts.txt", "grid": {"node_threshold": [0.8, 0.6, 0.4]}})
    )
    store = tmp / "store-grid"
    wall = timed([*cli, "sweep", str(grid), "--workers", "2", "--store", str(store)], env, tmp)
    from circuitflow.store import Store

    per_prompt = (
        Store(store)
        .query(
            "SELECT r.prompt, count(*) AS n FROM stage_events e JOIN runs r USING (run_id) "
            "WHERE e.stage = 'rows' AND e.status = 'computed' GROUP BY r.prompt"
        )
        .to_pylist()
    )
    counts = sorted({row["n"] for row in per_prompt})
    print(
        f"grid of 3 thresholds x {args.prompts} prompts on 2 workers: {wall:.1f} s; rows "
        f"computed per prompt: {counts} ({len(per_prompt)} prompts); {load()}"
    )


if __name__ == "__main__":
    main()
