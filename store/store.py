"""`Store`: one root, its objects, its catalog and SQL over the catalog.

    store = Store("runs/", tables=PIPELINE_TABLES)   # a local path or an fsspec URL
    store.writer(...), store.get(...)                # objects (see store.objects)
    store.catalog.write(...), store.catalog.read(...)  # per-run tables (see store.catalog)
    store.query("SELECT ...")                        # read-only DuckDB (see store.query)

`Store()` uses $CIRCUITFLOW_STORE, else ./.circuitflow/store (see `store.fs.default_root`).
Extra keyword arguments are fsspec storage options (credentials, endpoints) for remote roots.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cached_property
from typing import Any

import pyarrow as pa

from circuitflow.store.catalog import Catalog, TableSchema
from circuitflow.store.objects import ObjectStore
from circuitflow.store.query import run_query


class Store(ObjectStore):
    """A content-addressed store: objects, plus the catalog tables registered in `tables`."""

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        tables: Mapping[str, TableSchema] | None = None,
        **storage_options: Any,
    ) -> None:
        super().__init__(root, **storage_options)
        self.tables = dict(tables or {})

    @cached_property
    def catalog(self) -> Catalog:
        return Catalog(self.location, self.tables)

    def query(self, sql: str) -> pa.Table:
        """Run a read-only SQL query over the catalog tables (see `store.query`)."""
        return run_query(self.catalog, sql)
