"""Stage rows: backward passes give the rows of the edge matrix (see `attribution.rows`)."""

from __future__ import annotations

import pyarrow as pa
import torch

from circuitflow.attribution import Rows, compute_rows
from circuitflow.attribution.memory import check_run
from circuitflow.tasks.context import RunContext
from circuitflow.tasks.declare import RunColumn, Stage
from circuitflow.tasks.progress import stage_note, step_callback


def compute(run: RunContext) -> Rows:
    params = run.params
    model = run.model
    pre, targets = run.record("precompute"), run.record("targets")
    check_run(  # refuse before the backward passes, the part that needs the memory
        model.replacement,
        pre.n_pos,
        pre.n_active,
        len(targets),
        run.setup.memory.max_memory,
        max_feature_nodes=params.max_feature_nodes,
        batch_size=params.batch_size,
        edge_bytes=getattr(torch, params.edge_precision).itemsize,
    )
    with model.lock:
        rows = compute_rows(
            model.replacement,
            pre,
            targets,
            max_feature_nodes=params.max_feature_nodes,
            batch_size=params.batch_size,
            update_interval=params.update_interval,
            progress=step_callback("rows"),
        )
    kept = len(rows.selected_features)
    if kept < pre.n_active:
        stage_note(
            "rows",
            f"feature budget: kept {kept} of {pre.n_active} active features "
            f"(--max-feature-nodes {params.max_feature_nodes}; 'all' keeps every one)",
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
