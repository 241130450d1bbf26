"""Catalog tables for the store's own tests: the store registers none itself."""

import pyarrow as pa

from circuitflow.store import table_schema

TS = pa.timestamp("us", tz="UTC")

TABLES = {
    "runs": table_schema(
        ("created_at", TS), ("prompt", pa.string()), ("n_tokens", pa.int32()),
        ("status", pa.string()),
    ),
    "nodes": table_schema(
        ("node_id", pa.string()), ("kind", pa.string()), ("layer", pa.int32()),
        ("pos", pa.int32()), ("feature", pa.int64()), ("influence", pa.float64()),
        ("kept", pa.bool_()),
        allowed={"kind": frozenset({"feature", "error", "token", "logit"})},
    ),
    "edges": table_schema(
        ("source", pa.string()), ("target", pa.string()), ("weight", pa.float64()),
    ),
    "logits": table_schema(("rank", pa.int32()), ("prob", pa.float64())),
    "stage_events": table_schema(
        ("stage", pa.string()), ("key", pa.string()), ("status", pa.string()), ("created_at", TS),
        allowed={"status": frozenset({"computed", "cached"})},
        object_keys="key",
    ),
}  # fmt: skip
