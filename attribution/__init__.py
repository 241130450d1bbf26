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

Importing this package does not import TransformerLens (seconds); loading a model does.
"""

from circuitflow.attribution.attribute import attribute, choose_targets, tokenize
from circuitflow.attribution.graph import AttributionGraph, Node, assemble
from circuitflow.attribution.influence import node_influence
from circuitflow.attribution.intervene import (
    Generation,
    Intervener,
    InterventionError,
    InterventionResult,
    generate,
    intervene,
)
from circuitflow.attribution.models import ModelLoadError, load_model, save_model
from circuitflow.attribution.params import ParamError, RunParams
from circuitflow.attribution.precompute import Precompute, precompute
from circuitflow.attribution.prune import (
    PruneDetails,
    PruneResult,
    ThresholdError,
    prune,
    prune_with_details,
)
from circuitflow.attribution.replacement import ModelMismatchError, ReplacementModel
from circuitflow.attribution.rows import BudgetError, Rows, compute_rows
from circuitflow.attribution.scores import graph_scores
from circuitflow.attribution.target_specs import direction, logit_diff
from circuitflow.attribution.targets import TargetError, Targets
from circuitflow.attribution.tokens import PromptError
from circuitflow.attribution.transcoders import (
    Activation,
    TranscoderError,
    Transcoders,
    load_transcoders,
)

__all__ = [
    "Activation",
    "AttributionGraph",
    "BudgetError",
    "ModelLoadError",
    "ModelMismatchError",
    "Node",
    "ParamError",
    "Precompute",
    "PromptError",
    "PruneDetails",
    "PruneResult",
    "ReplacementModel",
    "Rows",
    "RunParams",
    "TargetError",
    "Targets",
    "Generation",
    "InterventionError",
    "InterventionResult",
    "Intervener",
    "ThresholdError",
    "TranscoderError",
    "Transcoders",
    "assemble",
    "attribute",
    "choose_targets",
    "compute_rows",
    "direction",
    "generate",
    "graph_scores",
    "intervene",
    "load_model",
    "load_transcoders",
    "logit_diff",
    "node_influence",
    "precompute",
    "prune",
    "prune_with_details",
    "save_model",
    "tokenize",
]
