"""Feature labels for a run's graph, from the catalog where any exist.

Labels are written by whoever makes them (people, or feature dashboards) into catalog tables
that this module only reads, through whatever columns those tables have:

- `labels`: layer, feature, label, and optionally `created_at` (the newest label of a feature
  wins) and `transcoders_digest` (labels of another transcoder set are ignored);
- `features`: layer, feature, label (and optionally `transcoders_digest`): used for features
  that have no row in `labels`.

A store with neither table gives no labels, and the graph's features keep empty labels.
"""

from __future__ import annotations

import pyarrow as pa

from circuitflow.store import Store, StoreError

LABEL_TABLES = ("labels", "features")  # in order of precedence
NEEDED = {"layer", "feature", "label"}


def feature_labels(store: Store, transcoders_digest: str) -> dict[tuple[int, int], str]:
    """{(layer, feature): label} for a transcoder set, from the catalog's label tables."""
    labels: dict[tuple[int, int], str] = {}
    present = set(store.catalog.table_names())
    for table in reversed(LABEL_TABLES):  # the preferred table overwrites
        if table in present:
            labels |= _labels_of(_read(store, table), transcoders_digest)
    return labels


def _read(store: Store, table: str) -> pa.Table | None:
    try:
        return store.catalog.read(table)
    except (StoreError, pa.ArrowException, OSError):
        return None  # unreadable or empty: no labels from it


def _labels_of(data: pa.Table | None, transcoders_digest: str) -> dict[tuple[int, int], str]:
    if data is None or not set(data.column_names) >= NEEDED:
        return {}
    rows = data.to_pylist()
    if "transcoders_digest" in data.column_names:
        rows = [r for r in rows if r["transcoders_digest"] in (None, transcoders_digest)]
    if "created_at" in data.column_names:
        rows.sort(key=lambda r: (r["created_at"] is not None, r["created_at"] or 0))
    return {
        (int(r["layer"]), int(r["feature"])): str(r["label"])
        for r in rows
        if r["label"] and r["layer"] is not None and r["feature"] is not None
    }
