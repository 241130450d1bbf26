"""Runs: one prompt attributed with one set of parameters, and its rows in the catalog.

A run's id is derived from everything that determines its result (model and transcoder
identities, prompt text, every parameter), so the same run done twice, or resumed after a crash,
lands on the same id: the catalog holds exactly one row per run. When a run succeeds, its rows
(runs, nodes, edges, logits, influence_traces, stage_events) are built from the stored stage
outputs; when it fails (an unknown word, a prompt longer than the context...), its `runs` row
says so, with the error, and the rest of a sweep goes on.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from dataclasses import asdict, dataclass, field

import torch
from prefect import task
from prefect.cache_policies import NO_CACHE

from store import canonical_json
from store.errors import CatalogError
from store.keys import sha256_hex
from tasks.runtime import Setup, model_identity, open_store, transcoders_identity
from tasks.stages import StageOutput, load, load_graph


@dataclass(frozen=True)
class RunParams:
    """Every setting of a run besides model, transcoders and prompt."""

    node_threshold: float = 0.8
    edge_threshold: float = 0.98
    max_feature_nodes: int | None = None
    max_n_logits: int = 10
    desired_logit_prob: float = 0.95
    targets: tuple[str, ...] = ()
    batch_size: int = 64
    update_interval: int = 4


@dataclass(frozen=True)
class RunRequest:
    prompt: str
    params: RunParams = field(default_factory=RunParams)


def run_id(setup: Setup, request: RunRequest) -> str:
    """Stable id of a run: a digest of everything that determines its result."""
    doc = {
        "model": model_identity(setup.model),
        "transcoders": transcoders_identity(setup.transcoders),
        "prompt": request.prompt,
        "params": asdict(request.params),
    }
    return sha256_hex(canonical_json(doc))[:20]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _run_row(setup: Setup, request: RunRequest, rid: str) -> dict:
    p = request.params
    return {
        "run_id": rid,
        "created_at": _now(),
        "model": setup.model,
        "model_digest": model_identity(setup.model),
        "transcoders": setup.transcoders,
        "transcoders_digest": transcoders_identity(setup.transcoders),
        "prompt": request.prompt,
        "node_threshold": p.node_threshold,
        "edge_threshold": p.edge_threshold,
        "max_feature_nodes": p.max_feature_nodes,
        "params": canonical_json(asdict(p)),
    }


def run_is_recorded(setup: Setup, rid: str) -> bool:
    """True when the catalog holds a successful row for this run."""
    table = open_store(setup.store).catalog.read("runs", rid)
    return table.num_rows > 0 and "ok" in table.column("status").to_pylist()


@task(name="record-run", cache_policy=NO_CACHE)
def record_run_task(
    setup: Setup, request: RunRequest, outputs: list[StageOutput], seconds: float | None = None
) -> str:
    """Write a successful run's catalog rows; returns its run id.

    The rows of a run already recorded are the same by construction and are kept; only its
    stage_events (this execution: which stages were cached) are replaced.
    """
    rid = run_id(setup, request)
    catalog = open_store(setup.store).catalog
    by_stage = {o.stage: o for o in outputs}
    events = [
        {
            "stage": o.stage,
            "key": o.key,
            "status": o.status,
            "seconds": o.seconds,
            "created_at": _now(),
        }
        for o in outputs
    ]
    if run_is_recorded(setup, rid):
        with contextlib.suppress(CatalogError):  # a compacted run is immutable
            catalog.write("stage_events", rid, events, replace=True)
        return rid
    if seconds is None:  # run by a task runner: the run's time is its stages' time
        seconds = sum(o.seconds for o in outputs)
    tables = catalog_rows(setup, request, rid, by_stage, seconds)
    tables["stage_events"] = events
    catalog.write_run(rid, tables, replace=True)
    return rid


@task(name="record-failure", cache_policy=NO_CACHE)
def record_failure_task(setup: Setup, request: RunRequest, error: str) -> str:
    """Write a failed run's `runs` row with its error; returns its run id."""
    rid = run_id(setup, request)
    row = _run_row(setup, request, rid) | {"status": "failed", "error": error}
    open_store(setup.store).catalog.write("runs", rid, [row], replace=True)
    return rid


