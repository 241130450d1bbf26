"""circuitflow's content-addressed store: keys, atomic Zarr/Parquet objects, catalog, SQL.

On disk, under a root that is a local path or an fsspec URL (default: $CIRCUITFLOW_STORE, else
``./.circuitflow/store``)::

    objects/<stage>/<key[:2]>/<key>/   manifest.json, tensors/ (Zarr v3), tables/*.parquet
    tables/<table>/shard=<h>/<run_id>.parquet, compact-*.parquet    catalog rows for SQL
    quarantine/<stage>/<key>-<time>-.../   damaged objects moved aside, with REASON.txt
    tmp/                                   writes in progress (and leftovers of killed ones)

Modules, each one thing, in import order: `errors`; `fs` (where a store lives, atomic files,
hashing); `tensors` (Zarr encoding); `arrow` (row data as Arrow tables); `keys` (identities and
names); `objects` (atomic publish, verified reads); `catalog` (per-run tables, registered by
their users); `query` (sandboxed DuckDB); `store` (`Store`: all of them at one root);
`maintenance` (du, verify, gc, compact).

The store is generic: it knows no attribution table and imports nothing from `attribution`,
`tasks` or `flows`. The pipeline registers its tables (`Store(root, tables=...)`).

The names below load their module when first used (PEP 562): a command that only needs
`store.fs` (where the cache lives, say) does not pay for Zarr, PyArrow and DuckDB.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from circuitflow.store.catalog import Catalog, TableSchema, table_schema
    from circuitflow.store.errors import (
        CatalogError,
        ObjectCorrupted,
        ObjectMissing,
        QueryError,
        StoreError,
        StoreWriteError,
    )
    from circuitflow.store.fs import default_root
    from circuitflow.store.keys import (
        DigestCache,
        canonical_json,
        model_digest,
        prompt_digest,
        stage_key,
        transcoder_digest,
    )
    from circuitflow.store.objects import (
        ObjectStore,
        ObjectWriter,
        Problem,
        StoredObject,
        TensorInfo,
    )
    from circuitflow.store.query import QuerySession, run_query
    from circuitflow.store.store import Store
    from circuitflow.store.tensors import SparseCOO

_MODULES = {
    "Catalog": "catalog",
    "TableSchema": "catalog",
    "table_schema": "catalog",
    "CatalogError": "errors",
    "ObjectCorrupted": "errors",
    "ObjectMissing": "errors",
    "QueryError": "errors",
    "StoreError": "errors",
    "StoreWriteError": "errors",
    "default_root": "fs",
    "DigestCache": "keys",
    "canonical_json": "keys",
    "model_digest": "keys",
    "prompt_digest": "keys",
    "stage_key": "keys",
    "transcoder_digest": "keys",
    "ObjectStore": "objects",
    "ObjectWriter": "objects",
    "Problem": "objects",
    "StoredObject": "objects",
    "TensorInfo": "objects",
    "QuerySession": "query",
    "run_query": "query",
    "Store": "store",
    "SparseCOO": "tensors",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'circuitflow.store' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"circuitflow.store.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "Catalog",
    "CatalogError",
    "DigestCache",
    "ObjectCorrupted",
    "ObjectMissing",
    "ObjectStore",
    "ObjectWriter",
    "Problem",
    "QueryError",
    "QuerySession",
    "SparseCOO",
    "Store",
    "StoreError",
    "StoreWriteError",
    "StoredObject",
    "TableSchema",
    "TensorInfo",
    "canonical_json",
    "default_root",
    "model_digest",
    "prompt_digest",
    "run_query",
    "stage_key",
    "table_schema",
    "transcoder_digest",
]
