"""What packing small objects in one zip saves a sweep's runs (`store/packed.py`).

    python benchmarks/bench_packing.py [--prompts 40] [--rounds 3] [--threads 2]

Loads the built-in model once, then alternates, round after round, between two ways of
writing the same kind of runs: objects packed (`zarr.zip`, the default) and every Zarr file on
disk (`pack_bytes=0`, as before packing). Each round runs `--prompts` new prompts as a sweep's
batches do (`attribute_runs`, 10 runs a batch, objects published on the background thread).
Prints wall and CPU milliseconds a run for each, and the files and directories a run creates.
Alternating in one process is the only fair comparison on a machine whose speed moves by a
third from minute to minute.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
from bench_sweep import prompts

import circuitflow.store.objects as objects
from circuitflow.attribution import RunParams
from circuitflow.store.packed import PACK_BYTES
from circuitflow.tasks import RunRequest, Setup
from circuitflow.tasks.execute import attribute_runs, execute_run
from circuitflow.tasks.runtime import loaded

BATCH = 10


def count_entries(root: Path) -> tuple[int, int]:
    """(files, directories) under the store's objects/."""
    files = dirs = 0
    for _, subdirs, names in os.walk(root / "objects"):
        files += len(names)
        dirs += len(subdirs)
    return files, dirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=40, help="prompts a round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    available = prompts(276)
    needed = 1 + 2 * args.rounds * args.prompts
    if needed > len(available):
        raise SystemExit(f"{needed} prompts needed, the built-in world has {len(available)}")
    first, rest = available[0], iter(available[1:needed])
    original = objects.ObjectStore.writer
    results: dict[str, list[tuple[float, float, int, int]]] = {"packed": [], "files": []}
    scratch = Path(tempfile.mkdtemp(prefix="bench-packing-"))
    try:
        for round_ in range(args.rounds):
            for mode in results:
                pack_bytes = PACK_BYTES if mode == "packed" else 0

                def writer(self, *a, pack_bytes=pack_bytes, **k):  # noqa: ANN001, ANN202
                    return original(self, *a, **k, pack_bytes=pack_bytes)

                objects.ObjectStore.writer = writer
                store = scratch / mode
                setup = Setup.resolve(None, None, str(store), "cpu")
                if round_ == 0:
                    loaded(setup, RunParams().dtype)
                    execute_run(setup, RunRequest(first, RunParams()))  # warm: identities
                before = count_entries(store)
                batch = [RunRequest(next(rest), RunParams()) for _ in range(args.prompts)]
                wall, cpu = time.perf_counter(), time.process_time()
                for i in range(0, len(batch), BATCH):
                    attribute_runs([(setup, request) for request in batch[i : i + BATCH]])
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                files, dirs = (a - b for a, b in zip(count_entries(store), before, strict=True))
                results[mode].append((wall, cpu, files, dirs))
                n = args.prompts
                print(
                    f"round {round_ + 1} {mode:6}: {1000 * wall / n:6.1f} ms a run wall, "
                    f"{1000 * cpu / n:6.1f} ms CPU, {files / n:.0f} files and "
                    f"{dirs / n:.0f} directories a run; load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
    finally:
        objects.ObjectStore.writer = original
        shutil.rmtree(scratch)
    n = args.prompts
    wall = {m: statistics.median(r[0] for r in rows) * 1000 / n for m, rows in results.items()}
    cpu = {m: statistics.median(r[1] for r in rows) * 1000 / n for m, rows in results.items()}
    print(
        f"median: packed {wall['packed']:.1f} ms wall / {cpu['packed']:.1f} ms CPU a run, "
        f"files {wall['files']:.1f} / {cpu['files']:.1f}; "
        f"packed/files wall {wall['packed'] / wall['files']:.2f}, "
        f"CPU {cpu['packed'] / cpu['files']:.2f} ({args.threads} torch threads)"
    )


if __name__ == "__main__":
    main()
