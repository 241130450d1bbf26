"""circuitflow's attribution core: attribution graphs for TransformerLens models with transcoders.

Pure PyTorch: no workflow, no storage. Read top to bottom:

    params.py       RunParams: the settings of a run, their defaults and valid ranges
    serialize.py    Record: stage outputs as tensors + JSON, and back
    transcoders.py  reading per-layer and cross-layer transcoders (public layout)
    models.py       loading and saving HookedTransformers as plain files
    replacement.py  the local replacement model: freezes that make the model linear
    tokens.py       prompt -> token ids, start token first
    precompute.py   stage 1: active features, error vectors, token vectors, logits
    target_specs.py what a graph can explain, as JSON: tokens, logit differences, directions
    targets.py      stage 2: the logit nodes
    rows.py         stage 3: backward passes give the edges
    graph.py        stage 4: the square adjacency matrix
    influence.py    influence of every node on the logits
    prune.py        the subgraph that carries most of the influence
    scores.py       replacement and completeness scores
    attribute.py    all stages in one call
    intervene.py    set features to values and rerun the model; generate while steering
    ablation.py     ablation curves: the graph's top features against random ones
    neuronpedia.py  the pruned graph as Neuronpedia-format JSON
    toy.py          small random models and transcoders for tests and benchmarks
    analysis.py     analysis points: attach functions to named steps of all the above
                    (analysis_points.py: the table of points; analysis_functions.py: ready ones)

Names are imported on first use (`circuitflow.attribution.attribute` loads torch then), so
importing one light module such as `params` costs nothing else. Importing this package never
imports TransformerLens (seconds); loading a model does.
"""

import importlib
import sys
import types
from typing import Any

# Each public name and the module that defines it.
_EXPORTS = {
    "Activation": "transcoders",
    "assemble": "graph",
    "attribute": "attribute",
    "AttributionGraph": "graph",
    "BudgetError": "rows",
    "choose_targets": "attribute",
    "compute_rows": "rows",
    "direction": "target_specs",
    "generate": "intervene",
    "Generation": "intervene",
    "graph_scores": "scores",
    "intervene": "intervene",
    "Intervener": "intervene",
    "InterventionError": "intervene",
    "InterventionResult": "intervene",
    "load_model": "models",
    "load_transcoders": "transcoders",
    "logit_diff": "target_specs",
    "ModelLoadError": "models",
    "ModelMismatchError": "replacement",
    "Node": "graph",
    "node_influence": "influence",
    "ParamError": "params",
    "Precompute": "precompute",
    "precompute": "precompute",
    "PromptError": "tokens",
    "prune": "prune",
    "prune_with_details": "prune",
    "PruneDetails": "prune",
    "PruneResult": "prune",
    "ReplacementModel": "replacement",
    "Rows": "rows",
    "RunParams": "params",
    "save_model": "models",
    "TargetError": "targets",
    "Targets": "targets",
    "ThresholdError": "prune",
    "tokenize": "attribute",
    "TranscoderError": "transcoders",
    "Transcoders": "transcoders",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


class _Package(types.ModuleType):
    """This package, minus one import-system habit: importing submodule `prune` binds the name
    `prune` here to the module, which would shadow the function `prune` exported above (the same
    holds for `attribute`, `precompute` and `intervene`). The function wins, as it did when this
    package imported everything eagerly; the modules stay in sys.modules for `from ... import`."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _EXPORTS.get(name) == name:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
