"""Reading a run's analysis back: its rows and captured tensors, without torch or the pipeline.

What analysis functions returned is recorded by `tasks.analysis_table`: each analysis of a run
is its own catalog entry (`run_id` = the analysis id, `analysed_run` = the run). These readers
take a run's latest analysis. For a viewer, the influence trace of a run is

    store = Store(root)                                   # circuitflow.store
    trace = captured_series(store, run_id, "influence_iteration", "term", phase="node")
    # numpy (n_steps, N): row i is term i + 1 of the influence series, in node order

kept when the run's analysis attached `trace` (values [term]) to influence_iteration, as
configs/analysis/seed_walkthrough.yaml does; phase "edge" gives the node-pruned graph's series
(n_steps, n_kept), whose node indices are the `kept` value of prune_nodes_end.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from circuitflow.store import Store

TABLE = "analysis"
OBJECTS = "analysis"  # the store's directory of analysis objects (see tasks.analysis_table)


def analyses(store: Store, run_id: str) -> list[str]:
    """The ids of a run's analyses, oldest first: `<run id>.analysis-<UTC time>`, found in the
    catalog's commit records without reading any table."""
    prefix = f"{run_id}.analysis-"
    latest = store.catalog.state().latest  # (table, run id) -> batch
    return sorted(run for table, run in latest if table == TABLE and run.startswith(prefix))


def read_analysis(
    store: Store, run_id: str, point: str | None = None, analysis_id: str | None = None
) -> list[dict[str, Any]]:
    """A run's analysis rows (its latest analysis unless `analysis_id` is given; one point's, or
    all), in the order attribution reached them. Labels and plain values are parsed JSON."""
    if analysis_id is None:
        ids = analyses(store, run_id)
        if not ids:
            return []
        analysis_id = ids[-1]
    rows = store.catalog.read(TABLE, analysis_id).to_pylist()
    rows = [r for r in rows if point is None or r["point"] == point]
    for row in rows:
        row["labels"] = json.loads(row["labels"] or "{}")
        if row["kind"] == "value" and row["value"] is not None:
            row["value"] = json.loads(row["value"])
    return sorted(rows, key=lambda r: r["sequence"])  # stable: a firing's keys keep their order


def read_array(store: Store, row: Mapping[str, Any]) -> np.ndarray:
    """The array a row of kind "tensor" names, from its analysis object (numpy; bfloat16 values
    come as their raw bits, see `StoredObject.tensor`)."""
    if row["kind"] != "tensor":
        raise ValueError(f"row {row['point']}/{row['key']} holds no tensor (kind {row['kind']})")
    return store.open(OBJECTS, row["object_key"]).tensor(row["tensor"])


def captured_series(
    store: Store, run_id: str, point: str, key: str, **labels: Any
) -> np.ndarray | None:
    """The arrays kept under `key` at every firing of `point` whose labels match, stacked in
    firing order (see the module docs); None when the run's latest analysis kept none."""
    rows = [
        r
        for r in read_analysis(store, run_id, point)
        if r["key"] == key
        and r["kind"] == "tensor"
        and all(r["labels"].get(k) == v for k, v in labels.items())
    ]
    if not rows:
        return None
    first = rows[0]["function"]  # two functions keeping the same key: the first one's series
    return np.stack([read_array(store, r) for r in rows if r["function"] == first])
