"""`python -m circuitflow.flows ARGS` is `circuitflow ARGS` (see `flows/entry.py`)."""

from circuitflow.flows.entry import run

run()
