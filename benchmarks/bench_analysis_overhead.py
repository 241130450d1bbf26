"""What analysis points cost with nothing attached: attribution time before and after them.

The code before the points (by default the merge base with `main`) and the code with them (by
default HEAD) are each extracted with `git archive` into a temporary directory and imported from
there in a subprocess, so both run the same way. Subprocesses alternate (A B A B ...) to spread
the machine's noise over both; each loads the model once, warms up, then times `--repeats` runs
of the whole attribution core: attribute + node_influence + graph_scores + prune_with_details,
in wall time and in process CPU time (one torch thread by default: CPU time then moves least
with what else runs on a shared machine).

    python benchmarks/bench_analysis_overhead.py                       # built-in model, seed prompt
    python benchmarks/bench_analysis_overhead.py --shape medium        # a larger random model
    python benchmarks/bench_analysis_overhead.py --before main --after HEAD --rounds 6

It also times one `wants()` check in this process and counts the checks one run makes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Idle OpenMP threads spinning slow a shared 2-core machine 5-10x (DESIGN.md).
CHILD_ENV = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}

# Runs inside each subprocess, with the extracted package first on sys.path.
CHILD = r"""
import json, sys, time
sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path_hooks = [h for h in sys.path_hooks if "editable" not in repr(h).lower()]
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(int(sys.argv[4]))
from circuitflow.attribution import (ReplacementModel, attribute, graph_scores, load_model,
    load_transcoders, node_influence, prune_with_details)
import circuitflow.attribution as package
assert package.__file__.startswith(sys.argv[1]), package.__file__
shape, repeats = sys.argv[2], int(sys.argv[3])
if shape == "builtin":
    model_dir = sys.argv[5]
    tc = load_transcoders(model_dir + "/transcoders/plt")
    model = ReplacementModel(load_model(model_dir), tc)
    prompt, batch = "The capital of the state containing Dallas is", 64
else:
    import tempfile
    from circuitflow.attribution import Activation
    from circuitflow.attribution.toy import random_model, random_transcoders
    torch.manual_seed(0)
    base = random_model("gpt2", n_layers=6, d_model=256, d_head=64, n_heads=4, d_mlp=1024,
                        d_vocab=500, n_ctx=128)
    tc = random_transcoders(base, d_transcoder=2048, activation=Activation("topk", 16),
                            directory=tempfile.mkdtemp())
    model = ReplacementModel(base, tc)
    prompt, batch = " ".join(f"w{(i * 7 + 3) % 40}" for i in range(24)), 64

def once():
    graph = attribute(prompt, model, batch_size=batch)
    node_influence(graph); graph_scores(graph); prune_with_details(graph)
    return graph.n_nodes

once()
times, cpu = [], []
for _ in range(repeats):
    start, start_cpu = time.perf_counter(), time.process_time()
    n = once()
    times.append(time.perf_counter() - start); cpu.append(time.process_time() - start_cpu)
print(json.dumps({"times": times, "cpu": cpu, "nodes": n}))
"""


def extract(ref: str, into: Path) -> Path:
    """The `attribution` package of `ref`, as <into>/circuitflow/attribution."""
    target = into / "circuitflow"
    target.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", ref, "attribution"], cwd=REPO, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return into


def resolve(ref: str) -> str:
    out = subprocess.run(["git", "rev-parse", "--short", ref], cwd=REPO, capture_output=True)
    return out.stdout.decode().strip()


def measure_wants() -> tuple[float, int]:
    """ns per `wants()` check with nothing attached, and checks in one built-in model run."""
    import circuitflow.attribution.analysis as analysis
    from circuitflow.attribution import (
        ReplacementModel,
        attribute,
        graph_scores,
        load_model,
        load_transcoders,
        node_influence,
        prune_with_details,
    )
    from circuitflow.models import BUILTIN_MODEL

    n = 1_000_000
    seconds = min(timeit.repeat(lambda: analysis.wants("influence_iteration"), number=n, repeat=5))
    calls = 0
    original = analysis.wants

    def counting(point: str) -> bool:
        nonlocal calls
        calls += 1
        return original(point)

    model = ReplacementModel(
        load_model(BUILTIN_MODEL), load_transcoders(BUILTIN_MODEL / "transcoders" / "plt")
    )
    analysis.wants = counting  # count the checks of one run (this process only)
    try:
        graph = attribute("The capital of the state containing Dallas is", model)
        node_influence(graph), graph_scores(graph), prune_with_details(graph)
    finally:
        analysis.wants = original
    return seconds / n * 1e9, calls


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", default=None, help="[default: merge base of HEAD and main]")
    parser.add_argument("--after", default="HEAD")
    parser.add_argument("--shape", choices=["builtin", "medium"], default="builtin")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    before = (
        args.before
        or subprocess.run(
            ["git", "merge-base", "HEAD", "main"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
    )
    refs = {"before": before, "after": args.after}

    from circuitflow.models import BUILTIN_MODEL

    times: dict[str, list[float]] = {"before": [], "after": []}
    cpu: dict[str, list[float]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        roots = {name: extract(ref, Path(tmp) / name) for name, ref in refs.items()}
        for round_ in range(args.rounds):
            order = ["before", "after"] if round_ % 2 == 0 else ["after", "before"]
            for name in order:
                done = subprocess.run(
                    [sys.executable, "-c", CHILD, str(roots[name]), args.shape,
                     str(args.repeats), str(args.threads), str(BUILTIN_MODEL)],
                    capture_output=True, text=True, check=True, env=CHILD_ENV,
                )  # fmt: skip
                result = json.loads(done.stdout.strip().splitlines()[-1])
                times[name] += result["times"]
                cpu[name] += result["cpu"]
                print(
                    f"round {round_} {name}: median wall {statistics.median(result['times']):.4f}s"
                    f" cpu {statistics.median(result['cpu']):.4f}s"
                )

    print(f"\nshape {args.shape}, {result['nodes']} nodes; torch threads {args.threads}")
    for name, ref in refs.items():
        t, c = times[name], cpu[name]
        print(
            f"{name:6} {resolve(ref):>10}: wall median {statistics.median(t):.4f}s "
            f"min {min(t):.4f}s; cpu median {statistics.median(c):.4f}s min {min(c):.4f}s; "
            f"{len(t)} runs"
        )
    for label, series in (("wall", times), ("cpu", cpu)):
        ratio = statistics.median(series["after"]) / statistics.median(series["before"])
        best = min(series["after"]) / min(series["before"])
        print(f"after / before ({label} time): median {ratio:.3f}, best {best:.3f}")
    ns, calls = measure_wants()
    print(f"one wants() check with nothing attached: {ns:.0f} ns; {calls} checks per run")


if __name__ == "__main__":
    main()
