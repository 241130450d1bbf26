"""How long Prefect's temporary server takes to answer, as a command without a server starts it.

    python benchmarks/bench_temporary_server.py [--repeat 3]

Starts `flows.temporary_server.TemporaryServer` (uvicorn on Prefect's API app, no UI) on a
database created beforehand, waits for /health, stops it; alternately as circuitflow starts it
and with block-type registration turned back on (Prefect's default), which imports every
installed Prefect collection first. Prints each start's seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import circuitflow.flows.temporary_server as temporary_server  # noqa: E402

BLOCKS_ON = {
    "PREFECT_SERVER_REGISTER_BLOCKS_ON_START": "1",
    "PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION": "1",
}


def start_once(register_blocks: bool) -> float:
    popen = subprocess.Popen

    def with_blocks(command, env=None, **kwargs):
        return popen(command, env={**env, **BLOCKS_ON}, **kwargs)

    temporary_server.subprocess.Popen = with_blocks if register_blocks else popen
    try:
        start = time.perf_counter()
        server = temporary_server.TemporaryServer()
        server.wait()
        seconds = time.perf_counter() - start
        server.stop()
        return seconds
    finally:
        temporary_server.subprocess.Popen = popen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="bench-server-")
    start_once(register_blocks=True)  # creates the database and registers the block types once
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.repeat):
        for register_blocks in (False, True):
            times[register_blocks].append(start_once(register_blocks))
    for register_blocks, label in ((False, "as circuitflow starts it"), (True, "blocks on")):
        seconds = times[register_blocks]
        print(
            f"temporary server, {label}: "
            + " / ".join(f"{s:.2f}" for s in seconds)
            + f" s (median {statistics.median(seconds):.2f} s); load {os.getloadavg()[0]:.2f}"
        )


if __name__ == "__main__":
    main()
