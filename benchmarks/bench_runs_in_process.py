"""A run's cost in one process, without Prefect: what a sweep pays per prompt beyond start-up.

    python benchmarks/bench_runs_in_process.py [--prompts 80] [--threads 1] [--background]
        [--batch-size 64]

Loads the built-in model once, runs one prompt to warm up, then times `execute_run` over the
next N prompts of the built-in world (every stage computed, objects published inline or, with
--background, on the publishing thread, catalog entries recorded as one batch). Prints wall and
CPU milliseconds a run. Compare two commits by running it alternately on each: this machine's
speed moves by a third from minute to minute.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
import time

import torch
from bench_sweep import prompts

from circuitflow.attribution import RunParams
from circuitflow.tasks import RunRequest, Setup
from circuitflow.tasks.execute import Recorder, execute_run
from circuitflow.tasks.pipeline import PIPELINE
from circuitflow.tasks.publishing import publishing
from circuitflow.tasks.runtime import loaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=80)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--background", action="store_true", help="publish on a thread")
    parser.add_argument("--batch-size", type=int, default=RunParams().batch_size)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    first, *timed = prompts(args.prompts + 1)
    store = tempfile.mkdtemp(prefix="bench-runs-")
    try:
        setup = Setup.resolve(None, None, store, "cpu")
        params = RunParams(batch_size=args.batch_size)
        loaded(setup, params.dtype)
        execute_run(setup, RunRequest(first, params))
        recorder = Recorder()
        wall, cpu = time.perf_counter(), time.process_time()
        with publishing() if args.background else contextlib.nullcontext():
            for prompt in timed:
                execute_run(setup, RunRequest(prompt, params), recorder=recorder)
        recorder.flush(PIPELINE)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        shutil.rmtree(store)
    n = len(timed)
    print(
        f"{n} runs: {1000 * wall / n:.1f} ms a run wall, {1000 * cpu / n:.1f} ms CPU "
        f"({args.threads} torch thread(s), {'background' if args.background else 'inline'} "
        f"publishing, batch size {args.batch_size}); load {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
