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
"""

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
from circuitflow.store.objects import ObjectStore, ObjectWriter, Problem, StoredObject, TensorInfo
from circuitflow.store.query import QuerySession, run_query
from circuitflow.store.store import Store
from circuitflow.store.tensors import SparseCOO

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
