"""The attribution pipeline, declared once.

    tokenize -> precompute -> targets -> rows -> influence -> prune -> export

`PIPELINE` lists the stage declarations (`tasks/stages/`, one module each) in the order they
run. Everything else derives from it: each stage's key (its params, identities and the keys of
its inputs), the Prefect task graph of a run, the order of the chain, and the catalog tables
(`tasks/catalog.py`: the stages' own, plus `runs` and `stage_events`).

To add a stage, write its module (record, compute, tables) and add it to the list.

Some stages run only when asked for. Such a stage is declared like any other and joins a
*variant* of the pipeline, a longer list: `VALIDATE_PIPELINE` is every stage of PIPELINE, then
`validate` (the causal checks of `circuitflow validate` and `sweep --validate`). A run's id does
not depend on the variant, so a validated run is the same run with more stages, and its extra
catalog rows join its others. `open_store` registers the tables of every variant, so that a
query finds `interventions` (empty) even in a store where nothing was validated.
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
]
check_pipeline(PIPELINE)

VALIDATE_PIPELINE: list[Stage] = [*PIPELINE, validate.STAGE]
check_pipeline(VALIDATE_PIPELINE)

# The longest variant: it holds every stage of the others, so every catalog table.
EVERY_STAGE = VALIDATE_PIPELINE


def open_store(root: str, pipeline: Sequence[Stage] | None = None) -> Store:
    """The store at `root` with the catalog tables registered (one per process): a pipeline's,
    or by default those of every variant."""
    return store_for(root, EVERY_STAGE if pipeline is None else pipeline)
