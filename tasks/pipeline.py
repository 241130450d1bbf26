"""The attribution pipeline, declared once.

    tokenize -> precompute -> targets -> rows -> influence -> prune -> export [-> validate]

`PIPELINE` lists the stage declarations (`tasks/stages/`, one module each) in the order they
run. Everything else derives from it: each stage's key (its params, identities and the keys of
its inputs), the Prefect task graph of a run, the order of the chain, and the catalog tables
(`tasks/catalog.py`: the stages' own, plus `runs` and `stage_events`).

To add a stage, write its module (record, compute, tables) and add it to the list.

A stage that only some runs need names a switch (`Stage.when`, a true/false run setting): the
causal checks of `validate` run only in runs with `validate` set (`--validate`, a sweep's
`params: {validate: true}`, `circuitflow validate RUN_ID`). The switch is a run setting like any
other, so a validated run has its own run id and records its `interventions` rows beside its
other tables, while every stage it shares with the unvalidated run is found in the store.
"""

from __future__ import annotations

from collections.abc import Sequence

from circuitflow.store import Store
from circuitflow.tasks.catalog import check_pipeline
from circuitflow.tasks.context import store_for
from circuitflow.tasks.declare import Stage
from circuitflow.tasks.stages import (
    export,
    influence,
    precompute,
    prune,
    rows,
    targets,
    tokenize,
    validate,
)

PIPELINE: list[Stage] = [
    tokenize.STAGE,
    precompute.STAGE,
    targets.STAGE,
    rows.STAGE,
    influence.STAGE,
    prune.STAGE,
    export.STAGE,
    validate.STAGE,  # when="validate"
]
check_pipeline(PIPELINE)


def open_store(root: str, pipeline: Sequence[Stage] | None = None) -> Store:
    """The store at `root` with the pipeline's catalog tables registered (one per process)."""
    return store_for(root, PIPELINE if pipeline is None else pipeline)
