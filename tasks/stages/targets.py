"""Stage targets: the logit nodes, salient or explicit (see `attribution.targets`).

Fills the catalog's `logits` table: each target's rank, token, probability and raw logit.
"""

from __future__ import annotations

import pyarrow as pa

from circuitflow.attribution import Targets, choose_targets
from circuitflow.tasks.context import RunContext
from circuitflow.tasks.declare import CatalogTable, Stage


def compute(run: RunContext) -> Targets:
    params = run.params
    return choose_targets(
        run.model.replacement,
        run.record("precompute"),
        list(params.targets) or None,
        max_n_logits=params.max_n_logits,
        desired_logit_prob=params.desired_logit_prob,
    )


def logit_entries(run: RunContext) -> list[dict]:
    targets: Targets = run.record("targets")
    last_logits = run.record("precompute").last_logits
    return [
        {
            "rank": rank,
            "token_id": token,
            "token": targets.token_strings[rank],
            "prob": float(targets.probabilities[rank]),
            "logit": float(last_logits[token]),
        }
        for rank, token in enumerate(targets.token_ids.tolist())
    ]


LOGITS = CatalogTable(
    "logits",
    (
        ("rank", pa.int32()),
        ("token_id", pa.int64()),
        ("token", pa.string()),
        ("prob", pa.float64()),
        ("logit", pa.float64()),
    ),
    logit_entries,
)

STAGE = Stage(
    name="targets",
    version=1,
    inputs=("precompute",),
    params=("targets", "max_n_logits", "desired_logit_prob"),
    record=Targets,
    compute=compute,
    points=("targets_end",),
    uses_model=True,
    tables=(LOGITS,),
)
