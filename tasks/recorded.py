"""A recorded run, opened by its id: its setup and request from its `runs` row, and the objects
its stages used from `stage_events`, as a `RunContext` that reads them from the store.

Run ids come from people (pasted from `circuitflow store ls`, or from `query --format csv`,
which quotes them), so a malformed one is refused with a line that says what is wrong with it.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from typing import NamedTuple

from circuitflow.attribution import AttributionGraph, PruneResult, RunParams
from circuitflow.store import ObjectMissing, Store
from circuitflow.store.fs import default_root
from circuitflow.tasks.context import RunContext, RunRequest, StageOutput, store_for
from circuitflow.tasks.declare import Stage
from circuitflow.tasks.imports import IMPORT_PIPELINE, GraphFile
from circuitflow.tasks.pipeline import PIPELINE
from circuitflow.tasks.runtime import Setup

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class UnknownRunError(ValueError):
    """A run id that is malformed, or that the catalog does not hold as a successful run."""


def check_run_id(rid: str) -> str:
    """`rid` if it can be a run id, else UnknownRunError saying what is wrong with it."""
    if _RUN_ID.fullmatch(rid):
        return rid
    if not rid.strip():
        hint = "it is empty"
    elif rid[0] in "'\"" or rid[-1] in "'\"":
        hint = "remove the quotes around it"
    elif "/" in rid or "\\" in rid:
        hint = "it looks like a path; give the run id alone"
    else:
        hint = "use letters, digits, '_', '-' and '.'"
    raise UnknownRunError(
        f"{rid!r} is not a run id ({hint}); `circuitflow store ls` lists the runs"
    )


def recorded_request(store: Store, rid: str) -> tuple[Setup, RunRequest]:
    """The setup and request of a successful recorded run, from its `runs` row."""
    row = _runs_row(store, rid)
    setup = Setup(model=row["model"], transcoders=row["transcoders"], store=store.root)
    return setup, RunRequest(row["prompt"], RunParams.from_dict(json.loads(row["params"])))


def _runs_row(store: Store, rid: str) -> dict:
    check_run_id(rid)
    rows = store.catalog.read("runs", rid).to_pylist()
    ok = [r for r in rows if r["status"] == "ok"]
    if not ok:
        raise UnknownRunError(
            f"no successful run {rid!r} in the catalog at {store.location.url} "
            "(`circuitflow store ls` lists the runs)"
        )
    return ok[0]


def open_run(root: str, rid: str, pipeline: Sequence[Stage] | None = None) -> RunContext:
    """A recorded run whose stages' records can be read (`run.record`, `run.graph`).

    Without a `pipeline`, the run's own: `PIPELINE`, or `IMPORT_PIPELINE` for a graph brought
    in by `circuitflow import` (whose identities are then the recorded ones: its model is not
    here to hash).
    """
    store = store_for(root, PIPELINE if pipeline is None else pipeline)
    setup, request = recorded_request(store, rid)
    events = store.catalog.read("stage_events", rid).to_pylist()
    if pipeline is None:
        pipeline = PIPELINE
        if _imported(events):
            pipeline, row = IMPORT_PIPELINE, _runs_row(store, rid)
            setup = dataclasses.replace(
                setup,
                model_digest=row["model_digest"],
                transcoders_digest=row["transcoders_digest"],
            )
    outputs = {}
    stages = {stage.name: stage for stage in pipeline}
    for event in events:
        stage, key = stages.get(event["stage"]), event["key"]
        if stage is None:
            continue  # a stage of another pipeline
        name = key
        if stage.identity:  # what later stages' keys use for it (see Stage.identity)
            try:
                name = store.open(stage.name, key).attrs["record"][stage.identity]
            except ObjectMissing:
                raise UnknownRunError(_gone(rid, stage.name)) from None
        outputs[stage.name] = StageOutput(stage.name, key, event["status"], event["seconds"], name)
    return RunContext(setup, request, outputs, pipeline, rid)


class RunGraph(NamedTuple):
    """A recorded run's graph and its prune result at the run's thresholds."""

    graph: AttributionGraph
    pruned: PruneResult


def recorded_graph(root: str, rid: str) -> RunGraph:
    """A recorded run's attribution graph, back in Python, with its prune result at the run's
    thresholds: what `attribute` and `prune` gave when the run was computed.

        graph, kept = recorded_graph(".circuitflow/store", "20d56149989e41d4c707")
        graph.adjacency[kept.node_mask][:, kept.node_mask]
    """
    run = open_run(root, rid)
    return RunGraph(run.graph, run.record("prune").result())


def load_graph(run_id: str, store: str | None = None) -> RunGraph:
    """The graph of run `run_id` in the store (default: $CIRCUITFLOW_STORE, else
    ./.circuitflow/store), read back from the store: the store's `graph` in Python.

        from circuitflow.tasks import load_graph
        graph, pruned = load_graph("20d56149989e41d4c707")
        graph.adjacency            # (N, N) float32, rows are targets, columns sources
        pruned.node_mask           # (N,) bool: the nodes kept at the run's thresholds

    Imported runs (`circuitflow import`) give the graph read from the file, with its prompt,
    `scan` and model config (`tasks.stages.imported.ImportedGraph`);
    `attribution.interop.to_circuit_tracer` turns either into circuit-tracer's `Graph`.
    """
    return recorded_graph(default_root(store), run_id)


def is_imported(store: Store, rid: str) -> bool:
    """Whether run `rid` was imported from a circuit-tracer file (its stages began with import)."""
    return _imported(store.catalog.read("stage_events", check_run_id(rid)).to_pylist())


def _imported(events: list[dict]) -> bool:
    return any(event["stage"] == IMPORT_PIPELINE[0].name for event in events)


def imported_file(root: str, rid: str) -> GraphFile | None:
    """The graph file a run imported (`circuitflow import`), read back from the store; None
    for a run that attributed a prompt."""
    run = open_run(root, rid)
    if run.pipeline is not IMPORT_PIPELINE:
        return None
    require_stored(run, IMPORT_PIPELINE[0].name)
    source = run.object(IMPORT_PIPELINE[0].name)
    return GraphFile(source.path, source.inputs["file"], run.record(IMPORT_PIPELINE[0].name))


def _gone(rid: str, stage: str) -> str:
    return (
        f"run {rid!r}: its stored {stage} output is gone from the store (removed or damaged); "
        "run the same `circuitflow attribute` again to recompute it"
    )


def graph_stages(run: RunContext) -> tuple[str, ...]:
    """The stages whose records `run.graph` reads: the import of an imported run, else
    tokenize, precompute, targets and rows."""
    if run.pipeline is IMPORT_PIPELINE:
        return (IMPORT_PIPELINE[0].name,)
    return ("tokenize", "precompute", "targets", "rows")


def require_stored(run: RunContext, *stages: str) -> None:
    """UnknownRunError naming the first of `stages` whose object the store no longer holds."""
    for stage in stages:
        if stage not in run.outputs or not run.store.exists(stage, run.outputs[stage].key):
            raise UnknownRunError(_gone(run.run_id, stage))
