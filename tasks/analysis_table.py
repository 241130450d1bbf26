"""What analysis functions returned, kept apart from the stage objects: a catalog table and one
store object per run.

- The catalog table `analysis` has one row per returned value (and per failure) of a run: the
  point, the stage that fired it, the function, the firing number, the point's labels (its
  scalar values as JSON, e.g. {"iteration": 3, "phase": "node"}), the key the function gave,
  and a summary (shape, dtype, min/max/mean, non-zeros, top-k values and flat indices). Rows of
  kind "value" carry a plain value as JSON; rows of kind "error" carry the failure.
- Returned tensors (kind "tensor") are stored, whole, in one object of the store per run under
  `objects/analysis/<key>/`: the row names the object (`object_key`) and the array in it
  (`tensor`). The object's key digests the run id and the tensors, and `gc` keeps the objects
  the table names; the stage objects are never touched.

A run analysed again replaces its rows (the catalog holds the latest analysis of each run).

Reading back (the viewer's influence trace, `circuitflow analysis`):

    rows = read_analysis(store, run_id, "influence_iteration")     # list of dicts, in order
    trace = captured_series(store, run_id, "influence_iteration", "term", phase="node")
    # (n_steps, N): row i is the i-th term of the influence series on the whole graph
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import torch

from circuitflow.attribution.analysis import POINTS, Capture, Summary, summarize
from circuitflow.store import Store, canonical_json
from circuitflow.store.tensors import to_storage
from circuitflow.tasks.declare import CatalogTable

OBJECTS = "analysis"  # the store's stage directory for analysis objects
OBJECT_VERSION = 1
TOPK = 5  # elements kept in the summary of a returned tensor
KINDS = frozenset({"tensor", "summary", "value", "error"})

ANALYSIS = CatalogTable(
    "analysis",
    (
        ("point", pa.string()),
        ("stage", pa.string()),
        ("function", pa.string()),
        ("firing", pa.int32()),
        ("labels", pa.string()),  # JSON: the point's scalar values at this firing
        ("key", pa.string()),
        ("kind", pa.string()),
        ("shape", pa.list_(pa.int64())),
        ("dtype", pa.string()),
        ("min", pa.float64()),
        ("max", pa.float64()),
        ("mean", pa.float64()),
        ("nnz", pa.int64()),
        ("topk_values", pa.list_(pa.float64())),
        ("topk_indices", pa.list_(pa.int64())),
        ("value", pa.string()),  # JSON of a plain value; the message of an error
        ("object_key", pa.string()),  # the analysis object holding the tensor
        ("tensor", pa.string()),  # its name in that object
        ("created_at", pa.timestamp("us", tz="UTC")),
    ),
    allowed={"kind": KINDS},
    object_keys="object_key",
)


def _json(value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False)
    except ValueError:  # NaN or infinity: keep the text
        return json.dumps(repr(value))


def _summary_columns(summary: Summary) -> dict[str, Any]:
    return {
        "shape": list(summary.shape),
        "dtype": summary.dtype,
        "min": summary.min,
        "max": summary.max,
        "mean": summary.mean,
        "nnz": summary.nnz,
        "topk_values": list(summary.topk_values),
        "topk_indices": list(summary.topk_indices),
    }


def analysis_rows(capture: Capture) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor]]:
    """The capture as table rows, and the tensors to store by name (the rows name them)."""
    rows: list[dict[str, Any]] = []
    tensors: dict[str, torch.Tensor] = {}
    for kept in capture.kept:
        row = {
            "point": kept.point,
            "stage": kept.stage,
            "function": kept.function,
            "firing": kept.firing,
            "labels": _json(dict(kept.labels)),
            "key": kept.key,
        }
        value = kept.value
        if isinstance(value, torch.Tensor):
            name = f"t{len(tensors):05d}"
            tensors[name] = value
            row |= _summary_columns(summarize(value, TOPK)) | {"kind": "tensor", "tensor": name}
        elif isinstance(value, Summary):
            row |= _summary_columns(value) | {"kind": "summary"}
        else:
            row |= {"kind": "value", "value": _json(value)}
        rows.append(row)
    for failure in capture.failures:
        rows.append(
            {
                "point": failure.point,
                "stage": failure.stage,
                "function": failure.function,
                "firing": failure.firing,
                "labels": _json(dict(failure.labels)),
                "key": "",
                "kind": "error",
                "value": failure.error,
            }
        )
    return rows, tensors


def _object_key(run_id: str, tensors: Mapping[str, torch.Tensor], about: Mapping) -> str:
    digest = hashlib.sha256(canonical_json({"run_id": run_id, "about": about}).encode())
    for name, tensor in tensors.items():
        array, dtype = to_storage(tensor)
        digest.update(f"{name}:{dtype}:{list(array.shape)}:".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def write_analysis(
    store: Store, run_id: str, capture: Capture, about: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Store a run's captured tensors (one object) and write its `analysis` rows; return them.

    `about` (the analysis config, as plain data) goes into the object's manifest.
    """
    rows, tensors = analysis_rows(capture)
    if tensors:
        key = _object_key(run_id, tensors, about)
        if store.get(OBJECTS, key) is None:
            params = {"run_id": run_id, "analysis": about}
            with store.writer(OBJECTS, key, version=OBJECT_VERSION, params=params) as writer:
                for name, tensor in tensors.items():
                    writer.put_tensor(name, tensor)
        for row in rows:
            if row["kind"] == "tensor":
                row["object_key"] = key
    store.catalog.write(ANALYSIS.name, run_id, rows, replace=True)
    return rows


# ------------------------------------------------------------------------------ reading back

_POINT_ORDER = {name: i for i, name in enumerate(POINTS)}


def read_analysis(store: Store, run_id: str, point: str | None = None) -> list[dict[str, Any]]:
    """A run's analysis rows (one point's, or all), in point order, then firing order."""
    table = store.catalog.read(ANALYSIS.name, run_id)
    rows = [r for r in table.to_pylist() if point is None or r["point"] == point]
    for row in rows:
        row["labels"] = json.loads(row["labels"] or "{}")
        row["value"] = _parse_value(row)
    rows.sort(key=lambda r: (_POINT_ORDER.get(r["point"], len(_POINT_ORDER)), r["firing"]))
    return rows


def _parse_value(row: Mapping[str, Any]) -> Any:
    if row["kind"] == "value" and row["value"] is not None:
        return json.loads(row["value"])
    return row["value"]


def read_tensor(store: Store, row: Mapping[str, Any]) -> torch.Tensor:
    """The tensor a row of kind "tensor" names, from the run's analysis object."""
    if row["kind"] != "tensor":
        raise ValueError(f"row {row['point']}/{row['key']} holds no tensor (kind {row['kind']})")
    return store.open(OBJECTS, row["object_key"]).torch(row["tensor"])


def captured_series(
    store: Store, run_id: str, point: str, key: str, **labels: Any
) -> torch.Tensor | None:
    """The tensors kept under `key` at every firing of `point` whose labels match, stacked in
    firing order: e.g. ("influence_iteration", "term", phase="node") gives the (n_steps, N)
    influence trace (phase "edge": (n_steps, n_kept), the node-pruned graph's nodes). None when
    nothing was kept there."""
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
    return torch.stack([read_tensor(store, r) for r in rows if r["function"] == first])
