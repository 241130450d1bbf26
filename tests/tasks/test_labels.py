"""Feature labels from whatever label tables the catalog holds."""

import datetime as dt

import pyarrow as pa

from circuitflow.store import Store, table_schema
from circuitflow.tasks.labels import feature_labels

LABELS = table_schema(
    ("layer", pa.int32()),
    ("feature", pa.int64()),
    ("label", pa.string()),
    ("transcoders_digest", pa.string()),
    ("created_at", pa.timestamp("us", tz="UTC")),
)
FEATURES = table_schema(("layer", pa.int32()), ("feature", pa.int64()), ("label", pa.string()))


def test_no_label_tables_no_labels(tmp_path):
    assert feature_labels(Store(str(tmp_path)), "abc") == {}


def test_newest_label_of_the_same_set_wins_over_feature_tables(tmp_path):
    store = Store(str(tmp_path), tables={"labels": LABELS, "features": FEATURES})
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    store.catalog.write("labels", "alice", [
        {"layer": 0, "feature": 7, "label": "old", "transcoders_digest": "abc", "created_at": t0},
        {"layer": 1, "feature": 2, "label": "other set", "transcoders_digest": "zzz",
         "created_at": t0},
    ])  # fmt: skip
    store.catalog.write("labels", "bob", [
        {"layer": 0, "feature": 7, "label": "Texas cities", "transcoders_digest": "abc",
         "created_at": t0 + dt.timedelta(hours=1)},
    ])  # fmt: skip
    store.catalog.write("features", "auto", [
        {"layer": 0, "feature": 7, "label": "auto: Dallas / Houston"},
        {"layer": 2, "feature": 5, "label": "auto: Austin"},
    ])  # fmt: skip
    # A reader that registered none of these tables still finds them on disk.
    assert feature_labels(Store(str(tmp_path)), "abc") == {
        (0, 7): "Texas cities",
        (2, 5): "auto: Austin",
    }
