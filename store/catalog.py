"""The catalog: per-run rows (runs, nodes, edges, ...) as Parquet files, for SQL across runs.

Tables. The store knows none: the code that fills the catalog registers each table's schema
(`TableSchema`), and `Store(root, tables=...)` passes the registry on. Every row carries the
`run_id` of the run it describes. A writer records the schemas it registered in
``tables/schemas.json``, so that a reader that registers nothing (`circuitflow query`, which
imports neither torch nor the pipeline) still knows every table, empty ones included.

Batches. Rows are written in batches, one directory per batch holding one Parquet file per
table and a `commit.json` that lists, for each table, the runs it holds rows of::

    <root>/tables/batches/<batch id>/commit.json, runs.parquet, nodes.parquet, ...

A sweep writes one batch per group of runs, not six files per run: a thousand runs make a few
dozen files, which is what both the writer and DuckDB want. A batch is written under
``<root>/tmp`` and published with one directory rename (on remote filesystems, `commit.json` is
written last and is the commit): readers see a whole batch or nothing, and a killed writer
leaves no partial rows.

Exactly once. Rows are kept per (table, run). Rows marked *final* (a successful run's) are
recorded once: under the catalog's lock, a batch drops the (table, run) pairs some committed
batch already holds as final. Rows recorded non-final (a failed run, a saved subgraph that may
be saved again) may be recorded again; the latest batch's rows for that (table, run) are the
live ones, and older batches' are hidden from reads and queries (`CatalogState.stale`). A new
table for an already recorded run (a subgraph saved later) is simply added.

Compaction (see `store.maintenance.compact`) merges small batches into one whose `commit.json`
names the batches it absorbed (`sources`). Readers skip absorbed batches, so a compaction
interrupted between publishing the merged batch and deleting its sources shows each row once.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import posixpath
import shutil
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from circuitflow.store.arrow import to_arrow_table
from circuitflow.store.errors import CatalogError
from circuitflow.store.fs import (
    Location,
    new_tmp_name,
    utc_now,
    write_bytes_atomic,
    writing_to,
)
from circuitflow.store.keys import check_name

COMMIT = "commit.json"
SCHEMAS = "schemas.json"


@dataclass(frozen=True)
class TableSchema:
    """One catalog table, as the code that fills it declares it.

    schema:      the columns, `run_id` first
    allowed:     columns restricted to a few values (nulls allowed), e.g. {"kind": {...}}
    object_keys: a column naming stored objects that the table's runs use; `gc` keeps those
    """

    schema: pa.Schema
    allowed: Mapping[str, frozenset[str]] = field(default_factory=dict)
    object_keys: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": base64.b64encode(self.schema.serialize().to_pybytes()).decode(),
            "allowed": {column: sorted(values) for column, values in self.allowed.items()},
            "object_keys": self.object_keys,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> TableSchema:
        schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(doc["schema"])))
        allowed = {column: frozenset(values) for column, values in doc["allowed"].items()}
        return cls(schema, allowed, doc.get("object_keys"))


def table_schema(
    *columns: tuple[str, pa.DataType],
    allowed: Mapping[str, frozenset[str]] | None = None,
    object_keys: str | None = None,
) -> TableSchema:
    """A TableSchema with a leading non-null `run_id` column and the given ones."""
    schema = pa.schema(
        [pa.field("run_id", pa.string(), nullable=False)]
        + [pa.field(name, dtype) for name, dtype in columns]
    )
    return TableSchema(schema, dict(allowed or {}), object_keys)


def new_batch_id() -> str:
    """Sortable by creation time: commit order decides which of a run's batches is latest."""
    return utc_now().strftime("%Y%m%dT%H%M%S%fZ") + "-" + uuid.uuid4().hex[:8]


@dataclass(frozen=True)
class Batch:
    """A committed batch: for each table, the runs it holds rows of (run id -> final), and the
    batches it absorbed (a compaction's)."""

    id: str
    path: str
    tables: dict[str, dict[str, bool]]
    rows: dict[str, int]  # table -> rows in its file
    sources: tuple[str, ...] = ()

    def file(self, table: str) -> str:
        return posixpath.join(self.path, f"{table}.parquet")


