"""The attribution pipeline as Prefect tasks over the store.

Read in this order:

    declare.py     what a stage and a catalog table declare (Stage, CatalogTable, RunColumn)
    stages/        the stages, one module each: record type, compute, tables
    catalog.py     the catalog tables a pipeline fills (stages' own, runs, stage_events)
    pipeline.py    PIPELINE, the list of stages, and the store with its tables registered
    runtime.py     Setup (model, transcoders, store), models loaded once per process, identities
    context.py     RunContext: a run's settings and the records of its stages; run ids
    recorded.py    a recorded run opened by its id; `load_graph`: its graph back in Python
    imports.py     circuit-tracer graph files brought in as runs (`circuitflow import`)
    execute.py     run_stage (any stage), execute_run (the run driver), the run's catalog
                   entries, a sweep's batch of runs; plain Python, no Prefect
    prefect_tasks.py  the same as Prefect tasks: a stage a task run, a sweep's batch a task run
    analysis*.py   analysis configs (YAML), functions attached while stages run, the
                   `analysis` table and objects where what they return is kept
    training.py    the steps of `circuitflow train-demo` as tasks

Imports go one way: flows -> tasks -> (store, attribution).
"""

from circuitflow.attribution import RunParams
from circuitflow.tasks.catalog import catalog_tables
from circuitflow.tasks.context import RunContext, RunRequest, StageOutput, run_id
from circuitflow.tasks.declare import CatalogTable, RunColumn, Stage
from circuitflow.tasks.execute import RunOutcome, execute_run, run_stage
from circuitflow.tasks.pipeline import PIPELINE, open_store
from circuitflow.tasks.recorded import load_graph
from circuitflow.tasks.runtime import Setup

__all__ = [
    "PIPELINE",
    "CatalogTable",
    "RunColumn",
    "RunContext",
    "RunOutcome",
    "RunParams",
    "RunRequest",
    "Setup",
    "Stage",
    "StageOutput",
    "catalog_tables",
    "execute_run",
    "load_graph",
    "open_store",
    "run_id",
    "run_stage",
]
