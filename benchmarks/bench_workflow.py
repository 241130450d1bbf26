"""Workflow benchmarks: re-pruning a cached run, and a prompt sweep on Dask.

    python benchmarks/bench_workflow.py reprune            # cold run vs re-prune, same process
    python benchmarks/bench_workflow.py sweep --prompts 100 --workers 1 2

`reprune` times one cold `attribute_prompt` flow on the seed prompt in a fresh store, then the
same prompt at a new node threshold (every stage but prune and export cached), both in this
process with the Prefect server already running, and prints the ratio.

`sweep` runs `circuitflow sweep` as a user would (a fresh store each time, so everything is
computed) and reports prompts per minute and the orchestration overhead: the share of the
workers' time (wall time x workers) not spent inside stages, from the catalog's stage_events.
Both the whole command (Prefect server, Dask cluster and worker start included) and the flow
alone (called in this process with the Prefect server already up) are reported.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SEED = "The capital of the state containing Dallas is"


def bench_reprune(model: str | None, prompt: str) -> None:
    from circuitflow.flows.settings import configure, quiet_flows

    configure()
    from circuitflow.attribution import RunParams
    from circuitflow.flows.attribute import attribute_prompt
    from circuitflow.tasks import RunRequest, Setup

    with tempfile.TemporaryDirectory() as tmp, quiet_flows():
        warm = Setup.resolve(model, "plt", f"{tmp}/warm")
        attribute_prompt(warm, RunRequest(prompt))  # server up, model loaded: time the flows only
        setup = Setup.resolve(model, "plt", f"{tmp}/store")
        start = time.perf_counter()
        cold = attribute_prompt(setup, RunRequest(prompt))
        cold_s = time.perf_counter() - start
        start = time.perf_counter()
        again = attribute_prompt(setup, RunRequest(prompt, RunParams(node_threshold=0.6)))
        reprune_s = time.perf_counter() - start
    computed = [s.stage for s in again.stages if s.status == "computed"]
    assert cold.status == again.status == "ok" and computed == ["prune", "export"], computed
    print(f"cold run {cold_s:.2f}s; re-prune {reprune_s:.2f}s; ratio {reprune_s / cold_s:.3f}")


def sweep_prompts(n: int) -> list[str]:
    from circuitflow.training.world import one_hop_facts, two_hop_facts

    facts = two_hop_facts() + one_hop_facts()
    return [facts[i % len(facts)].prompt for i in range(n)]


def bench_sweep(n_prompts: int, workers: list[int], model: str | None, modes: list[str]) -> None:
    from circuitflow.flows.settings import configure, quiet_flows

    configure()
    from circuitflow.flows.attribute import attribute_prompt
    from circuitflow.flows.sweep import dask_runner, sweep
    from circuitflow.tasks import RunRequest, Setup, open_store

    with tempfile.TemporaryDirectory() as tmp, quiet_flows():
        prompts = Path(tmp) / "prompts.txt"
        prompts.write_text("\n".join(sweep_prompts(n_prompts)) + "\n")
        if "flow" in modes:
            attribute_prompt(Setup.resolve(model, "plt", f"{tmp}/warm"), RunRequest(SEED))
        for n in workers:
            if "command" in modes:
                # As a user runs it: Prefect server, Dask cluster and workers all start inside.
                bench_command(prompts, n, f"{tmp}/cmd-{n}", model)
            if "flow" not in modes:
                continue
            # The flow alone, with the Prefect server already up (cluster start included).
            store = f"{tmp}/flow-{n}"
            start = time.perf_counter()
            sweep.with_options(task_runner=dask_runner(n))(
                file=str(prompts), model=model, store=store, show_progress=False, workers=n
            )
            report("flow", n, time.perf_counter() - start, open_store(store))


def bench_command(prompts: Path, n: int, store: str, model: str | None) -> None:
    from circuitflow.tasks import open_store

    command = [sys.executable, "-m", "circuitflow.flows.cli", "sweep", str(prompts)]
    command += ["--workers", str(n), "--store", store, "--json"]
    command += ["--model", model] if model else []
    start = time.perf_counter()
    subprocess.run(command, capture_output=True, text=True, check=True)
    report("command", n, time.perf_counter() - start, open_store(store))


def report(what: str, workers: int, wall: float, store) -> None:
    row = store.query(
        "SELECT (SELECT count(*) FROM runs WHERE status = 'ok') AS ok, "
        "(SELECT count(*) FROM runs) AS runs, (SELECT sum(seconds) FROM stage_events) AS s"
    ).to_pylist()[0]
    print(
        f"{what:8s} workers {workers}: {row['ok']}/{row['runs']} ok in {wall:.1f}s = "
        f"{60 * row['runs'] / wall:.1f} prompts/min; stages {row['s']:.1f}s; orchestration "
        f"overhead {1 - row['s'] / (workers * wall):.0%} of worker time"
    )


def write_gpt2_small(directory: Path) -> None:
    """The benchmark shape of issue 2 as a model directory (plt preset included)."""
    from circuitflow.attribution import Activation, save_model
    from circuitflow.attribution.toy import random_model, random_transcoders

    shape = dict(n_layers=12, d_model=768, d_head=64, n_heads=12, d_mlp=3072, d_vocab=50257)
    model = random_model("gpt2", n_ctx=1024, **shape)
    save_model(model, directory)
    random_transcoders(
        model,
        d_transcoder=6144,
        activation=Activation("topk", 32),
        directory=directory / "transcoders" / "plt",
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=["reprune", "sweep"])
    parser.add_argument("--prompts", type=int, default=100)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--model", default=None, help="model directory [default: built-in]")
    parser.add_argument("--prompt", default=SEED, help="prompt for reprune [default: the seed]")
    parser.add_argument(
        "--gpt2-small-dir",
        default=None,
        help="write a GPT-2-small-shaped model with TopK(32) x 6144 transcoders here",
    )
    parser.add_argument("--modes", nargs="+", choices=["command", "flow"], default=["command"])
    args = parser.parse_args()
    if args.gpt2_small_dir:
        write_gpt2_small(Path(args.gpt2_small_dir))
    if args.what == "reprune":
        bench_reprune(args.model, args.prompt)
    else:
        bench_sweep(args.prompts, args.workers, args.model, args.modes)


if __name__ == "__main__":
    main()
