"""`attribute`: a prompt's attribution graph, computed stage by stage.

    tokens  = tokenize(model, prompt)                 prompt -> (n_pos,) ids, start token first
    pre     = precompute(model, tokens)               features, errors, embeddings, logits
    targets = choose_targets(model, pre, ...)         which logits to explain
    rows    = compute_rows(model, pre, targets, ...)  backward passes: the edges
    graph   = assemble(pre, targets, rows)            the square adjacency

Each stage's output is a plain record that can be saved and reloaded (the workflow caches them
separately): resuming from a reloaded `Precompute` gives the same adjacency.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

import circuitflow.attribution.analysis as analysis
from circuitflow.attribution.graph import AttributionGraph, assemble
from circuitflow.attribution.memory import check_run
from circuitflow.attribution.params import DEFAULTS
from circuitflow.attribution.precompute import Precompute, precompute
from circuitflow.attribution.replacement import ReplacementModel
from circuitflow.attribution.rows import check_budget, compute_rows
from circuitflow.attribution.target_specs import Spec
from circuitflow.attribution.targets import (
    Targets,
    check_target_settings,
    explicit_targets,
    needs_final_residual,
    salient_targets,
)
from circuitflow.attribution.tokens import to_token_ids


def tokenize(model: ReplacementModel, prompt: str | Sequence[int] | torch.Tensor) -> torch.Tensor:
    """The prompt's token ids (n_pos,), start token first, checked against the model."""
    cfg = model.cfg
    return to_token_ids(prompt, model.tokenizer, n_ctx=cfg.n_ctx, d_vocab=cfg.d_vocab)


def choose_targets(
    model: ReplacementModel,
    pre: Precompute,
    targets: Sequence[Spec] | torch.Tensor | None = None,
    *,
    max_n_logits: int = DEFAULTS.max_n_logits,
    desired_logit_prob: float = DEFAULTS.desired_logit_prob,
) -> Targets:
    """Salient targets when `targets` is None, else the given specs (tokens, directions)."""
    logits = pre.last_logits.to(model.device)
    if targets is None:
        chosen = salient_targets(
            logits,
            model.W_U,
            model.tokenizer,
            max_n_logits=max_n_logits,
            desired_logit_prob=desired_logit_prob,
        )
    else:
        final = model.final_residual(pre.tokens)[-1] if needs_final_residual(targets) else None
        chosen = explicit_targets(
            targets, logits, model.W_U, model.tokenizer, final_residual=final, b_U=model.model.b_U
        )
    if analysis.wants("targets_end"):
        analysis.fire(
            "targets_end",
            mode="salient" if targets is None else "explicit",
            last_logits=logits,
            token_ids=chosen.token_ids,
            probabilities=chosen.probabilities,
            vectors=chosen.vectors,
            token_strings=chosen.token_strings,
        )
    return chosen


def token_strings(model: ReplacementModel, tokens: torch.Tensor) -> list[str]:
    return [model.tokenizer.decode([int(t)]) for t in tokens.tolist()]


def attribute(
    prompt: str | Sequence[int] | torch.Tensor,
    model: ReplacementModel,
    *,
    targets: Sequence[Spec] | torch.Tensor | None = None,
    max_n_logits: int = DEFAULTS.max_n_logits,
    desired_logit_prob: float = DEFAULTS.desired_logit_prob,
    max_feature_nodes: int | None = DEFAULTS.max_feature_nodes,
    batch_size: int = DEFAULTS.batch_size,
    update_interval: int = DEFAULTS.update_interval,
    progress: Callable[[int, int], None] | None = None,
    max_memory: int | str | None = None,
) -> AttributionGraph:
    """Compute the attribution graph of `prompt`'s next-token prediction.

    prompt: text, token ids or a 1-D tensor; a start token is prepended unless the first token
        is a special token.
    targets: what to explain; None picks the most probable tokens until `desired_logit_prob`
        of probability, at most `max_n_logits`. Else a list of tokens (strings that are one
        token, or ids) and directions: `logit_diff(" Austin", " Dallas")`,
        `direction(name, vector)` (from `attribution.target_specs`) or circuit-tracer's
        `CustomTarget(name, weight, vector)`.
    max_feature_nodes: a budget of feature nodes, filled in order of estimated influence;
        None (or "all") keeps every active feature.
    batch_size: targets per backward pass; update_interval: batches between re-rankings.
    max_memory: bytes or a size like "8GB": refuse (`MemoryLimitError`) a run whose estimated
        peak (`attribution.memory`) is larger, after the forward pass that counts the active
        features and before the backward passes.
    """
    max_feature_nodes = None if max_feature_nodes == "all" else max_feature_nodes
    check_target_settings(max_n_logits, desired_logit_prob)
    check_budget(max_feature_nodes, batch_size, update_interval)
    tokens = tokenize(model, prompt)
    pre = precompute(model, tokens)
    chosen = choose_targets(
        model, pre, targets, max_n_logits=max_n_logits, desired_logit_prob=desired_logit_prob
    )
    check_run(
        model,
        pre.n_pos,
        pre.n_active,
        len(chosen),
        max_memory,
        max_feature_nodes=max_feature_nodes,
        batch_size=batch_size,
    )
    rows = compute_rows(
        model,
        pre,
        chosen,
        max_feature_nodes=max_feature_nodes,
        batch_size=batch_size,
        update_interval=update_interval,
        progress=progress,
    )
    return assemble(pre, chosen, rows, token_strings(model, tokens))