def catalog_rows(
    setup: Setup, request: RunRequest, rid: str, out: dict[str, StageOutput], seconds: float
) -> dict[str, list[dict]]:
    """The runs, nodes, edges, logits and influence_traces rows of a finished run."""
    from attribution import Precompute
    from tasks.stages import pruned_result, stage_record, stage_tensors

    start = time.perf_counter()
    graph = load_graph(setup, out["precompute"], out["targets"], out["rows"])
    influence_obj = load(setup, "influence", out["influence"])
    prune_obj = load(setup, "prune", out["prune"])
    influence_tensors = stage_tensors(setup, "influence", out["influence"])
    prune_tensors = stage_tensors(setup, "prune", out["prune"])
    pruned = pruned_result(setup, out["prune"], graph)
    influence = influence_tensors["influence"]
    cumulative = pruned.cumulative_scores

    ids, kinds = graph.node_ids(), graph.node_kinds()
    nodes = []
    for index, (node_id, kind) in enumerate(zip(ids, kinds, strict=True)):
        row = {
            "node_id": node_id,
            "kind": kind,
            "influence": float(influence[index]),
            "cumulative_influence": float(cumulative[index]),
            "kept": bool(pruned.node_mask[index]),
            "matrix_index": index,
        }
        nodes.append(row | _node_place(graph, index, kind))

    kept_edges = prune_tensors["kept_edges"]
    scores = prune_tensors["edge_scores"].tolist()
    weights = graph.adjacency[kept_edges[:, 0], kept_edges[:, 1]].tolist()
    edges = [
        {"source": ids[s], "target": ids[t], "weight": w, "score": sc}
        for (t, s), w, sc in zip(kept_edges.tolist(), weights, scores, strict=True)
    ]

    pre_logits = stage_record(setup, "precompute", out["precompute"], Precompute).last_logits
    logits = [
        {
            "rank": rank,
            "token_id": int(token),
            "token": graph.logit_tokens[rank],
            "prob": float(graph.logit_probabilities[rank]),
            "logit": float(pre_logits[int(token)]),
        }
        for rank, token in enumerate(graph.logit_token_ids.tolist())
    ]

    traces = _trace_rows("node", influence_tensors["trace"]) + _trace_rows(
        "edge", prune_tensors["edge_trace"]
    )
    run = _run_row(setup, request, rid) | {
        "prompt_hash": load(setup, "tokenize", out["tokenize"]).attrs["prompt_hash"],
        "n_tokens": graph.n_pos,
        "n_active_features": int(len(graph.active_features)),
        "n_selected_features": graph.n_features,
        "n_nodes_kept": prune_obj.attrs["n_nodes_kept"],
        "n_edges_kept": prune_obj.attrs["n_edges_kept"],
        "replacement_score": influence_obj.attrs["replacement_score"],
        "completeness_score": influence_obj.attrs["completeness_score"],
        "status": "ok",
        "error": None,
        "seconds": seconds + (time.perf_counter() - start),
    }
    return {
        "runs": [run],
        "nodes": nodes,
        "edges": edges,
        "logits": logits,
        "influence_traces": traces,
    }


def _node_place(graph, index: int, kind: str) -> dict:
    """layer, pos, feature, token, token_id and activation of one node."""
    if kind == "feature":
        active = int(graph.selected_features[index])
        layer, pos, feature = graph.active_features[active].tolist()
        return {
            "layer": layer,
            "pos": pos,
            "feature": feature,
            "token": _token(graph, pos),
            "activation": float(graph.activation_values[active]),
        }
    if kind == "error":
        layer, pos = divmod(index - graph.error_start, graph.n_pos)
        return {"layer": layer, "pos": pos, "token": _token(graph, pos)}
    if kind == "token":
        pos = index - graph.token_start
        return {"pos": pos, "token": _token(graph, pos), "token_id": int(graph.tokens[pos])}
    rank = index - graph.logit_start
    return {
        "layer": graph.n_layers,
        "pos": graph.n_pos - 1,
        "token": graph.logit_tokens[rank],
        "token_id": int(graph.logit_token_ids[rank]),
    }


def _token(graph, pos: int) -> str | None:
    return graph.token_strings[pos] if pos < len(graph.token_strings) else None


def _trace_rows(phase: str, trace: torch.Tensor) -> list[dict]:
    return [
        {
            "phase": phase,
            "iteration": step,
            "l1": float(term.abs().sum()),
            "max": float(term.abs().max()) if term.numel() else 0.0,
            "nnz": int((term != 0).sum()),
        }
        for step, term in enumerate(trace)
    ]
