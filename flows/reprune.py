"""The `reprune` flow: new thresholds for runs already in the catalog.

Each run is attributed again with only its thresholds changed, so every stage up to influence is
read from the store and only prune and export compute. The re-pruned runs are new runs (their
ids differ) beside the old ones.
"""

from __future__ import annotations

import json

from prefect import flow

from circuitflow.attribution import RunParams
from circuitflow.flows.attribute import attribute_prompt
from circuitflow.tasks import RunOutcome, RunRequest, Setup, open_store


class UnknownRunError(ValueError):
    """A run id the catalog does not hold (or holds only as failed)."""


def stored_request(store_root: str, rid: str) -> tuple[Setup, RunRequest]:
    """The setup and request of a recorded run, from its `runs` row."""
    rows = open_store(store_root).catalog.read("runs", rid).to_pylist()
    ok = [r for r in rows if r["status"] == "ok"]
    if not ok:
        raise UnknownRunError(f"no successful run {rid!r} in the catalog at {store_root}")
    row = ok[0]
    setup = Setup(model=row["model"], transcoders=row["transcoders"], store=store_root)
    return setup, RunRequest(row["prompt"], RunParams.from_dict(json.loads(row["params"])))


@flow(name="reprune")
def reprune(
    run_ids: list[str],
    store: str,
    node_threshold: float | None = None,
    edge_threshold: float | None = None,
) -> list[RunOutcome]:
    """Re-prune each run at the new thresholds (None keeps the run's); returns the new runs'
    outcomes."""
    changes = {"node_threshold": node_threshold, "edge_threshold": edge_threshold}
    changes = {name: value for name, value in changes.items() if value is not None}
    outcomes = []
    for rid in run_ids:
        setup, request = stored_request(store, rid)
        params = request.params.replace(**changes)
        outcomes.append(attribute_prompt(setup, RunRequest(request.prompt, params)))
    return outcomes
