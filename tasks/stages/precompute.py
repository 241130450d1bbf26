"""Stage precompute: one forward pass finds every node (see `attribution.precompute`).

Keyed by the model, the transcoders, the prompt's token digest and the precision (`dtype`) the
model computes in; every later stage reads it, so the precision reaches all their keys. The
device does not enter keys: CPU and GPU agree within float tolerance (benchmarks/gpu_check.sh).
"""

from __future__ import annotations

import pyarrow as pa

from circuitflow.attribution import Precompute, precompute
from circuitflow.tasks.context import RunContext
from circuitflow.tasks.declare import RunColumn, Stage


def compute(run: RunContext) -> Precompute:
    model = run.model
    with model.lock:
        return precompute(model.replacement, run.record("tokenize").tokens)


def _n_active_features(run: RunContext) -> int:
    return run.record("precompute").n_active


STAGE = Stage(
    name="precompute",
    version=1,
    inputs=("tokenize",),
    params=("dtype",),
    identities=("model", "transcoders"),
    record=Precompute,
    compute=compute,
    points=("precompute_end",),
    uses_model=True,
    dims=(
        ("tokens", ("pos",)),
        ("active_features", ("active", "coordinate")),  # coordinate: (layer, pos, feature)
        ("activation_values", ("active",)),
        ("error_vectors", ("layer", "pos", "d_model")),
        ("token_vectors", ("pos", "d_model")),
        ("last_logits", ("vocab",)),
    ),
    run_columns=(RunColumn("n_active_features", pa.int64(), _n_active_features),),
)
