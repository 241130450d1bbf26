"""circuitflow's content-addressed store: keys, atomic Zarr/Parquet objects, catalog, SQL.

On disk, under a root that is a local path or an fsspec URL (default: $CIRCUITFLOW_STORE, else
``./.circuitflow/store``)::

    objects/<stage>/<key[:2]>/<key>/   manifest.json, tensors/ (Zarr v3), tables/*.parquet
    tables/<table>/shard=<h>/<run_id>.parquet, compact-*.parquet    catalog rows for SQL
    quarantine/<stage>/<key>-<time>-.../   damaged objects moved aside, with REASON.txt
    tmp/                                   writes in progress (and leftovers of killed ones)

Modules, each one thing: `keys` (identities), `tensors` (Zarr encoding), `objects` (Store,
atomic publish, verified reads), `catalog` (per-run tables), `query` (sandboxed DuckDB),
`maintenance` (ls, du, verify, gc, compact). This package imports nothing from `attribution`,
`tasks` or `flows`.
"""

from store.catalog import SCHEMAS, Catalog
from store.errors import CatalogError, ObjectCorrupted, ObjectMissing, QueryError, StoreError
from store.fs import default_root
from store.keys import (
    DigestCache,
    canonical_json,
    model_digest,
    prompt_digest,
    stage_key,
    transcoder_digest,
)
from store.objects import ObjectWriter, Problem, Store, StoredObject, TensorInfo
from store.query import QuerySession, run_query
from store.tensors import SparseCOO

__all__ = [
    "SCHEMAS",
    "Catalog",
    "CatalogError",
    "DigestCache",
    "ObjectCorrupted",
    "ObjectMissing",
    "ObjectWriter",
    "Problem",
    "QueryError",
    "QuerySession",
    "SparseCOO",
    "Store",
    "StoreError",
    "StoredObject",
    "TensorInfo",
    "canonical_json",
    "default_root",
    "model_digest",
    "prompt_digest",
    "run_query",
    "stage_key",
    "transcoder_digest",
]
