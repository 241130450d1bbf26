"""Stage targets: the logit nodes, salient or explicit (see `attribution.targets`).

Explicit targets are the run's `targets` setting: tokens, logit differences and directions
(`attribution.target_specs`), so they are part of this stage's key and of the run id.

Fills the catalog's `logits` table, one row per target: its rank, `name`, `kind` ('token' or
'direction'), `value` at the last position (a token's logit; a direction's dot product with the
final normalised residual, for a logit difference exactly logit A - logit B) and `weight` in the
influence computation (a token's probability; a direction's weight). Token targets also fill
`token_id`, `token`, `prob` and `logit`; direction targets leave them null.
"""

from __future__ import annotations

import pyarrow as pa

from circuitflow.attribution import Targets, choose_targets
from circuitflow.tasks.context import RunContext
from circuitflow.tasks.declare import CatalogTable, Stage

KINDS = frozenset({"token", "direction"})


def compute(run: RunContext) -> Targets:
    params = run.params
    model = run.model
    with model.lock:  # direction targets run the model to value them
        return choose_targets(
            model.replacement,
            run.record("precompute"),
            list(params.targets) or None,
            max_n_logits=params.max_n_logits,
            desired_logit_prob=params.desired_logit_prob,
        )


def logit_entries(run: RunContext) -> list[dict]:
    targets: Targets = run.record("targets")
    last_logits = run.record("precompute").last_logits
    entries = []
    for rank, token in enumerate(targets.token_ids.tolist()):
        kind = targets.kind(rank)
        weight = float(targets.probabilities[rank])
        value = float(last_logits[token] if targets.values is None else targets.values[rank])
        is_token = kind == "token"
        entries.append(
            {
                "rank": rank,
                "token_id": token if is_token else None,
                "token": targets.token_strings[rank] if is_token else None,
                "prob": weight if is_token else None,
                "logit": value if is_token else None,
                "name": targets.token_strings[rank],
                "kind": kind,
                "value": value,
                "weight": weight,
            }
        )
    return entries


LOGITS = CatalogTable(
    "logits",
    (
        ("rank", pa.int32()),
        ("token_id", pa.int64()),
        ("token", pa.string()),
        ("prob", pa.float64()),
        ("logit", pa.float64()),
        ("name", pa.string()),
        ("kind", pa.string()),
        ("value", pa.float64()),
        ("weight", pa.float64()),
    ),
    logit_entries,
    allowed={"kind": KINDS},
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
    dims=(
        ("token_ids", ("target",)),
        ("probabilities", ("target",)),
        ("vectors", ("target", "d_model")),
        ("values", ("target",)),
        ("offsets", ("target",)),
    ),
    tables=(LOGITS,),
)
