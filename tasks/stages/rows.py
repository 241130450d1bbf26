"""Stage rows: backward passes give the rows of the edge matrix (see `attribution.rows`)."""

from __future__ import annotations

import pyarrow as pa
import torch

from circuitflow.attribution import Rows, compute_rows
from circuitflow.tasks.context import RunContext
from circuitflow.tasks.declare import RunColumn, Stage
from circuitflow.tasks.progress import step_callback


def compute(run: RunContext) -> Rows:
    params = run.params
    model = run.model
    with model.lock:
        rows = compute_rows(
            model.replacement,
            run.record("precompute"),
            run.record("targets"),
            max_feature_nodes=params.max_feature_nodes,
            batch_size=params.batch_size,
            update_interval=params.update_interval,
            progress=step_callback("rows"),
        )
    # Stored (and handed to the next stages) at the run's edge precision.
    rows.matrix = rows.matrix.to(getattr(torch, params.edge_precision))
    return rows


def _n_selected_features(run: RunContext) -> int:
    return len(run.record("rows").selected_features)


STAGE = Stage(
    name="rows",
    version=1,
    inputs=("precompute", "targets"),
    params=("max_feature_nodes", "batch_size", "update_interval", "edge_precision"),
    record=Rows,
    compute=compute,
    points=("rows_forward_end", "rows_logits_end", "rows_feature_ranking", "rows_features_end"),
    uses_model=True,
    # row: a computed row (a target node); source: active features, then errors, then tokens
    dims=(
        ("matrix", ("row", "source")),
        ("row_nodes", ("row",)),
        ("selected_features", ("selected",)),
    ),
    run_columns=(RunColumn("n_selected_features", pa.int64(), _n_selected_features),),
    retention="recompute-first",
)
