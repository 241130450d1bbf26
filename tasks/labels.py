"""Feature labels for a run's graph, from the catalog where any exist.

Labels are written by whoever makes them (people, or feature dashboards) into catalog tables
that this module only reads, through whatever columns those tables have:

- `labels`: layer, feature, label, and optionally `created_at` (the newest label of a feature
  wins) and `transcoders_digest` (labels of another transcoder set are ignored);
- `features`: layer, feature, label (and optionally `transcoders_digest`): used for features
  that have no row in `labels`.

A store with neither table gives no labels, and the graph's features keep empty labels.

Human labels (`set_label`: `circuitflow label`, the viewer) go into `labels`, one row per label
ever set, with its author and time: a label is never overwritten, the newest simply wins, and
recomputing dashboards touches only `features`. Setting a label also rewrites the `label`
column of the transcoder set's `features` rows, so that `features.label` is always the newest
human label where one exists, else the automatic one.
"""

from __future__ import annotations

import datetime as dt
import getpass
import uuid

import pyarrow as pa

from circuitflow.store import Store, StoreError
from circuitflow.tasks.declare import CatalogTable
from circuitflow.tasks.subgraphs import exclusive

LABEL_TABLES = ("labels", "features")  # in order of precedence
NEEDED = {"layer", "feature", "label"}
MAX_LABEL = 200

LABELS = CatalogTable(
    "labels",
    (
        ("layer", pa.int64()),
        ("feature", pa.int64()),
        ("label", pa.string()),
        ("author", pa.string()),
        ("transcoders_digest", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
    ),
)


class LabelError(ValueError):
    """A label that cannot be set, and why."""


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


def human_labels(store: Store, transcoders_digest: str) -> dict[tuple[int, int], str]:
    """{(layer, feature): newest human label} of a transcoder set (the `labels` table only)."""
    if LABELS.name not in store.catalog.table_names():
        return {}
    return _labels_of(_read(store, LABELS.name), transcoders_digest)


def set_label(
    store: Store,
    transcoders_digest: str,
    layer: int,
    feature: int,
    text: str,
    author: str | None = None,
    *,
    n_layers: int | None = None,
    n_features: int | None = None,
) -> dict:
    """Record a human label (see the module docs); returns its row."""
    text = text.strip()
    if not text or len(text) > MAX_LABEL:
        raise LabelError(f"a label is 1 to {MAX_LABEL} characters")
    if layer < 0 or (n_layers is not None and layer >= n_layers):
        raise LabelError(f"layer {layer} is not a layer of the transcoders (0..{n_layers - 1})")
    if feature < 0 or (n_features is not None and feature >= n_features):
        raise LabelError(f"feature {feature} is not a feature of layer {layer}")
    row = {
        "layer": layer,
        "feature": feature,
        "label": text,
        "author": author or _user(),
        "transcoders_digest": transcoders_digest,
        "created_at": dt.datetime.now(dt.UTC),
    }
    # Each label is its own entry (final: recorded once, never superseded).
    label_id = "label-" + row["created_at"].strftime("%Y%m%dT%H%M%S%f") + uuid.uuid4().hex[:6]
    store.catalog.write(LABELS.name, label_id, [row])
    with exclusive(store):
        _refresh_features(store, transcoders_digest, (layer, feature))
    return row


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _refresh_features(store: Store, digest: str, changed: tuple[int, int]) -> None:
    """Rewrite `features.label` from the newest human labels in every job of the set that
    lists the changed feature (all human labels, so that a racing label is not undone)."""
    if "features" not in store.catalog.table_names():
        return
    human = human_labels(store, digest)
    data = _read(store, "features")
    if data is None or "transcoders_digest" not in data.column_names:
        return
    jobs: dict[str, list[dict]] = {}
    for row in data.to_pylist():
        if row["transcoders_digest"] == digest:
            jobs.setdefault(row["run_id"], []).append(row)
    for job_id, rows in jobs.items():
        if not any((r["layer"], r["feature"]) == changed for r in rows):
            continue
        for r in rows:
            r["label"] = human.get((r["layer"], r["feature"])) or r["auto_label"]
        store.catalog.write("features", job_id, rows, final=False)
