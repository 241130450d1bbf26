"""The catalog: per-run rows (runs, nodes, edges, ...) as Parquet files, for SQL across runs.

Layout: ``<root>/tables/<table>/shard=<h>/<run_id>.parquet``, one file per run per table, where
``<h>`` is the first hex digit of SHA-256(run_id). The shard is a hive partition that exists for
maintenance, not for queries: it bounds how many files `compact` merges into one and how many
compacted files a writer must consult, while every run's file still has exactly one place to go.
Queries select runs with ``run_id`` filters, which DuckDB answers from Parquet statistics (compacted
files are written sorted by run_id); the ``shard`` column is hidden from the SQL views.

Tables. The store knows none: the code that fills the catalog registers each table's schema
(`TableSchema`), and `Store(root, tables=...)` passes the registry on.

Writing. A run's file is written under ``<root>/tmp`` and linked into place, so a reader sees all
of it or nothing, and a second write for the same run and table fails unless ``replace=True``.
`write_run` writes a run's tables in order, so the table that marks a run complete goes last.

Compaction (see `store.maintenance.compact`) merges a shard's files into ``compact-*.parquet``
whose Parquet metadata lists the file names it absorbed (``circuitflow.sources``). Readers skip
files listed there, so a compaction interrupted between publishing the merged file and deleting its
sources shows each row once. Runs are immutable once compacted: writing them again is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import posixpath
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from circuitflow.store.arrow import to_arrow_table
from circuitflow.store.errors import CatalogError
from circuitflow.store.fs import Location, new_tmp_name, publish_file, utc_now
from circuitflow.store.keys import check_name


@dataclass(frozen=True)
class TableSchema:
    """One catalog table, as the code that fills it declares it.

    schema:      the columns, `run_id` first (every file holds one run's rows)
    allowed:     columns restricted to a few values (nulls allowed), e.g. {"kind": {...}}
    object_keys: a column naming stored objects that the table's runs use; `gc` keeps those
    """

    schema: pa.Schema
    allowed: Mapping[str, frozenset[str]] = field(default_factory=dict)
    object_keys: str | None = None


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


SOURCES_META = b"circuitflow.sources"
COMPACT_PREFIX = "compact-"
N_SHARDS = 16


def shard_of(run_id: str) -> str:
    return hashlib.sha256(run_id.encode()).hexdigest()[: len(f"{N_SHARDS - 1:x}")]


def read_sources(fs: Any, path: str) -> list[str]:
    """The file names a compacted file absorbed (empty for a run's own file)."""
    if not posixpath.basename(path).startswith(COMPACT_PREFIX):
        return []
    with fs.open(path, "rb") as f:
        meta = pq.read_schema(f).metadata or {}
    return list(json.loads(meta.get(SOURCES_META, b"[]")))


@dataclass
class TableFiles:
    """A consistent view of one table's files: what to read and what compaction superseded."""

    table: str
    files: list[str] = field(default_factory=list)  # to read
    superseded: list[str] = field(default_factory=list)  # present on disk, but already compacted


class Catalog:
    """Reads and writes the per-run catalog tables of one store.

    The store knows no table of its own: whoever writes registers its tables (`tables`, name ->
    TableSchema). Tables found on disk but not registered (written by another version, say) can
    still be read and queried; writing needs a registered schema.
    """

    def __init__(self, location: Location, tables: Mapping[str, TableSchema] | None = None) -> None:
        self.location = location
        self.tables: dict[str, TableSchema] = dict(tables or {})

    def spec(self, table: str) -> TableSchema:
        """The registered schema of `table`, or CatalogError naming the known tables."""
        try:
            return self.tables[table]
        except KeyError:
            known = ", ".join(self.tables) or "none registered"
            raise CatalogError(f"unknown table {table!r}; known tables: {known}") from None

    def table_names(self) -> list[str]:
        """Registered tables, then tables present on disk that nobody registered."""
        try:
            entries = self.location.fs.ls(self.location.join("tables"), detail=True)
        except FileNotFoundError:
            entries = []
        on_disk = sorted(
            posixpath.basename(e["name"].rstrip("/")) for e in entries if e["type"] == "directory"
        )
        return [*self.tables, *(t for t in on_disk if t not in self.tables)]

    def table_dir(self, table: str) -> str:
        check_name("table", table)
        return self.location.join("tables", table)

    def run_path(self, table: str, run_id: str) -> str:
        check_name("run_id", run_id)
        return posixpath.join(
            self.table_dir(table), f"shard={shard_of(run_id)}", f"{run_id}.parquet"
        )

    # -- reading the file set ---------------------------------------------------------------

    def shard_dirs(self, table: str) -> list[str]:
        try:
            entries = self.location.fs.ls(self.table_dir(table), detail=True)
        except FileNotFoundError:
            return []
        return sorted(
            e["name"].rstrip("/")
            for e in entries
            if e["type"] == "directory"
            and posixpath.basename(e["name"].rstrip("/")).startswith("shard=")
        )

    def shard_listing(self, shard_dir: str) -> tuple[list[str], set[str]]:
        """(every .parquet file in a shard, names superseded by the shard's compacted files)."""
        fs = self.location.fs
        try:
            names = sorted(p for p in fs.ls(shard_dir, detail=False) if str(p).endswith(".parquet"))
        except FileNotFoundError:
            return [], set()
        superseded: set[str] = set()
        for path in names:
            superseded.update(read_sources(fs, path))
        return names, superseded

    def files(self, table: str) -> TableFiles:
        out = TableFiles(table)
        for shard_dir in self.shard_dirs(table):
            names, superseded = self.shard_listing(shard_dir)
            for path in names:
                target = out.superseded if posixpath.basename(path) in superseded else out.files
                target.append(path)
        return out

    def holds(self, table: str, run_id: str) -> bool:
        """Whether `run_id` has written `table` (its own file, or one a compaction absorbed)."""
        path = self.run_path(table, run_id)
        if self.location.fs.exists(path):
            return True
        _, superseded = self.shard_listing(posixpath.dirname(path))
        return posixpath.basename(path) in superseded

    # -- writing ----------------------------------------------------------------------------

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

    def write(self, table: str, run_id: str, rows: Any, *, replace: bool = False) -> str:
        """Write one run's rows of one table as one Parquet file, atomically; return its path."""
        data = self.prepare(table, run_id, rows)
        final = self.run_path(table, run_id)
        loc = self.location
        if not loc.local:
            with self.lock(table, exclusive=False):
                self._check_not_compacted(table, run_id, final)
                if not replace and loc.fs.exists(final):
                    raise CatalogError(self._exists_message(table, run_id))
                with loc.fs.open(final, "wb") as f:
                    pq.write_table(data, f, compression="zstd")
            return final
        tmp = loc.join("tmp", new_tmp_name(f"cat-{table}") + ".parquet")
        os.makedirs(posixpath.dirname(tmp), exist_ok=True)
        pq.write_table(data, tmp, compression="zstd")
        with self.lock(table, exclusive=False):
            try:
                self._check_not_compacted(table, run_id, final)
                publish_file(loc, tmp, final, exclusive=not replace)
            except FileExistsError:
                raise CatalogError(self._exists_message(table, run_id)) from None
            finally:
                if os.path.lexists(tmp):
                    os.unlink(tmp)
        return final

    def _exists_message(self, table: str, run_id: str) -> str:
        return (
            f"run {run_id!r} already has rows in table {table!r}; each run writes a table once "
            "(pass replace=True to overwrite them)"
        )

    def _check_not_compacted(self, table: str, run_id: str, final: str) -> None:
        _, superseded = self.shard_listing(posixpath.dirname(final))
        if posixpath.basename(final) in superseded:
            raise CatalogError(
                f"run {run_id!r} of table {table!r} was already compacted; "
                "runs are immutable once compacted: write the results under a new run_id"
            )

    def write_run(self, run_id: str, tables: Mapping[str, Any], *, replace: bool = False) -> None:
        """Write several tables of one run, in the mapping's order: put the table whose row
        marks a run complete last, so that readers never see it before the others."""
        for table, rows in tables.items():
            self.write(table, run_id, rows, replace=replace)

    @contextlib.contextmanager
    def lock(self, table: str, *, exclusive: bool) -> Iterator[None]:
        """Writers share, compaction excludes. Local stores only (flock); elsewhere a no-op."""
        if not self.location.local:
            yield
            return
        directory = self.table_dir(table)
        os.makedirs(directory, exist_ok=True)
        fd = os.open(os.path.join(directory, "_lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    # -- convenience reads (queries go through store.query) ---------------------------------

    def read(self, table: str, run_id: str | None = None) -> pa.Table:
        """A table's rows (one run's, or all), read with pyarrow."""
        schema = self.tables[table].schema if table in self.tables else None
        files = self.files(table).files
        if run_id is not None:
            shard = posixpath.dirname(self.run_path(table, run_id))
            files = [
                f
                for f in files
                if posixpath.dirname(f) == shard
                and (f.endswith(f"/{run_id}.parquet") or "/" + COMPACT_PREFIX in f)
            ]
        if not files:
            if schema is None:
                raise CatalogError(f"no table {table!r} in the catalog")
            return schema.empty_table()
        dataset = ds.dataset(files, schema=schema, format="parquet", filesystem=self._arrow_fs())
        flt = None if run_id is None else pc.field("run_id") == run_id
        return dataset.to_table(filter=flt)

    def _arrow_fs(self) -> Any:
        if self.location.local:
            return None
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        return PyFileSystem(FSSpecHandler(self.location.fs))