@dataclass
class CatalogState:
    """The live batches at one moment, and where each (table, run)'s live rows are."""

    batches: list[Batch]  # live (not absorbed by a compaction), in commit order
    absorbed: list[Batch]  # committed but absorbed: still on disk, never read
    latest: dict[tuple[str, str], str]  # (table, run id) -> the batch holding its live rows
    final: set[tuple[str, str]]  # (table, run id) recorded as final

    def files(self, table: str) -> list[str]:
        return [b.file(table) for b in self.batches if table in b.tables]

    def stale(self, table: str) -> dict[str, list[str]]:
        """Files of `table` holding rows of runs recorded again later: file -> those run ids."""
        hidden: dict[str, list[str]] = {}
        for batch in self.batches:
            runs = [r for r in batch.tables.get(table, ()) if self.latest[table, r] != batch.id]
            if runs:
                hidden[batch.file(table)] = runs
        return hidden

    def recorded(self, run_id: str) -> bool:
        """True when some table holds final rows of `run_id`."""
        return any(run == run_id for _, run in self.final)


class Catalog:
    """Reads and writes the batched catalog tables of one store (see the module docs).

    Tables on disk that nobody registered (written by another version, say) can still be read
    and queried; writing needs a registered schema.
    """

    def __init__(self, location: Location, tables: Mapping[str, TableSchema] | None = None) -> None:
        self.location = location
        self.registered: dict[str, TableSchema] = dict(tables or {})
        self.tables: dict[str, TableSchema] = {**self._recorded_schemas(), **self.registered}
        self._commits: dict[str, Batch] = {}  # batches are immutable: read each commit once

    def _recorded_schemas(self) -> dict[str, TableSchema]:
        try:
            doc = json.loads(self.location.fs.cat_file(self.location.join("tables", SCHEMAS)))
        except (FileNotFoundError, ValueError):
            return {}
        return {name: TableSchema.from_json(entry) for name, entry in doc.items()}

    def _record_schemas(self) -> None:
        """Add the registered schemas to tables/schemas.json (under the lock)."""
        recorded = self._recorded_schemas()
        docs = {name: spec.to_json() for name, spec in recorded.items()}
        changed = {n: s.to_json() for n, s in self.registered.items() if s.to_json() != docs.get(n)}
        if not changed:
            return
        data = json.dumps({**docs, **changed}, indent=1, sort_keys=True).encode()
        write_bytes_atomic(self.location, self.location.join("tables", SCHEMAS), data)

    @property
    def batches_dir(self) -> str:
        return self.location.join("tables", "batches")

    def spec(self, table: str) -> TableSchema:
        """The registered schema of `table`, or CatalogError naming the known tables."""
        try:
            return self.tables[table]
        except KeyError:
            known = ", ".join(self.tables) or "none registered"
            raise CatalogError(f"unknown table {table!r}; known tables: {known}") from None

    def table_names(self) -> list[str]:
        """Registered tables, then tables found in batches that nobody registered."""
        found = {t for b in self.state().batches for t in b.tables}
        return [*self.tables, *sorted(found - set(self.tables))]

    # -- the committed batches ----------------------------------------------------------------

    def state(self) -> CatalogState:
        fs = self.location.fs
        try:
            listed = fs.ls(self.batches_dir, detail=False)
            names = sorted(posixpath.basename(p.rstrip("/")) for p in listed)
        except FileNotFoundError:
            names = []
        committed = []
        for name in names:
            batch = self._commits.get(name) or self._read_commit(name)
            if batch is not None:
                self._commits[name] = batch
                committed.append(batch)
        absorbed_ids = {s for b in committed for s in b.sources}
        live = [b for b in committed if b.id not in absorbed_ids]
        latest: dict[tuple[str, str], str] = {}
        final: set[tuple[str, str]] = set()
        for batch in live:  # commit order: later batches win
            for table, runs in batch.tables.items():
                for run, is_final in runs.items():
                    latest[table, run] = batch.id
                    if is_final:
                        final.add((table, run))
        absorbed = [b for b in committed if b.id in absorbed_ids]
        return CatalogState(live, absorbed, latest, final)

    def _read_commit(self, name: str) -> Batch | None:
        path = posixpath.join(self.batches_dir, name)
        try:
            doc = json.loads(self.location.fs.cat_file(posixpath.join(path, COMMIT)))
        except (FileNotFoundError, ValueError):
            return None  # not committed (a remote write in progress), or damaged: not read
        held = {table: entry["runs"] for table, entry in doc["tables"].items()}
        rows = {table: entry["rows"] for table, entry in doc["tables"].items()}
        return Batch(name, path, held, rows, tuple(doc.get("sources", ())))

    def recorded(self, run_id: str) -> bool:
        """True when a committed batch holds final rows of `run_id` (in any table)."""
        return self.state().recorded(run_id)

    # -- writing ------------------------------------------------------------------------------

    def prepare(self, table: str, run_id: str, rows: Any) -> pa.Table:
        """Rows as a table of exactly the table's schema: missing columns null, types cast.

        ``run_id`` is filled in if absent, ``created_at`` defaults to now; unknown columns, a
        different run_id, or a value outside a column's allowed set are errors.
        """
        spec = self.spec(table)
        schema = spec.schema
        check_name("run_id", run_id)
        try:
            data = to_arrow_table(rows)
        except (TypeError, pa.ArrowException) as exc:
            raise CatalogError(f"{table}: cannot read rows ({exc})") from None
        unknown = sorted(set(data.column_names) - set(schema.names))
        if unknown:
            raise CatalogError(
                f"{table}: unknown column(s) {', '.join(unknown)}; "
                f"columns are: {', '.join(schema.names)}"
            )
        n = data.num_rows
        columns = []
        for f in schema:
            if f.name in data.column_names:
                try:
                    col = data[f.name].cast(f.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise CatalogError(
                        f"{table}.{f.name}: cannot store as {f.type} ({exc})"
                    ) from None
            elif f.name == "run_id":
                col = pa.array([run_id] * n, pa.string())
            elif f.name == "created_at":
                col = pa.array([utc_now()] * n, f.type)
            else:
                col = pa.nulls(n, f.type)
            columns.append(col)
        out = pa.Table.from_arrays(columns, schema=schema)
        if n and not pc.all(pc.equal(out["run_id"], run_id)).as_py():
            raise CatalogError(f"{table}: rows carry a run_id other than {run_id!r}")
        for column, allowed in spec.allowed.items():
            bad = set(out[column].drop_null().to_pylist()) - allowed
            if bad:
                raise CatalogError(
                    f"{table}.{column}: invalid value(s) {sorted(bad)}; allowed: {sorted(allowed)}"
                )
        return out

    def write_batch(
        self, runs: Mapping[str, Mapping[str, Any]], *, final: Iterable[str] = ()
    ) -> Batch | None:
        """Record several runs at once: run id -> {table: rows}; `final` names the runs whose
        rows are final (recorded once). (table, run) pairs already recorded as final are left
        out; returns the committed batch, or None when nothing was left to write."""
        final = set(final)
        prepared = {
            run: {table: self.prepare(table, run, rows) for table, rows in tables.items()}
            for run, tables in runs.items()
        }  # every row is checked before anything is written
        with self.lock():
            self._record_schemas()
            done = self.state().final
            parts: dict[str, list[pa.Table]] = {}
            held: dict[str, dict[str, bool]] = {}
            for run, tables in prepared.items():
                for table, data in tables.items():
                    if (table, run) not in done:
                        parts.setdefault(table, []).append(data)
                        held.setdefault(table, {})[run] = run in final
            if not parts:
                return None
            merged = {t: pa.concat_tables(p) for t, p in parts.items()}
            return self.publish(held, merged)

    def write_run(self, run_id: str, tables: Mapping[str, Any], *, final: bool = True) -> bool:
        """Record one run's tables as one batch; False if they were all already final."""
        return self.write_batch({run_id: tables}, final=[run_id] if final else []) is not None

    def write(self, table: str, run_id: str, rows: Any, *, final: bool = True) -> bool:
        """Record one table's rows of one run (a batch of one)."""
        return self.write_run(run_id, {table: rows}, final=final)

    def publish(
        self,
        held: dict[str, dict[str, bool]],
        tables: Mapping[str, pa.Table],
        sources: Iterable[str] = (),
    ) -> Batch:
        """Commit prepared tables as one batch, as given: `held` says, per table, which runs
        it holds rows of and whether they are final. Callers hold `lock()` (`write_batch` and
        compaction decide what goes in)."""
        batch_id = new_batch_id()
        final_path = posixpath.join(self.batches_dir, batch_id)
        commit = {
            "batch": batch_id,
            "created_at": utc_now().isoformat(),
            "tables": {
                name: {"rows": table.num_rows, "runs": held[name]} for name, table in tables.items()
            },
            "sources": sorted(sources),
        }
        loc = self.location
        with writing_to(loc, f"catalog batch {batch_id}"):
            self._write_batch_files(final_path, tables, commit)
        rows = {name: table.num_rows for name, table in tables.items()}
        batch = Batch(batch_id, final_path, dict(held), rows, tuple(commit["sources"]))
        self._commits[batch_id] = batch
        return batch

    def _write_batch_files(
        self, final_path: str, tables: Mapping[str, pa.Table], commit: dict[str, Any]
    ) -> None:
        loc = self.location
        if loc.local:
            tmp = loc.join("tmp", new_tmp_name("batch"))
            os.makedirs(tmp)
            try:
                for name, table in tables.items():
                    path = posixpath.join(tmp, f"{name}.parquet")
                    pq.write_table(table, path, compression="zstd")
                with open(posixpath.join(tmp, COMMIT), "w") as f:
                    json.dump(commit, f)
                os.makedirs(self.batches_dir, exist_ok=True)
                os.rename(tmp, final_path)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        else:
            for name, table in tables.items():
                with loc.fs.open(posixpath.join(final_path, f"{name}.parquet"), "wb") as f:
                    pq.write_table(table, f, compression="zstd")
            loc.fs.pipe_file(posixpath.join(final_path, COMMIT), json.dumps(commit).encode())

    @contextlib.contextmanager
    def lock(self, name: str = "_lock") -> Iterator[None]:
        """One writer at a time commits (and compacts). Local stores only (flock); elsewhere a
        no-op, so two remote writers may record a run twice (reads show the latest). Another
        `name` is another lock: callers serialising their own read-merge-write use one."""
        if not self.location.local:
            yield
            return
        directory = self.location.join("tables")
        os.makedirs(directory, exist_ok=True)
        fd = os.open(os.path.join(directory, name), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- reading ------------------------------------------------------------------------------

    def read(self, table: str, run_id: str | None = None) -> pa.Table:
        """A table's live rows (one run's, or all), read with pyarrow."""
        state = self.state()
        if run_id is not None:
            where = state.latest.get((table, run_id))
            batches = [b for b in state.batches if b.id == where]
        else:
            batches = [b for b in state.batches if table in b.tables]
        stale = state.stale(table)
        parts = []
        for batch in batches:
            with self.location.fs.open(batch.file(table), "rb") as f:
                data = pq.read_table(f)
            if run_id is not None:
                data = data.filter(pc.equal(data["run_id"], run_id))
            elif batch.file(table) in stale:
                hidden = pa.array(stale[batch.file(table)], pa.string())
                data = data.filter(pc.invert(pc.is_in(data["run_id"], hidden)))
            parts.append(data)
        if not parts:
            if table not in self.tables:
                raise CatalogError(f"no table {table!r} in the catalog")
            return self.tables[table].schema.empty_table()
        return pa.concat_tables(parts, promote_options="permissive")
