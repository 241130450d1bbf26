"""A sweep driver for the fault tests, run as a separate process that a test may kill -9.

`python -m tests.faults.driver STORE PROMPT...` runs each prompt through `execute_run` (stages
inline, the one run driver sweeps use) against STORE, recording each run in the catalog as it
ends, and prints one line per finished run. No Prefect flow: the faults under test are the
store's, and a flow's server would only slow the kill loop down.
"""

from __future__ import annotations

import sys

from circuitflow.tasks import RunRequest, Setup
from circuitflow.tasks.execute import execute_run


def main(store: str, prompts: list[str]) -> None:
    setup = Setup.resolve(None, "plt", store)
    for prompt in prompts:
        outcome = execute_run(setup, RunRequest(prompt))
        print(outcome.status, outcome.run_id, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
