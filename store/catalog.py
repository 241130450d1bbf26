"""The catalog: per-run rows (runs, nodes, edges, ...) as Parquet files, for SQL across runs.

Layout: ``<root>/tables/<table>/shard=<h>/<run_id>.parquet``, one file per run per table, where
``<h>`` is the first hex digit of SHA-256(run_id). The shard is a hive partition that exists for
maintenance, not for queries: it bounds how many files `compact` merges into one and how many
compacted files a writer must consult, while every run's file still has exactly one place to go.
Queries select runs with ``run_id`` filters, which DuckDB answers from Parquet statistics (compacted
files are written sorted by run_id); the ``shard`` column is hidden from the SQL views.

Writing. A run's file is written under ``<root>/tmp`` and linked into place, so a reader sees all
of it or nothing, and a second write for the same run and table fails unless ``replace=True``.
`write_run` writes every table of a run with ``runs`` last: a row in ``runs`` means the run's
other rows are all there.

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

from store.errors import CatalogError
from store.fs import Location, new_tmp_name, publish_file, utc_now
from store.objects import check_name, to_arrow_table

_TS = pa.timestamp("us", tz="UTC")


def _schema(*fields: tuple[str, pa.DataType]) -> pa.Schema:
    return pa.schema(
        [pa.field("run_id", pa.string(), nullable=False)]
        + [pa.field(name, dtype) for name, dtype in fields]
    )


SCHEMAS: dict[str, pa.Schema] = {
    "runs": _schema(
        ("created_at", _TS),
        ("model", pa.string()),
        ("model_digest", pa.string()),
        ("transcoders", pa.string()),
        ("transcoders_digest", pa.string()),
        ("prompt", pa.string()),
        ("prompt_hash", pa.string()),
        ("n_tokens", pa.int32()),
        ("node_threshold", pa.float64()),
        ("edge_threshold", pa.float64()),
        ("max_feature_nodes", pa.int64()),
        ("n_active_features", pa.int64()),
        ("n_selected_features", pa.int64()),
        ("n_nodes_kept", pa.int64()),
        ("n_edges_kept", pa.int64()),
        ("replacement_score", pa.float64()),
        ("completeness_score", pa.float64()),
        ("status", pa.string()),
        ("error", pa.string()),
        # beyond the minimum:
        ("seconds", pa.float64()),  # wall time of the whole run
        ("params", pa.string()),  # canonical JSON of every run parameter
        ("code_version", pa.string()),
    ),
    "nodes": _schema(
        ("node_id", pa.string()),
        ("kind", pa.string()),
        ("layer", pa.int32()),
        ("pos", pa.int32()),
        ("feature", pa.int64()),
        ("token", pa.string()),
        ("activation", pa.float64()),
        ("influence", pa.float64()),
        ("cumulative_influence", pa.float64()),
        ("kept", pa.bool_()),
        ("token_id", pa.int64()),  # token and logit nodes
        ("matrix_index", pa.int64()),  # row/column in the run's adjacency matrix
    ),
    "edges": _schema(
        ("source", pa.string()),
        ("target", pa.string()),
        ("weight", pa.float64()),
        ("score", pa.float64()),
    ),
    "logits": _schema(
        ("rank", pa.int32()),
        ("token_id", pa.int64()),
        ("token", pa.string()),
        ("prob", pa.float64()),
        ("logit", pa.float64()),
    ),
    "influence_traces": _schema(
        ("phase", pa.string()),
        ("iteration", pa.int32()),
        ("l1", pa.float64()),
        ("max", pa.float64()),
        ("nnz", pa.int64()),
    ),
    "stage_events": _schema(
        ("stage", pa.string()),
        ("key", pa.string()),
        ("status", pa.string()),
        ("seconds", pa.float64()),
        ("created_at", _TS),
    ),
}

# Columns restricted to a few values (nulls allowed).
ALLOWED_VALUES: dict[tuple[str, str], frozenset[str]] = {
    ("nodes", "kind"): frozenset({"feature", "error", "token", "logit"}),
    ("influence_traces", "phase"): frozenset({"node", "edge"}),
    ("stage_events", "status"): frozenset({"computed", "cached"}),
}

SOURCES_META = b"circuitflow.sources"
COMPACT_PREFIX = "compact-"
N_SHARDS = 16


def shard_of(run_id: str) -> str:
    return hashlib.sha256(run_id.encode()).hexdigest()[: len(f"{N_SHARDS - 1:x}")]


def schema_of(table: str) -> pa.Schema:
    try:
        return SCHEMAS[table]
    except KeyError:
        raise CatalogError(f"unknown table {table!r}; known tables: {', '.join(SCHEMAS)}") from None


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
    """Reads and writes the per-run catalog tables of one store."""

    def __init__(self, location: Location) -> None:
        self.location = location

    def table_dir(self, table: str) -> str:
        schema_of(table)
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

    # -- writing ----------------------------------------------------------------------------

    def prepare(self, table: str, run_id: str, rows: Any) -> pa.Table:
        """Rows as a table of exactly the table's schema: missing columns null, types cast.

        ``run_id`` is filled in if absent, ``created_at`` defaults to now; unknown columns, a
        different run_id, or a value outside a column's allowed set are errors.
        """
        schema = schema_of(table)
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
        for (tname, column), allowed in ALLOWED_VALUES.items():
            if tname == table:
                bad = set(out[column].drop_null().to_pylist()) - allowed
                if bad:
                    raise CatalogError(
                        f"{table}.{column}: invalid value(s) {sorted(bad)}; "
                        f"allowed: {sorted(allowed)}"
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
        """Write several tables of one run, ``runs`` last (it marks the run complete)."""
        for table in sorted(tables, key=lambda t: t == "runs"):
            self.write(table, run_id, tables[table], replace=replace)

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
        schema = schema_of(table)
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
            return schema.empty_table()
        dataset = ds.dataset(files, schema=schema, format="parquet", filesystem=self._arrow_fs())
        flt = None if run_id is None else pc.field("run_id") == run_id
        return dataset.to_table(filter=flt)

    def _arrow_fs(self) -> Any:
        if self.location.local:
            return None
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        return PyFileSystem(FSSpecHandler(self.location.fs))
