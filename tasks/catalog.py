"""The catalog tables a pipeline fills: each stage's own, plus `runs` and `stage_events`.

- `runs`: one row per run, with the run's setup, its status, a column for every RunParams
  field, and the columns each stage adds (`Stage.run_columns`);
- `stage_events`: one row per stage of a run, with the key of the object it used, and whether
  it was computed or found in the store (the store's `gc` keeps every object named there);
- `analysis`: what analysis functions returned in a run (declared in `tasks.analysis_table`);
- the tables people fill after a run (`ANNOTATIONS`, each declared beside its code), such as
  `saved_subgraphs`.

`catalog_tables(pipeline)` gives them all, ready to register with a `Store`; `check_pipeline`
refuses declarations that cannot run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pyarrow as pa

from circuitflow.attribution import RunParams
from circuitflow.attribution.analysis import POINTS
from circuitflow.store import TableSchema
from circuitflow.tasks.analysis_table import ANALYSIS
from circuitflow.tasks.declare import CatalogTable, Stage
from circuitflow.tasks.feature_table import FEATURES
from circuitflow.tasks.labels import LABELS
from circuitflow.tasks.subgraphs import SAVED_SUBGRAPHS

TIMESTAMP = pa.timestamp("us", tz="UTC")
RUN_STATUS = frozenset({"ok", "failed"})
REQUEST_PARAMS = ("prompt", "run_id")  # key settings that come from the request, not RunParams
IDENTITIES = ("model", "transcoders")
# Written by people and by other flows (feature dashboards), not by the pipeline's stages.
ANNOTATIONS: tuple[CatalogTable, ...] = (SAVED_SUBGRAPHS, LABELS, FEATURES)


class PipelineError(ValueError):
    """A pipeline declaration that cannot run, and why."""


def check_pipeline(pipeline: Sequence[Stage]) -> None:
    """Names unique; each stage's inputs run before it (and whenever it runs); params,
    identities and switches exist."""
    seen: dict[str, str | None] = {}  # stage -> the switch it runs under
    tables: set[str] = {"runs", "stage_events", ANALYSIS.name, *(t.name for t in ANNOTATIONS)}
    settings = set(RunParams.names()) | set(REQUEST_PARAMS)
    for stage in pipeline:
        if stage.name in seen:
            raise PipelineError(f"two stages are named {stage.name!r}")
        for name in stage.inputs:
            if name not in seen:
                raise PipelineError(
                    f"stage {stage.name!r} reads {name!r}, which does not run before it"
                )
            if seen[name] not in (None, stage.when):
                raise PipelineError(
                    f"stage {stage.name!r} reads {name!r}, which runs only when {seen[name]!r}"
                )
        if stage.when is not None and not isinstance(_default(stage.when), bool):
            raise PipelineError(
                f"stage {stage.name!r} runs when {stage.when!r}, which is not a switch "
                "(a true/false run setting)"
            )
        for name in stage.params:
            if name not in settings:
                raise PipelineError(f"stage {stage.name!r} is keyed by unknown setting {name!r}")
        if stage.retention not in ("keep", "recompute", "recompute-first"):
            raise PipelineError(
                f"stage {stage.name!r} has retention {stage.retention!r}: "
                "use keep, recompute or recompute-first"
            )
        for name in stage.identities:
            if name not in IDENTITIES:
                raise PipelineError(f"stage {stage.name!r} names unknown identity {name!r}")
        for name in stage.points:
            if name not in POINTS:
                raise PipelineError(f"stage {stage.name!r} fires unknown analysis point {name!r}")
        for table in stage.tables:
            if table.name in tables:
                raise PipelineError(f"table {table.name!r} is declared twice")
            tables.add(table.name)
        seen[stage.name] = stage.when


def _default(name: str) -> object:
    field = RunParams.__dataclass_fields__.get(name)
    return None if field is None else field.default


def _param_type(field: dataclasses.Field) -> pa.DataType:
    annotation = str(field.type)
    if annotation.startswith("tuple"):
        return pa.list_(pa.string())
    if annotation == "str":
        return pa.string()
    if annotation == "bool":
        return pa.bool_()
    return pa.float64() if annotation.startswith("float") else pa.int64()


def runs_table(pipeline: Sequence[Stage]) -> CatalogTable:
    """The `runs` table: setup and status, every RunParams field, then each stage's columns."""
    base = (
        ("created_at", TIMESTAMP),
        ("status", pa.string()),
        ("error", pa.string()),
        ("model", pa.string()),
        ("model_digest", pa.string()),
        ("transcoders", pa.string()),
        ("transcoders_digest", pa.string()),
        ("prompt", pa.string()),
    )
    params = tuple((f.name, _param_type(f)) for f in dataclasses.fields(RunParams))
    stages = tuple((c.name, c.type) for stage in pipeline for c in stage.run_columns)
    tail = (
        ("seconds", pa.float64()),  # wall time of the whole run
        ("params", pa.string()),  # canonical JSON of every run parameter
        ("code_version", pa.string()),
    )
    return CatalogTable("runs", base + params + stages + tail, allowed={"status": RUN_STATUS})


STAGE_EVENTS = CatalogTable(
    "stage_events",
    (
        ("stage", pa.string()),
        ("key", pa.string()),
        ("status", pa.string()),
        ("seconds", pa.float64()),
        ("created_at", TIMESTAMP),
    ),
    allowed={"status": frozenset({"computed", "cached"})},
    object_keys="key",
)


def catalog_tables(pipeline: Sequence[Stage]) -> dict[str, TableSchema]:
    """Every catalog table of the pipeline, by name, ready to register with a `Store`."""
    tables = [runs_table(pipeline), STAGE_EVENTS, ANALYSIS, *ANNOTATIONS]
    tables += [table for stage in pipeline for table in stage.tables]
    return {table.name: table.schema() for table in tables}
