"""circuitflow's attribution core: attribution graphs for TransformerLens models with transcoders.

Pure PyTorch: no workflow, no storage. Read top to bottom:

    transcoders.py  reading per-layer and cross-layer transcoders (public layout)
    models.py       loading and saving HookedTransformers as plain files
    replacement.py  the local replacement model: freezes that make the model linear
    tokens.py       prompt -> token ids, start token first
    precompute.py   stage 1: active features, error vectors, token vectors, logits
    targets.py      stage 2: the logit nodes
    rows.py         stage 3: backward passes give the edges
    graph.py        stage 4: the square adjacency matrix
    influence.py    influence of every node on the logits
    prune.py        the subgraph that carries most of the influence
    scores.py       replacement and completeness scores
    attribute.py    all stages in one call
    intervene.py    set features to values and rerun the model
"""

from attribution.attribute import attribute, choose_targets, tokenize
from attribution.graph import AttributionGraph, assemble
from attribution.influence import node_influence
from attribution.intervene import InterventionResult, intervene
from attribution.models import ModelLoadError, load_model, save_model
from attribution.precompute import Precompute, precompute
from attribution.prune import PruneDetails, PruneResult, ThresholdError, prune, prune_with_details
from attribution.replacement import ModelMismatchError, ReplacementModel
from attribution.rows import BudgetError, Rows, compute_rows
from attribution.scores import graph_scores
from attribution.targets import TargetError, Targets
from attribution.tokens import PromptError
from attribution.transcoders import Activation, TranscoderError, Transcoders, load_transcoders

__all__ = [
    "Activation",
    "AttributionGraph",
    "BudgetError",
    "ModelLoadError",
    "ModelMismatchError",
    "Precompute",
    "PromptError",
    "PruneDetails",
    "PruneResult",
    "ReplacementModel",
    "Rows",
    "TargetError",
    "Targets",
    "InterventionResult",
    "ThresholdError",
    "TranscoderError",
    "Transcoders",
    "assemble",
    "attribute",
    "choose_targets",
    "compute_rows",
    "graph_scores",
    "intervene",
    "load_model",
    "load_transcoders",
    "node_influence",
    "precompute",
    "prune",
    "prune_with_details",
    "save_model",
    "tokenize",
]
