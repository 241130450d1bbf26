"""Export a pruned graph as JSON in the format circuit-tracer's and Neuronpedia's frontends read.

The format (JSON Schema "Anthropic Attribution Graph" 1.0.0, and circuit-tracer's pydantic
`frontend.graph_models.Model`) lists the kept nodes and links:

- each node has an id, a layer ("E" for embeddings, n_layers + 1 for logits), a position
  (`ctx_idx`), a type, a label (`clerp`) and, for dynamic pruning in the frontend, its
  cumulative influence (the share of all influence held by nodes at least as influential);
- feature nodes carry `feature`, one integer naming (layer, feature) by the Cantor pairing
  (layer + f)(layer + f + 1)/2 + f, which is how the frontends look up feature details; error
  nodes carry -1, embeddings their position, logits their token id;
- each link has source, target and weight (the edge's direct effect).

Node ids, the order of nodes and links, and the logit labels follow circuit-tracer's
`create_graph_files`, except error ids: `{layer}_-1_{pos}` (circuit-tracer 0.5.0 writes
`0_{layer}_{pos}`, which collides with layer-0 features).

The document is built from the graph and its prune result; what people add later (feature
labels, a saved subgraph) is laid over it with `with_labels` and `with_subgraph`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import fastjsonschema
import torch

from circuitflow.attribution.graph import AttributionGraph
from circuitflow.attribution.prune import PruneResult

FEATURE_TYPE = {
    "feature": "cross layer transcoder",
    "error": "mlp reconstruction error",
    "token": "embedding",
    "logit": "logit",
}
GENERATOR = {"name": "circuitflow", "version": "0.1.0"}
SCHEMA_PATH = Path(__file__).with_name("neuronpedia_graph_schema.json")


@cache
def schema() -> dict:
    """The published JSON Schema (draft-07) that Neuronpedia validates uploads against."""
    return json.loads(SCHEMA_PATH.read_text())


class GraphSchemaError(ValueError):
    """A graph document that the published schema refuses; the message says where and why."""


@cache
def _compiled_validator():
    # Compiled to Python once: 0.4 ms a graph instead of the 110 ms jsonschema takes to walk it.
    return fastjsonschema.compile(schema())


def validate(doc: dict) -> None:
    """Raise GraphSchemaError if `doc` is not a valid graph document."""
    try:
        _compiled_validator()(doc)
    except fastjsonschema.JsonSchemaValueException as error:
        raise GraphSchemaError(f"graph JSON does not fit the schema: {error.message}") from None


def cantor(layer: int, feature: int) -> int:
    return (layer + feature) * (layer + feature + 1) // 2 + feature


@dataclass(frozen=True)
class Provenance:
    """Where a graph came from, recorded in its metadata.

    slug:        the graph's name (file name and index key in a graph directory)
    scan:        the model's name (Neuronpedia reads it as the model id)
    transcoders: the transcoder set (a directory or hub reference)
    run_id, model_digest, transcoders_digest: the circuitflow run and its identities
    settings:    the attribution settings (max_feature_nodes, batch_size, ...)
    """

    slug: str
    scan: str
    prompt: str
    transcoders: str = ""
    model: str = ""
    run_id: str = ""
    model_digest: str = ""
    transcoders_digest: str = ""
    settings: Mapping[str, object] = field(default_factory=dict)


def graph_json(
    graph: AttributionGraph,
    pruned: PruneResult,
    provenance: Provenance,
    *,
    node_threshold: float,
    edge_threshold: float,
) -> dict:
    """The kept part of `graph` as a graph document (see the module docs)."""
    ids = graph.node_ids()
    kept = torch.nonzero(pruned.node_mask).flatten().tolist()
    cumulative = pruned.cumulative_scores.tolist()
    nodes = [_node(graph, i, ids[i], cumulative[i]) for i in kept]
    targets, sources = torch.nonzero(pruned.edge_mask, as_tuple=True)
    weights = graph.adjacency[targets, sources].tolist()
    links = [
        {"source": ids[s], "target": ids[t], "weight": w}
        for t, s, w in zip(targets.tolist(), sources.tolist(), weights, strict=True)
    ]
    return {
        "metadata": _metadata(graph, provenance, node_threshold, edge_threshold),
        "qParams": subgraph_params(),
        "nodes": nodes,
        "links": links,
    }


def _metadata(
    graph: AttributionGraph, p: Provenance, node_threshold: float, edge_threshold: float
) -> dict:
    return {
        "slug": p.slug,
        "scan": p.scan,
        "transcoder_list": [p.transcoders] if p.transcoders else [],
        "prompt_tokens": list(graph.token_strings),
        "prompt": p.prompt,
        "node_threshold": node_threshold,
        "schema_version": 1,
        "generation_settings": {k: v for k, v in p.settings.items() if v is not None},
        "pruning_settings": {"node_threshold": node_threshold, "edge_threshold": edge_threshold},
        "info": {
            "description": f"circuitflow run {p.run_id} of model {p.scan}",
            "source_urls": [p.transcoders] if p.transcoders else [],
            "generator": dict(GENERATOR),
            "create_time_ms": time.time() * 1000,
            "provenance": {
                "run_id": p.run_id,
                "model": p.model,
                "model_digest": p.model_digest,
                "transcoders": p.transcoders,
                "transcoders_digest": p.transcoders_digest,
            },
        },
    }


def _node(graph: AttributionGraph, index: int, node_id: str, cumulative: float) -> dict:
    node = graph.node(index)
    out = {
        "node_id": node_id,
        "feature_type": FEATURE_TYPE[node.kind],
        "ctx_idx": node.pos,
        "clerp": "",
        "token_prob": 0.0,
        "is_target_logit": False,
        "run_idx": 0,
        "reverse_ctx_idx": 0,
        "influence": cumulative,
        "activation": None,
    }
    if node.kind == "feature":
        return out | {
            "feature": cantor(node.layer, node.feature),
            "layer": str(node.layer),
            "jsNodeId": f"{node.layer}_{node.feature}-0",
            "activation": node.activation,
        }
    if node.kind == "error":
        return out | {"feature": -1, "layer": str(node.layer), "jsNodeId": f"{node_id}-0"}
    if node.kind == "token":
        return out | {
            "feature": node.pos,
            "layer": "E",
            "jsNodeId": f"E_{node.token_id}-{node.pos}",
        }
    rank = index - graph.logit_start
    token = graph.logit_tokens[rank] if rank < len(graph.logit_tokens) else ""
    prob = float(graph.logit_probabilities[rank])
    # The frontends read a logit's token and probability back out of this label.
    return out | {
        "feature": node.token_id,
        "layer": str(graph.n_layers + 1),
        "jsNodeId": f"L_{node.token_id}-{node.pos}",
        "clerp": f'Output "{token}" (p={prob:.3f})',
        "token_prob": prob,
        "is_target_logit": rank == 0,
        "influence": None,  # logits are the targets of influence, and always kept
    }


def subgraph_params(
    pinned_ids: Sequence[str] = (), supernodes: Sequence[Sequence[str]] = (), clicked_id: str = ""
) -> dict:
    """The `qParams` block: a saved subgraph (pinned nodes; supernodes as [name, *member ids])."""
    return {
        "pinnedIds": list(pinned_ids),
        "supernodes": [list(group) for group in supernodes],
        "linkType": "both",
        "clickedId": clicked_id,
        "sg_pos": "",
    }


def with_labels(doc: dict, labels: Mapping[tuple[int, int], str]) -> dict:
    """The document with feature nodes labelled from `labels`, {(layer, feature): label}."""
    nodes = []
    for node in doc["nodes"]:
        if node["feature_type"] == FEATURE_TYPE["feature"]:
            layer, feature = node["node_id"].split("_")[:2]
            label = labels.get((int(layer), int(feature)))
            node = node | {"clerp": label} if label else node
        nodes.append(node)
    return doc | {"nodes": nodes}


def with_subgraph(doc: dict, qparams: Mapping[str, object]) -> dict:
    """The document with a saved subgraph's pins and supernodes as its `qParams`."""
    return doc | {"qParams": subgraph_params() | dict(qparams)}
