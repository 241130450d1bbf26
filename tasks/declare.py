"""The vocabulary of the pipeline: what a stage declares, and what a catalog table declares.

A stage is data, not a class hierarchy: its name and version, the stages it reads, the run
settings its key depends on, the record type it stores, the function that computes that record,
and the catalog tables it fills. The driver (`tasks.execute`) needs nothing else to key, cache,
compute, publish and record any stage, so adding a stage is one declaration plus its compute
function (see `tasks/stages/` and `tasks/pipeline.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from circuitflow.store import TableSchema, table_schema

if TYPE_CHECKING:
    from circuitflow.tasks.context import RunContext

# A compute function gets the run (its settings, its setup, its earlier stages' records) and
# returns the stage's record. A table's entry builder gets the finished run and returns the
# run's entries for the table, one dict per row. ("rows" in this package always means rows of
# the edge matrix, the stage of that name.)
Compute = Callable[["RunContext"], Any]
EntryBuilder = Callable[["RunContext"], list[dict[str, Any]]]


@dataclass(frozen=True)
class CatalogTable:
    """A catalog table: its columns (beside `run_id`) and the function that builds a run's
    entries.

    allowed:     columns restricted to a few values, checked on every write
    object_keys: a column that names store objects (the store's `gc` keeps what it names)
    """

    name: str
    columns: tuple[tuple[str, pa.DataType], ...]
    entries: EntryBuilder | None = None
    allowed: Mapping[str, frozenset[str]] = field(default_factory=dict)
    object_keys: str | None = None

    def schema(self) -> TableSchema:
        return table_schema(*self.columns, allowed=self.allowed, object_keys=self.object_keys)


@dataclass(frozen=True)
class RunColumn:
    """A column a stage adds to the `runs` table: one value per run, read from the finished run."""

    name: str
    type: pa.DataType
    value: Callable[[RunContext], Any]


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline.

    name, version: the stage's identity in keys; bump `version` when the code changes what the
        stage stores, so that old objects stop matching.
    inputs:     the stages whose outputs it reads (their keys are part of its key).
    params:     the run settings its key depends on: RunParams fields, or "prompt" (the text).
    identities: outside things its key depends on: "model", "transcoders".
    record:     the type of what it stores: a `Record` (tensors + JSON metadata + files).
    compute:    run -> record, called only when the store does not hold the key.
    uses_model: whether compute needs the model loaded (a run whose model stages are all cached
        loads no model).
    tables:     catalog tables it fills, each with its entry builder.
    run_columns: columns it adds to the `runs` table.
    identity:   where the stage's output names itself for the stages after it: None means its
        key; a name means that field of its record (tokenize: the prompt's token digest, so two
        texts with the same tokens share everything downstream).
    when:       a switch (a true/false RunParams field) that the stage runs under: only runs
        whose setting is true run it, the others skip it (and its tables) entirely. `validate`
        runs when `validate` is set: the causal checks are asked for, not paid by every run.
    retention:  what a size-bounded store (`store gc --max-size`) may do with its objects:
        "recompute-first" (evicted first: large and cheap to recompute, like edge matrices),
        "recompute" (evicted next), "keep" (never evicted: what people read, like pruned graphs).
    dims:       the dimension names of its record's tensors, (tensor, names) pairs: stored
        with each Zarr array, so that `xarray.open_zarr` shows `(row, source)`, not `dim_0`
        (`StoredObject.dataset`); a tensor not named gets `<tensor>_dim<i>`.
    points:     the analysis points its compute fires (`attribution.analysis_points`): a run
        with analysis on executes the stages whose points are enabled (see `tasks.analysis`).
        Points never enter the key.
    """

    name: str
    version: int
    inputs: tuple[str, ...]
    params: tuple[str, ...]
    record: type
    compute: Compute
    identities: tuple[str, ...] = ()
    uses_model: bool = False
    tables: tuple[CatalogTable, ...] = ()
    run_columns: tuple[RunColumn, ...] = ()
    identity: str | None = None
    retention: str = "recompute"
    points: tuple[str, ...] = ()
    when: str | None = None
    dims: tuple[tuple[str, tuple[str, ...]], ...] = ()
