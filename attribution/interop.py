"""circuit-tracer's graphs and ours, converted both ways.

circuit-tracer saves a `Graph` with `Graph.to_pt`: a pickled dict whose adjacency uses the same
node order as ours ([selected features | errors, layer-major | tokens | logits], rows are
targets), so the conversion renames fields and nothing else. Reading the file needs
circuit-tracer installed (its pickle names circuit-tracer's classes); converting an already
loaded Graph does not: only its attributes are read. `to_circuit_tracer` goes the other way
(circuit-tracer imported inside it: it is a test-time reference, not a dependency).
"""

from __future__ import annotations

import os
import pickle
import re
from typing import Any

import torch

from circuitflow.attribution.graph import AttributionGraph


def from_circuit_tracer(graph: Any) -> AttributionGraph:
    """Our graph holding exactly a circuit-tracer `Graph`'s nodes and edges."""
    targets = list(graph.logit_targets)
    if isinstance(graph.logit_targets, torch.Tensor):  # files from before LogitTarget
        ids, names = graph.logit_targets.tolist(), [""] * len(targets)
    else:
        ids = [int(t.vocab_idx) for t in targets]
        names = [str(t.token_str) for t in targets]
    return AttributionGraph(
        tokens=graph.input_tokens.to(torch.long).cpu(),
        active_features=graph.active_features.to(torch.long).cpu(),
        activation_values=graph.activation_values.float().cpu(),
        selected_features=graph.selected_features.to(torch.long).cpu(),
        adjacency=graph.adjacency_matrix.float().cpu(),
        logit_token_ids=torch.tensor(ids, dtype=torch.long),
        logit_probabilities=graph.logit_probabilities.float().cpu(),
        n_layers=int(graph.cfg.n_layers),
        logit_tokens=names,
    )


def check_graph(graph: AttributionGraph, where: str) -> AttributionGraph:
    """`graph` if its parts fit together (the adjacency holds exactly its nodes), else a
    ValueError in one line naming `where` and what does not fit."""
    n_active = len(graph.active_features)
    expected = graph.n_features + (graph.n_layers + 1) * graph.n_pos + graph.n_logits
    problems = [
        (graph.adjacency.ndim != 2 or graph.adjacency.shape[0] != graph.adjacency.shape[1],
         f"adjacency of shape {tuple(graph.adjacency.shape)} is not square"),
        (graph.adjacency.shape[0] != expected,
         f"adjacency has {graph.adjacency.shape[0]} nodes, its features, errors, tokens and "
         f"logits make {expected}"),
        (graph.active_features.ndim != 2 or graph.active_features.shape[-1] != 3,
         "active_features is not (n, 3) (layer, position, feature)"),
        (len(graph.activation_values) != n_active,
         "activation_values do not match active_features"),
        (bool((graph.selected_features >= n_active).any() | (graph.selected_features < 0).any()),
         "selected_features point outside active_features"),
        (len(graph.logit_probabilities) != graph.n_logits,
         "logit_probabilities do not match the logit targets"),
    ]  # fmt: skip
    for failed, problem in problems:
        if failed:
            raise ValueError(f"{where} is not a consistent circuit-tracer graph: {problem}")
    return graph


def read_circuit_tracer_file(path: str | os.PathLike) -> Any:
    """circuit-tracer's `Graph` from a `.pt` file (`Graph.to_pt`), or a ValueError in one line
    (not a graph file, truncated, inconsistent, circuit-tracer missing).

    The file is a pickle, read with torch's weights-only unpickler that admits only tensors,
    plain values and the graph's own classes (circuit-tracer's `LogitTarget` and config,
    TransformerLens's config in older files): unlike circuit-tracer's `Graph.from_pt`, a
    file cannot run code while it is read.
    """
    where = os.fspath(path)
    try:
        from circuit_tracer.attribution.targets import LogitTarget
        from circuit_tracer.graph import Graph
        from circuit_tracer.utils.tl_nnsight_mapping import UnifiedConfig
        from transformer_lens import HookedTransformerConfig
    except ImportError:
        raise ValueError(
            f"reading {where!r} needs circuit-tracer (its graph files are pickles of its "
            "classes): pip install circuit-tracer"
        ) from None
    try:
        with torch.serialization.safe_globals(
            [LogitTarget, UnifiedConfig, HookedTransformerConfig]
        ):
            parts = torch.load(where, weights_only=True, map_location="cpu")
        if not isinstance(parts, dict):
            raise TypeError(f"it holds a {type(parts).__name__}, not a graph's fields")
        if isinstance(parts.get("logit_targets"), torch.Tensor):  # files from before LogitTarget
            ids = parts["logit_targets"].tolist()
            parts["logit_targets"] = [LogitTarget(token_str="", vocab_idx=int(i)) for i in ids]
        graph = Graph(**parts)
        check_graph(from_circuit_tracer(graph), repr(where))
        return graph
    except (OSError, RuntimeError, KeyError, TypeError, AttributeError, EOFError, IndexError,
            pickle.UnpicklingError) as error:  # fmt: skip
        raise ValueError(
            f"{where!r} is not a circuit-tracer graph file: {_reason(error)}"
        ) from None


