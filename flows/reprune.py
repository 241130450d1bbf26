"""The `reprune` flow: new thresholds for runs already in the catalog.

Each run is attributed again with only its thresholds changed, so every stage up to influence is
read from the store and only prune and export compute. The re-pruned runs are new runs (their
ids differ) beside the old ones. A run imported from a circuit-tracer file is imported again
from its stored graph at the new thresholds (`tasks.imports`).
"""

from __future__ import annotations

import dataclasses

from prefect import flow

from circuitflow.flows.attribute import attribute_prompt
from circuitflow.tasks import RunOutcome, RunRequest, Setup, open_store
from circuitflow.tasks.imports import import_graph
from circuitflow.tasks.recorded import (
    UnknownRunError,
    imported_file,
    is_imported,
    recorded_request,
)

__all__ = ["UnknownRunError", "reprune", "stored_request"]


def stored_request(
    store_root: str, rid: str, *, imported_ok: bool = False
) -> tuple[Setup, RunRequest]:
    """The setup and request of a recorded run, from its `runs` row. A run imported from a
    circuit-tracer file has no model here to attribute again (validate, steer): UnknownRunError
    saying so, unless `imported_ok`."""
    store = open_store(store_root)
    if not imported_ok and is_imported(store, rid):
        raise UnknownRunError(
            f"run {rid!r} was imported from a circuit-tracer graph file (`circuitflow import`): "
            "its model is not here, so it can be re-pruned, exported and viewed, not recomputed"
        )
    return recorded_request(store, rid)


@flow(name="reprune")
def reprune(
    run_ids: list[str],
    store: str,
    node_threshold: float | None = None,
    edge_threshold: float | None = None,
    device: str = "cpu",
) -> list[RunOutcome]:
    """Re-prune each run at the new thresholds (None keeps the run's); returns the new runs'
    outcomes. `device` is where a stage that is no longer stored is recomputed."""
    changes = {"node_threshold": node_threshold, "edge_threshold": edge_threshold}
    changes = {name: value for name, value in changes.items() if value is not None}
    outcomes = []
    for rid in run_ids:
        if (file := imported_file(store, rid)) is not None:  # a circuit-tracer graph: no model
            params = stored_request(store, rid, imported_ok=True)[1].params.replace(**changes)
            outcomes.append(import_graph(file, store, params))
            continue
        setup, request = stored_request(store, rid)
        setup = dataclasses.replace(setup, device=device)
        params = request.params.replace(**changes)
        outcomes.append(attribute_prompt(setup, RunRequest(request.prompt, params)))
    return outcomes
