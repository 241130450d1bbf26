"""One Prefect task per stage of an attribution run (DESIGN.md, "Stages").

Every task follows the same four steps:

1. compute its key from its inputs' keys and its own parameters (`store.stage_key`);
2. if the store holds a valid object under that key, return at once: the task ends in Prefect's
   `Cached` state and its output says `cached`;
3. otherwise load what it needs from the store, compute with `attribution`, publish atomically;
4. return a `StageOutput`: the key plus how it was obtained. Never tensors.

The store is the only source of truth for caching: a deleted or corrupted object (quarantined
on read) is simply a miss, and the stage runs again.

    tokenize -> precompute -> targets -> rows -> influence -> prune -> export
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed

from attribution import (
    AttributionGraph,
    Precompute,
    Rows,
    Targets,
    assemble,
    choose_targets,
    compute_rows,
    graph_scores,
    node_influence,
    precompute,
    prune_with_details,
    tokenize,
)
from attribution.attribute import token_strings
from attribution.neuronpedia import graph_json, validate
from store import StoredObject, stage_key
from store.keys import prompt_digest
from tasks.runtime import Setup, loaded, model_identity, open_store, transcoders_identity

# Bump a stage's version when its code changes what it stores: old objects stop matching.
VERSIONS = {
    "tokenize": 1,
    "precompute": 1,
    "targets": 1,
    "rows": 1,
    "influence": 1,
    "prune": 1,
    "export": 1,
}


@dataclass(frozen=True)
class StageOutput:
    """What a stage task returns: the key of its stored output and how it got there."""

    stage: str
    key: str
    status: str  # "computed" or "cached"
    seconds: float


@dataclass
class Artifact:
    """What a stage computes, before it is published: tensors, tables, small JSON attributes,
    files; and the record they came from, kept in memory for the next stage in this process."""

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    record: Any = None


# Stage records by (store root, stage, key). Objects never change under a key, so a record read
# or computed once in this process can serve the next stage of the same run without a reread.
_recent: OrderedDict[tuple[str, str, str], Any] = OrderedDict()
RECENT_RECORDS = 12


def forget_records() -> None:
    """Drop the in-memory records (as a new process would start)."""
    _recent.clear()


def _remember(where: tuple[str, str, str], record: Any) -> Any:
    _recent[where] = record
    _recent.move_to_end(where)
    while len(_recent) > RECENT_RECORDS:
        _recent.popitem(last=False)
    return record


def run_stage(
    setup: Setup,
    stage: str,
    *,
    params: dict[str, Any],
    inputs: dict[str, str],
    compute: Callable[[], Artifact],
):
    """Return the stage's output from the store, or compute and publish it."""
    store = open_store(setup.store)
    start = time.perf_counter()
    key = stage_key(stage, VERSIONS[stage], params, inputs)
    if store.get(stage, key) is not None:
        output = StageOutput(stage, key, "cached", time.perf_counter() - start)
        return Completed(data=output, name="Cached", message=f"{stage} {key[:12]} is in the store")
    artifact = compute()
    with store.writer(
        stage, key, version=VERSIONS[stage], params=params, inputs=inputs, attrs=artifact.attrs
    ) as writer:
        for name, tensor in artifact.tensors.items():
            writer.put_tensor(name, tensor)
        for name, table in artifact.tables.items():
            writer.put_table(name, table)
        for name, data in artifact.files.items():
            writer.put_file(name, data)
    if artifact.record is not None:
        _remember((store.root, stage, key), artifact.record)
    _remember((store.root, f"{stage}/tensors", key), artifact.tensors)
    return StageOutput(stage, key, "computed", time.perf_counter() - start)


def record_artifact(record, **attrs: Any) -> Artifact:
    """A stage record (tensors + JSON metadata) as an artifact."""
    tensors, meta = record.to_parts()
    return Artifact(tensors=tensors, attrs={"record": meta, **attrs}, record=record)


def read_record(obj: StoredObject, cls):
    """The stage record stored in `obj`, as `cls`."""
    tensors = {name: obj.torch(name) for name in obj.tensors}
    return cls.from_parts(tensors, obj.attrs.get("record", {}))


def load(setup: Setup, stage: str, output: StageOutput) -> StoredObject:
    return open_store(setup.store).open(stage, output.key)


