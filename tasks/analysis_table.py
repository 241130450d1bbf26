"""What analysis functions returned, kept apart from the stage objects: a catalog table and one
store object per analysis.

- Each analysis of a run is recorded once, as its own entry of the catalog: the catalog records
  a run's rows once, in one batch, so an analysis (which may come long after its run) has its
  own id, `<run id>.analysis-<UTC time>`, in the `run_id` column, and names the run it observed
  in `analysed_run`. A run analysed twice has two analyses; readers take the latest.
- The table `analysis` has one row per returned value (and per failure): the point, the stage
  that fired it, the function, the point's firing number and the firing's `sequence` among all
  firings (the order attribution reached them), the point's labels (its scalar values as JSON,
  e.g. {"iteration": 3, "phase": "node"}), the key the function gave, and a summary (shape,
  dtype, min/max/mean, non-zeros, top-k values and flat indices). Rows of kind "value" carry a
  plain value as JSON; rows of kind "error" carry the failure.
- Returned tensors (kind "tensor") are stored whole in one object of the store per analysis,
  under `objects/analysis/<key>/`: the row names the object (`object_key`) and the array in it
  (`tensor`). `gc` keeps the objects the table names; the stage objects are never touched.

Reading back needs neither torch nor the pipeline: `flows.analysis_read`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import torch

from circuitflow.attribution.analysis import Capture, Failure, Kept, Summary, summarize
from circuitflow.store import Store
from circuitflow.store.fs import utc_now
from circuitflow.store.tensors import to_storage
from circuitflow.tasks.declare import CatalogTable

OBJECTS = "analysis"  # the store's stage directory for analysis objects
OBJECT_VERSION = 1
TOPK = 5  # elements kept in the summary of a returned tensor
KINDS = frozenset({"tensor", "summary", "value", "error"})

ANALYSIS = CatalogTable(
    "analysis",
    (
        ("analysed_run", pa.string()),  # the run observed (`run_id` is the analysis's own id)
        ("point", pa.string()),
        ("stage", pa.string()),
        ("function", pa.string()),
        ("firing", pa.int32()),
        ("sequence", pa.int64()),
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


def _where(found: Kept | Failure) -> dict[str, Any]:
    return {
        "point": found.point,
        "stage": found.stage,
        "function": found.function,
        "firing": found.firing,
        "sequence": found.sequence,
        "labels": _json(dict(found.labels)),
    }


def analysis_rows(capture: Capture) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor]]:
    """The capture as table rows, and the tensors to store by name (the rows name them)."""
    rows: list[dict[str, Any]] = []
    tensors: dict[str, torch.Tensor] = {}
    for kept in capture.kept:
        row = _where(kept) | {"key": kept.key}
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
        rows.append(_where(failure) | {"key": "", "kind": "error", "value": failure.error})
    return rows, tensors


def _object_key(analysis_id: str, tensors: Mapping[str, torch.Tensor]) -> str:
    digest = hashlib.sha256(analysis_id.encode())
    for name, tensor in tensors.items():
        array, dtype = to_storage(tensor)
        digest.update(f"{name}:{dtype}:{list(array.shape)}:".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def write_analysis(store: Store, run_id: str, capture: Capture, about: Mapping[str, Any]) -> str:
    """Record an analysis of run `run_id`: its tensors (one object) and its `analysis` rows.

    Returns the analysis's id. `about` (the analysis config, as plain data) goes into the
    object's manifest.
    """
    analysis_id = f"{run_id}.analysis-{utc_now():%Y%m%dT%H%M%S%fZ}"  # flows.analysis_read
    rows, tensors = analysis_rows(capture)
    if tensors:
        key = _object_key(analysis_id, tensors)
        params = {"run_id": run_id, "analysis_id": analysis_id, "analysis": about}
        with store.writer(OBJECTS, key, version=OBJECT_VERSION, params=params) as writer:
            for name, tensor in tensors.items():
                writer.put_tensor(name, tensor)
        for row in rows:
            if row["kind"] == "tensor":
                row["object_key"] = key
    for row in rows:
        row["analysed_run"] = run_id
    store.catalog.write_run(analysis_id, {ANALYSIS.name: rows})
    return analysis_id