def _reason(error: Exception) -> str:
    """One line saying why a file did not read as a graph."""
    text = str(error).strip()
    refused = re.search(r"GLOBAL (\S+)", text)
    if isinstance(error, pickle.UnpicklingError) and refused:
        return f"it holds a {refused.group(1)}, which a graph file never does (not loaded)"
    return text.splitlines()[0] if text else type(error).__name__


def load_circuit_tracer_graph(path: str | os.PathLike) -> AttributionGraph:
    """Read a circuit-tracer `.pt` graph file (needs circuit-tracer installed to unpickle it)."""
    return from_circuit_tracer(read_circuit_tracer_file(path))


def config_values(cfg: Any) -> dict[str, Any]:
    """A model config (circuit-tracer's `UnifiedConfig`, TransformerLens's config) as JSON
    values: what `to_circuit_tracer` needs to rebuild it, and what names the model."""
    values = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(vars(cfg))
    plain = (str, int, float, bool, type(None))
    return {
        name: value if isinstance(value, plain) else str(value)
        for name, value in values.items()
        if isinstance(value, (*plain, torch.dtype))  # dtypes as names; objects left out
    }


def to_circuit_tracer(
    graph: AttributionGraph,
    cfg: Any = None,
    *,
    prompt: str = "",
    scan: str | list[str] | None = None,
) -> Any:
    """circuit-tracer's `Graph` holding exactly our graph (same node order, same adjacency).

    cfg: the model's config: a TransformerLens or circuit-tracer config, or a dict of its
    values (`config_values`); without one, a config that knows only the graph's layer count
    (enough for circuit-tracer's `prune_graph` and `compute_graph_scores`, not for its
    `create_graph_files`, which loads the tokenizer it names). Needs circuit-tracer installed.
    """
    try:
        from circuit_tracer.attribution.targets import LogitTarget
        from circuit_tracer.graph import Graph
        from circuit_tracer.utils.tl_nnsight_mapping import UnifiedConfig
    except ImportError:
        raise ValueError(
            "converting to circuit-tracer's Graph needs circuit-tracer: pip install circuit-tracer"
        ) from None
    if cfg is None or isinstance(cfg, dict):
        values = {"d_model": 0, "d_head": 0, "n_heads": 0, "d_mlp": 0, "d_vocab": 0,
                  "tokenizer_name": "", "model_name": "", "original_architecture": ""}  # fmt: skip
        values |= {"n_layers": graph.n_layers} | dict(cfg or {})
        values.pop("dtype", None)  # a name here; circuit-tracer keeps a torch dtype
        cfg = UnifiedConfig.from_dict(values)
    names = graph.logit_tokens or [""] * graph.n_logits
    targets = [
        LogitTarget(token_str=name, vocab_idx=token)
        for name, token in zip(names, graph.logit_token_ids.tolist(), strict=True)
    ]
    return Graph(
        input_string=prompt,
        input_tokens=graph.tokens,
        active_features=graph.active_features,
        adjacency_matrix=graph.adjacency,
        cfg=cfg,
        selected_features=graph.selected_features,
        activation_values=graph.activation_values,
        logit_targets=targets,
        logit_probabilities=graph.logit_probabilities,
        scan=scan,
    )
