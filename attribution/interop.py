"""circuit-tracer's saved graphs, read into our `AttributionGraph`.

circuit-tracer saves a `Graph` with `Graph.to_pt`: a pickled dict whose adjacency uses the same
node order as ours ([selected features | errors, layer-major | tokens | logits], rows are
targets), so the conversion renames fields and nothing else. Reading the file needs
circuit-tracer installed (its pickle names circuit-tracer's classes); converting an already
loaded Graph does not: only its attributes are read.
"""

from __future__ import annotations

import os
import pickle
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


def load_circuit_tracer_graph(path: str | os.PathLike) -> AttributionGraph:
    """Read a circuit-tracer `.pt` graph file (needs circuit-tracer installed to unpickle it)."""
    try:
        from circuit_tracer.graph import Graph
    except ImportError:
        raise ValueError(
            f"reading {os.fspath(path)!r} needs circuit-tracer (its graph files are pickles of "
            "its classes): pip install circuit-tracer"
        ) from None
    try:
        return from_circuit_tracer(Graph.from_pt(os.fspath(path)))
    except (OSError, RuntimeError, KeyError, TypeError, AttributeError, EOFError) as error:
        raise ValueError(
            f"{os.fspath(path)!r} is not a circuit-tracer graph file: {error}"
        ) from None
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"{os.fspath(path)!r} is not a circuit-tracer graph file: {error}"
        ) from None
