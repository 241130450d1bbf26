"""The attribution pipeline, declared once.

    tokenize -> precompute -> targets -> rows -> influence -> prune -> export

`PIPELINE` lists the stage declarations (`tasks/stages/`, one module each) in the order they
run. Everything else derives from it: each stage's key (its params, identities and the keys of
its inputs), the Prefect task graph of a run, the order of the chain, and the catalog tables
(`tasks/catalog.py`: the stages' own, plus `runs` and `stage_events`).

To add a stage, write its module (record, compute, tables) and add it to the list.
"""

from __future__ import annotations

from collections.abc import Sequence

from circuitflow.store import Store
from circuitflow.tasks.catalog import check_pipeline
from circuitflow.tasks.context import store_for
from circuitflow.tasks.declare import Stage
from circuitflow.tasks.stages import export, influence, precompute, prune, rows, targets, tokenize

PIPELINE: list[Stage] = [
    tokenize.STAGE,
    precompute.STAGE,
    targets.STAGE,
    rows.STAGE,
    influence.STAGE,
    prune.STAGE,
    export.STAGE,
]
check_pipeline(PIPELINE)


def open_store(root: str, pipeline: Sequence[Stage] | None = None) -> Store:
    """The store at `root` with the pipeline's catalog tables registered (one per process)."""
    return store_for(root, PIPELINE if pipeline is None else pipeline)