def stage_record(setup: Setup, stage: str, output: StageOutput, cls):
    """A stored stage record, from memory when this process has it."""
    where = (open_store(setup.store).root, stage, output.key)
    if where in _recent:
        _recent.move_to_end(where)
        return _recent[where]
    return _remember(where, read_record(load(setup, stage, output), cls))


def stage_tensors(setup: Setup, stage: str, output: StageOutput) -> dict[str, torch.Tensor]:
    """Every tensor of a stored stage output, from memory when this process has them."""
    where = (open_store(setup.store).root, f"{stage}/tensors", output.key)
    if where in _recent:
        _recent.move_to_end(where)
        return _recent[where]
    obj = load(setup, stage, output)
    return _remember(where, {name: obj.torch(name) for name in obj.tensors})


def load_graph(setup: Setup, pre: StageOutput, targets: StageOutput, rows: StageOutput):
    """The attribution graph assembled from the three stored stages it is made of."""
    where = (open_store(setup.store).root, "graph", rows.key)
    if where in _recent:
        return _recent[where]
    pre_record = stage_record(setup, "precompute", pre, Precompute)
    graph = assemble(
        pre_record,
        stage_record(setup, "targets", targets, Targets),
        stage_record(setup, "rows", rows, Rows),
    )
    graph.token_strings = load(setup, "precompute", pre).attrs["token_strings"]
    return _remember(where, graph)


# ------------------------------------------------------------------------------------ tasks


@task(name="tokenize", cache_policy=NO_CACHE)
def tokenize_task(setup: Setup, prompt: str):
    """Prompt text -> token ids, start token first (keyed by the model and the text)."""
    model_id = model_identity(setup.model)

    def compute() -> Artifact:
        rm = loaded(setup).replacement
        tokens = tokenize(rm, prompt)
        return Artifact(
            tensors={"tokens": tokens},
            attrs={
                "prompt_hash": prompt_digest(tokens),
                "token_strings": token_strings(rm, tokens),
            },
        )

    return run_stage(
        setup,
        "tokenize",
        params={"prompt": prompt},
        inputs={"model": model_id},
        compute=compute,
    )


@task(name="precompute", cache_policy=NO_CACHE)
def precompute_task(setup: Setup, tokens: StageOutput):
    """Active features, error vectors, token vectors and logits (keyed by model, transcoders,
    prompt hash)."""
    tok = load(setup, "tokenize", tokens)
    inputs = {
        "model": model_identity(setup.model),
        "transcoders": transcoders_identity(setup.transcoders),
        "prompt": tok.attrs["prompt_hash"],
    }

    def compute() -> Artifact:
        model = loaded(setup)
        with model.lock:
            record = precompute(model.replacement, tok.torch("tokens"))
        return record_artifact(record, token_strings=tok.attrs["token_strings"])

    return run_stage(setup, "precompute", params={}, inputs=inputs, compute=compute)


@task(name="targets", cache_policy=NO_CACHE)
def targets_task(
    setup: Setup,
    pre: StageOutput,
    *,
    targets: list[str | int] | None = None,
    max_n_logits: int = 10,
    desired_logit_prob: float = 0.95,
):
    """The logit nodes: salient (probability-ranked) or the explicit target tokens."""
    if targets:
        params: dict[str, Any] = {"targets": list(targets)}
    else:
        params = {"max_n_logits": max_n_logits, "desired_logit_prob": desired_logit_prob}

    def compute() -> Artifact:
        record = stage_record(setup, "precompute", pre, Precompute)
        model = loaded(setup)
        chosen = choose_targets(
            model.replacement,
            record,
            targets or None,
            max_n_logits=max_n_logits,
            desired_logit_prob=desired_logit_prob,
        )
        return record_artifact(chosen)

    return run_stage(
        setup,
        "targets",
        params=params,
        inputs={"precompute": pre.key},
        compute=compute,
    )


@task(name="rows", cache_policy=NO_CACHE)
def rows_task(
    setup: Setup,
    pre: StageOutput,
    targets: StageOutput,
    *,
    max_feature_nodes: int | None = None,
    batch_size: int = 64,
    update_interval: int = 4,
):
    """Backward passes: the edges into every logit and (budgeted) feature node."""
    params = {
        "max_feature_nodes": max_feature_nodes,
        "batch_size": batch_size,
        "update_interval": update_interval,
    }

    def compute() -> Artifact:
        pre_record = stage_record(setup, "precompute", pre, Precompute)
        target_record = stage_record(setup, "targets", targets, Targets)
        model = loaded(setup)
        with model.lock:
            record = compute_rows(model.replacement, pre_record, target_record, **params)
        return record_artifact(record)

    return run_stage(
        setup,
        "rows",
        params=params,
        inputs={"precompute": pre.key, "targets": targets.key},
        compute=compute,
    )


