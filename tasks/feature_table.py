"""The `features` catalog table: one row per feature of a dashboard job (see `tasks.features`).

Declared apart from the code that fills it so that the catalog's list of tables
(`tasks.catalog`) can name it without importing the dashboards' machinery.
"""

from __future__ import annotations

import pyarrow as pa

from circuitflow.tasks.declare import CatalogTable

FEATURES = CatalogTable(
    "features",
    (
        ("model", pa.string()),
        ("model_digest", pa.string()),
        ("transcoders", pa.string()),
        ("transcoders_digest", pa.string()),
        ("corpus_digest", pa.string()),
        ("layer", pa.int64()),
        ("feature", pa.int64()),
        ("frequency", pa.float64()),
        ("mean_activation", pa.float64()),
        ("max_activation", pa.float64()),
        ("top_tokens", pa.list_(pa.string())),  # activating tokens of its top contexts
        ("promoted", pa.list_(pa.string())),  # tokens its direct logit effect raises most
        ("suppressed", pa.list_(pa.string())),
        ("auto_label", pa.string()),
        ("label", pa.string()),  # the newest human label, else auto_label
        ("object_key", pa.string()),  # the stored dashboards (kept by `store gc`)
        ("created_at", pa.timestamp("us", tz="UTC")),
    ),
    object_keys="object_key",
)
