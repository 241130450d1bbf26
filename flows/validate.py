"""The `validate` flow: causal checks for recorded runs, stored like any stage.

Each run is attributed again with its switch `validate` on: every stage it shares with the
recorded run is found in the store, and only `validate` computes, with `export` (its graph JSON
names the run); validating again costs nothing. Like a re-pruned run, the validated run is a
new run (the switch is one of its settings, so its id differs) beside the old one, with its
`interventions` rows. `validation_report` reads them back as an ablation curve per run.
"""

from __future__ import annotations

from collections import defaultdict
from statistics import fmean

from prefect import flow

from circuitflow.flows.attribute import attribute_prompt
from circuitflow.flows.reprune import stored_request
from circuitflow.tasks import RunOutcome, RunRequest, open_store
from circuitflow.tasks.stages.validate import AUDIT_K


@flow(name="validate")
def validate_runs(run_ids: list[str], store: str) -> list[RunOutcome]:
    """Validate each recorded run (UnknownRunError for one the catalog does not hold);
    returns the validated runs' outcomes."""
    requests = [stored_request(store, rid) for rid in run_ids]  # all known before any work
    return [
        attribute_prompt(setup, RunRequest(request.prompt, request.params.replace(validate=True)))
        for setup, request in requests
    ]


def validation_report(store_root: str, outcome: RunOutcome) -> dict:
    """A validated run's curve: for each k, the top-k change and the random draws' changes."""
    catalog = open_store(store_root).catalog
    rows = catalog.read("interventions", outcome.run_id).to_pylist()
    answer = min(catalog.read("logits", outcome.run_id).to_pylist(), key=lambda r: r["rank"])
    top = {r["k"]: r for r in rows if r["selection"] == "top"}
    random = defaultdict(list)
    for r in rows:
        if r["selection"] == "random":
            random[r["k"]].append(r["logit_change"])
    curve = [
        {
            "k": k,
            "top_logit_change": top[k]["logit_change"],
            "top_prob_change": top[k]["prob_change"],
            "random_logit_change_mean": fmean(random[k]) if random[k] else None,
            "random_logit_changes": random[k],
        }
        for k in sorted(top)
    ]
    audit = next((point for point in curve if point["k"] == AUDIT_K), None)
    return {
        "run_id": outcome.run_id,
        "prompt": outcome.prompt,
        "status": outcome.status,
        "error": outcome.error,
        "target": answer["name"],
        "target_value": answer["value"],
        "stages": [{"stage": s.stage, "status": s.status} for s in outcome.stages],
        "curve": curve,
        "audit_k": AUDIT_K,
        # The audit: does ablating the top AUDIT_K drop the answer further than random ones?
        "top_drops_more": None
        if audit is None or audit["random_logit_change_mean"] is None
        else audit["top_logit_change"] < audit["random_logit_change_mean"],
    }