@task(name="influence", cache_policy=NO_CACHE)
def influence_task(setup: Setup, pre: StageOutput, targets: StageOutput, rows: StageOutput):
    """Node influence, its per-step trace, and the replacement and completeness scores."""

    def compute() -> Artifact:
        graph = load_graph(setup, pre, targets, rows)
        influence, trace = node_influence(graph)
        replacement, completeness = graph_scores(graph)
        return Artifact(
            tensors={"influence": influence, "trace": _stack(trace, graph.n_nodes)},
            attrs={"replacement_score": replacement, "completeness_score": completeness},
        )

    return run_stage(setup, "influence", params={}, inputs={"rows": rows.key}, compute=compute)


@task(name="prune", cache_policy=NO_CACHE)
def prune_task(
    setup: Setup,
    pre: StageOutput,
    targets: StageOutput,
    rows: StageOutput,
    influence: StageOutput,
    *,
    node_threshold: float = 0.8,
    edge_threshold: float = 0.98,
):
    """Node and edge masks at the given thresholds; the kept edges with their scores."""
    params = {"node_threshold": node_threshold, "edge_threshold": edge_threshold}

    def compute() -> Artifact:
        graph = load_graph(setup, pre, targets, rows)
        details = prune_with_details(graph, node_threshold, edge_threshold)
        result = details.result
        return Artifact(
            tensors={
                "node_mask": result.node_mask,
                "cumulative_scores": result.cumulative_scores,
                "kept_edges": details.kept_edges,
                "edge_scores": details.edge_scores,
                "edge_trace": _stack(details.edge_trace, graph.n_nodes),
            },
            attrs={
                "n_nodes_kept": int(result.node_mask.sum()),
                "n_edges_kept": int(len(details.kept_edges)),
            },
        )

    return run_stage(
        setup,
        "prune",
        params=params,
        inputs={"influence": influence.key},
        compute=compute,
    )


@task(name="export", cache_policy=NO_CACHE)
def export_task(
    setup: Setup,
    pre: StageOutput,
    targets: StageOutput,
    rows: StageOutput,
    pruned: StageOutput,
    *,
    prompt: str,
    slug: str,
):
    """The pruned graph as Neuronpedia-format JSON (validated against the published schema)."""

    def compute() -> Artifact:
        graph = load_graph(setup, pre, targets, rows)
        result = pruned_result(setup, pruned, graph)
        prune_obj = load(setup, "prune", pruned)
        doc = graph_json(
            graph,
            result,
            slug=slug,
            scan=setup.model_label,
            prompt=prompt,
            node_threshold=prune_obj.params["node_threshold"],
            edge_threshold=prune_obj.params["edge_threshold"],
            generation_settings=load(setup, "rows", rows).params,
        )
        validate(doc)
        return Artifact(files={"graph.json": json.dumps(doc).encode()}, attrs={"slug": slug})

    return run_stage(
        setup,
        "export",
        params={"slug": slug, "prompt": prompt},
        inputs={"prune": pruned.key},
        compute=compute,
    )


def pruned_result(setup: Setup, pruned: StageOutput, graph: AttributionGraph):
    """The stored prune masks as a `PruneResult` (the edge mask rebuilt from kept edges)."""
    from attribution import PruneResult

    tensors = stage_tensors(setup, "prune", pruned)
    edges = tensors["kept_edges"]
    edge_mask = torch.zeros(graph.n_nodes, graph.n_nodes, dtype=torch.bool)
    edge_mask[edges[:, 0], edges[:, 1]] = True
    return PruneResult(tensors["node_mask"], edge_mask, tensors["cumulative_scores"])


def _stack(trace: list[torch.Tensor], n_nodes: int) -> torch.Tensor:
    """Per-step influence terms as one (n_steps, N) tensor."""
    return torch.stack(trace) if trace else torch.zeros(0, n_nodes)
