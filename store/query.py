"""SQL over the catalog: a sandboxed, read-only DuckDB connection per query session.

DuckDB is only the query engine (a database file admits one writer process; the data are the
catalog's Parquet files). A session is an in-memory DuckDB with one view per catalog table, built
from the files present when the session opens, and then locked down:

- ``enable_external_access = false`` with ``allowed_directories = [<store root>]`` (local stores):
  files outside the store cannot be read, and extensions cannot be installed or loaded;
  remote stores are exposed as pyarrow datasets instead, with no file access at all;
- ``lock_configuration = true``: the query cannot undo any of that;
- only SELECT-like statements run (SELECT, WITH, FROM, VALUES, DESCRIBE, SHOW, SUMMARIZE,
  EXPLAIN), one per call: the allowed directory is writable as far as DuckDB is concerned, so
  COPY, EXPORT, ATTACH, CREATE, INSERT, SET and PRAGMA are refused before DuckDB sees them.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa

from circuitflow.store.catalog import Catalog, CatalogState
from circuitflow.store.errors import QueryError

ALLOWED_STATEMENTS = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def check_sql(sql: str) -> str:
    """Refuse anything but a single read-only statement; return it."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(f"invalid SQL: {exc}") from None
    if len(statements) != 1:
        raise QueryError(f"expected exactly one SQL statement, got {len(statements)}")
    kind = statements[0].type
    if kind not in ALLOWED_STATEMENTS:
        name = str(kind).rsplit(".", 1)[-1]
        raise QueryError(
            f"only read-only queries are allowed (SELECT, WITH, DESCRIBE, EXPLAIN...), not {name}"
        )
    return sql


class QuerySession:
    """A read-only SQL session over a catalog's tables (registered ones, and any on disk)."""

    def __init__(self, catalog: Catalog, *, threads: int | None = None) -> None:
        self.catalog = catalog
        config: dict[str, Any] = {}
        if threads:
            config["threads"] = threads
        self._con = duckdb.connect(":memory:", config=config)
        state = catalog.state()
        for table in catalog.table_names():
            self._create_view(catalog, table, state)
        self._lock_down()

    def _create_view(self, catalog: Catalog, table: str, state: CatalogState) -> None:
        """A view over the table's live files, hiding rows of runs recorded again later."""
        files, stale = state.files(table), state.stale(table)
        con = self._con
        if not files:
            if table in catalog.tables:
                con.register(f"_empty_{table}", catalog.tables[table].schema.empty_table())
                con.execute(f"CREATE VIEW {table} AS SELECT * FROM _empty_{table}")
            return
        if not catalog.location.local:
            # Remote files are read through pyarrow's filesystem layer, not DuckDB's.
            con.register(f"_data_{table}", catalog.read(table))
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM _data_{table}")
            return
        listing = "[" + ", ".join(_literal(f) for f in files) + "]"
        if not stale:
            con.execute(
                f"CREATE VIEW {table} AS SELECT * FROM read_parquet({listing}, union_by_name=true)"
            )
            return
        hidden = " OR ".join(
            f"(filename = {_literal(path)} AND run_id IN ({', '.join(map(_literal, runs))}))"
            for path, runs in stale.items()
        )
        con.execute(
            f"CREATE VIEW {table} AS SELECT * EXCLUDE (filename) FROM read_parquet({listing}, "
            f"union_by_name=true, filename=true) WHERE NOT ({hidden})"
        )

    def _lock_down(self) -> None:
        loc = self.catalog.location
        con = self._con
        if loc.local:
            con.execute(f"SET allowed_directories=[{_literal(loc.root.rstrip('/') + '/')}]")
        con.execute("SET autoinstall_known_extensions=false")
        con.execute("SET autoload_known_extensions=false")
        con.execute("SET enable_external_access=false")
        con.execute("SET lock_configuration=true")

    def relation(self, sql: str) -> duckdb.DuckDBPyRelation:
        check_sql(sql)
        try:
            rel = self._con.sql(sql)
        except duckdb.Error as exc:
            raise QueryError(_explain_error(exc)) from None
        if rel is None:
            raise QueryError("the statement returned no result")
        return rel

    def arrow(self, sql: str) -> pa.Table:
        try:
            return self.relation(sql).to_arrow_table()
        except duckdb.Error as exc:
            raise QueryError(_explain_error(exc)) from None

    def batches(self, sql: str, batch_rows: int = 65536) -> pa.RecordBatchReader:
        try:
            return self.relation(sql).to_arrow_reader(batch_rows)
        except duckdb.Error as exc:
            raise QueryError(_explain_error(exc)) from None

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> QuerySession:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _explain_error(exc: Exception) -> str:
    text = str(exc)
    if isinstance(exc, duckdb.PermissionException) or "disabled by configuration" in text:
        return f"queries may only read the store's own files: {text}"
    return text


def run_query(catalog: Catalog, sql: str) -> pa.Table:
    """Run one read-only query and return all rows.

    Retried once on a vanished file: a concurrent `compact` may delete files between the moment
    DuckDB lists them and the moment it reads them.
    """
    for attempt in (1, 2):
        with QuerySession(catalog) as session:
            try:
                return session.arrow(sql)
            except QueryError as exc:
                if attempt == 2 or "No such file" not in str(exc):
                    raise
    raise AssertionError("unreachable")
