"""Stage validate: the graph's claims checked causally, and kept (see `attribution.ablation`).

Not every run does this: the stage runs under the switch `validate` (`Stage.when`), set by
`--validate`, a sweep's `validate: true` or `circuitflow validate RUN_ID`. It reads the pruned
graph, zero-ablates its top-k kept features (ranked by influence) for k = 1, 2, 4, 8, ..., all
of them, and k = AUDIT_K, and as many random active features in DRAWS seeded draws, with
attention frozen as in the graph; it measures the run's first target (the answer).

Fills the catalog's `interventions` table, one row per (k, selection, draw): `selection` 'top'
or 'random', `logit_change` and `prob_change` (ablated minus clean; for a direction target its
value, and no probability), and `target` (the target's name). A faithfulness audit across a
sweep is then one query (README: "Stored causal checks").

Changing AUDIT_K, DRAWS, SEED or what is measured changes what is stored: bump the version.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import torch

from circuitflow.attribution.ablation import ablation_curves, doubling_ks, nan_to_none
from circuitflow.attribution.serialize import Record
from circuitflow.tasks.context import RunContext
from circuitflow.tasks.declare import CatalogTable, Stage

AUDIT_K = 5  # the k of the README's audit query: always measured when the graph has 5 features
DRAWS = 8
SEED = 0


@dataclass
class Validation(Record):
    """The ablation rows (see `attribution.ablation.AblationCurves`) and what they measured.

    k, draw: (n,) int64; random: (n,) bool; logit_change, prob_change: (n,) float64 (prob NaN
    for a direction target); top: (n_top, 3) ranked kept features (layer, position, feature);
    draws: (DRAWS, max k, 3) random orders; target: the measured target's name.
    """

    k: torch.Tensor
    random: torch.Tensor
    draw: torch.Tensor
    logit_change: torch.Tensor
    prob_change: torch.Tensor
    top: torch.Tensor
    draws: torch.Tensor
    target: str
    clean_value: float
    clean_prob: float | None


def ranked_kept_features(run: RunContext) -> torch.Tensor:
    """The pruned graph's feature nodes, most influential first: (n, 3) (layer, pos, feature)."""
    graph = run.graph
    kept = run.record("prune").node_mask[: graph.n_features]
    influence = run.record("influence").influence[: graph.n_features]
    index = torch.nonzero(kept).flatten()
    order = index[torch.argsort(influence[index], descending=True, stable=True)]
    return graph.active_features[graph.selected_features[order]]


def compute(run: RunContext) -> Validation:
    pre, targets = run.record("precompute"), run.record("targets")
    top = ranked_kept_features(run)
    model = run.model
    with model.lock:
        curves = ablation_curves(
            model.replacement,
            pre.tokens,
            targets,
            top,
            pre.active_features,
            doubling_ks(min(len(top), len(pre.active_features)), also=(AUDIT_K,)),
            n_draws=DRAWS,
            seed=SEED,
        )
    return Validation(
        k=curves.k,
        random=curves.random,
        draw=curves.draw,
        logit_change=curves.value_change,
        prob_change=curves.prob_change,
        top=curves.top,
        draws=curves.draws,
        target=targets.token_strings[0],
        clean_value=curves.clean_value,
        clean_prob=nan_to_none(curves.clean_prob),
    )


def intervention_entries(run: RunContext) -> list[dict]:
    checks: Validation = run.record("validate")
    return [
        {
            "k": k,
            "selection": "random" if random else "top",
            "draw": draw,
            "logit_change": logit_change,
            "prob_change": nan_to_none(prob_change),
            "target": checks.target,
        }
        for k, random, draw, logit_change, prob_change in zip(
            checks.k.tolist(),
            checks.random.tolist(),
            checks.draw.tolist(),
            checks.logit_change.tolist(),
            checks.prob_change.tolist(),
            strict=True,
        )
    ]


INTERVENTIONS = CatalogTable(
    "interventions",
    (
        ("k", pa.int32()),
        ("selection", pa.string()),
        ("draw", pa.int32()),
        ("logit_change", pa.float64()),
        ("prob_change", pa.float64()),
        ("target", pa.string()),
    ),
    intervention_entries,
    allowed={"selection": frozenset({"top", "random"})},
)

STAGE = Stage(
    name="validate",
    version=1,
    inputs=("prune",),
    params=(),
    record=Validation,
    compute=compute,
    uses_model=True,
    dims=(
        *((name, ("check",)) for name in ("k", "random", "draw", "logit_change", "prob_change")),
        ("top", ("top_rank", "coordinate")),  # coordinate: (layer, pos, feature)
        ("draws", ("sample", "random_rank", "coordinate")),
    ),
    tables=(INTERVENTIONS,),
    when="validate",
)
