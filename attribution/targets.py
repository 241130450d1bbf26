"""Stage 2, targets: which next-token logits the graph explains.

A logit node does not read the raw logit but the *demeaned* logit: the token's unembedding
column minus the mean column of the unembedding, dotted with the final normalised residual. Its
weight in the influence computation is the token's probability.

Salient mode takes the most probable tokens, in order, until their cumulative probability reaches
`desired_logit_prob`, at most `max_n_logits` of them. Explicit mode takes the targets it is given
(`attribution.target_specs`): tokens, and *directions* of the final normalised residual, such as
the logit difference W_U[:, A] - W_U[:, B]. A direction node reads its vector dotted with the
final normalised residual (no demeaning: a difference of columns is already free of the mean),
and is weighted by the spec's weight instead of a probability. Like circuit-tracer, a direction
gets the virtual token id d_vocab + (its index in the list), so node ids stay unique.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from circuitflow.attribution.params import DEFAULTS, check
from circuitflow.attribution.serialize import Record
from circuitflow.attribution.target_specs import (
    Spec,
    TargetSpecError,
    canonical_targets,
    kind_of,
    weight_of,
)


class TargetError(ValueError):
    """Target tokens or settings that cannot be used."""


@dataclass
class Targets(Record):
    """The logit nodes of a graph.

    token_ids:     (k,) int64 vocabulary ids; d_vocab + index for a direction
    probabilities: (k,) the logit weights: a token's softmax probability at the last position,
                   a direction's weight
    vectors:       (k, d_model) injected at the final residual: demeaned unembedding columns,
                   or the directions
    token_strings: the names: decoded tokens, direction names
    kinds:         "token" or "direction" for each (empty in records stored before directions
                   existed: all tokens)
    values:        (k,) at the last position: a token's logit, a direction's dot product with
                   the final normalised residual plus its offset
    offsets:       (k,) what a direction adds to its dot product: for a logit difference the
                   unembedding biases' difference, so that its value is exactly logit A - logit B;
                   0 for tokens and plain directions
    """

    token_ids: torch.Tensor
    probabilities: torch.Tensor
    vectors: torch.Tensor
    token_strings: list[str]
    kinds: list[str] = field(default_factory=list)
    values: torch.Tensor | None = None
    offsets: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.token_ids.shape[0])

    def kind(self, rank: int) -> str:
        return self.kinds[rank] if self.kinds else "token"

    def measure(
        self,
        rank: int,
        last_logits: torch.Tensor,  # (d_vocab,) of some forward pass, at the last position
        final_residual: torch.Tensor,  # (d_model,) of the same pass, at the last position
    ) -> tuple[float, float]:
        """Target `rank`'s (value, probability) in a forward pass; a direction has no
        probability (NaN). On the clean pass this gives `values[rank]`."""
        if self.kind(rank) == "token":
            token = int(self.token_ids[rank])
            probs = torch.softmax(last_logits.float(), dim=-1)
            return float(last_logits[token]), float(probs[token])
        offset = 0.0 if self.offsets is None else float(self.offsets[rank])
        vector = self.vectors[rank].to(final_residual)
        return float(vector @ final_residual) + offset, math.nan


def check_target_settings(max_n_logits: int, desired_logit_prob: float) -> None:
    check("max_n_logits", max_n_logits, TargetError)
    check("desired_logit_prob", desired_logit_prob, TargetError)


def salient_targets(
    last_logits: torch.Tensor,  # (d_vocab,)
    W_U: torch.Tensor,  # (d_model, d_vocab)
    tokenizer,
    *,
    max_n_logits: int = DEFAULTS.max_n_logits,
    desired_logit_prob: float = DEFAULTS.desired_logit_prob,
) -> Targets:
    """The most probable next tokens until their cumulative probability reaches the goal."""
    check_target_settings(max_n_logits, desired_logit_prob)
    probs = torch.softmax(last_logits.float(), dim=-1)
    top_p, top_ids = probs.topk(min(max_n_logits, probs.shape[0]))
    n_keep = int(torch.searchsorted(top_p.cumsum(0), desired_logit_prob)) + 1
    return _make_targets(top_ids[:n_keep], last_logits, W_U, tokenizer)


def explicit_targets(
    targets: Sequence[Spec] | torch.Tensor,
    last_logits: torch.Tensor,  # (d_vocab,)
    W_U: torch.Tensor,  # (d_model, d_vocab)
    tokenizer,
    *,
    final_residual: torch.Tensor | None = None,  # (d_model,) needed for "direction" specs
    b_U: torch.Tensor | None = None,  # (d_vocab,) the unembedding bias, if the model has one
) -> Targets:
    """Targets for the given specs (see `attribution.target_specs`): tokens as strings that
    are exactly one token or as ids, logit differences, directions."""
    if len(targets) == 0:
        raise TargetError("the list of target tokens is empty")
    items = targets.tolist() if isinstance(targets, torch.Tensor) else targets
    try:
        specs = canonical_targets(items)
    except TargetSpecError as error:
        raise TargetError(str(error)) from None
    probs = torch.softmax(last_logits.float(), dim=-1)
    last_logits = last_logits.to(W_U.device)
    d_vocab = W_U.shape[1]
    mean_column = W_U.mean(dim=1)  # (d_model,)
    ids, names, weights, vectors, values, offsets = [], [], [], [], [], []
    for index, spec in enumerate(specs):
        if kind_of(spec) == "token":
            token_id = _token_id(spec, tokenizer, d_vocab)
            ids.append(token_id)
            names.append(tokenizer.decode([token_id]))
            weights.append(float(probs[token_id]))
            vectors.append(W_U[:, token_id] - mean_column)
            values.append(last_logits[token_id])
            offsets.append(0.0)
            continue
        ids.append(d_vocab + index)
        weights.append(weight_of(spec))
        if "logit_diff" in spec:
            a, b = (_token_id(t, tokenizer, d_vocab) for t in spec["logit_diff"])
            if a == b:
                raise TargetError(f"logit difference {spec['logit_diff']} names one token twice")
            names.append(f"logit({tokenizer.decode([a])})-logit({tokenizer.decode([b])})")
            vectors.append(W_U[:, a] - W_U[:, b])
            values.append(last_logits[a] - last_logits[b])
            offsets.append(0.0 if b_U is None else float((b_U[a] - b_U[b]).detach()))
        else:
            vector = torch.tensor(spec["vector"], dtype=W_U.dtype, device=W_U.device)
            if vector.shape != (W_U.shape[0],):
                raise TargetError(
                    f"direction {spec['direction']!r} has {vector.shape[0]} entries; the model's "
                    f"residual stream has d_model={W_U.shape[0]}"
                )
            if final_residual is None:
                raise TargetError("a direction target needs the final residual to be valued")
            names.append(spec["direction"])
            vectors.append(vector)
            values.append(vector @ final_residual.to(vector))
            offsets.append(0.0)
    return Targets(
        token_ids=torch.tensor(ids, dtype=torch.long),
        probabilities=torch.tensor(weights, dtype=torch.float32),
        vectors=torch.stack(vectors).detach(),
        token_strings=names,
        kinds=[kind_of(spec) for spec in specs],
        values=torch.stack(values).float().cpu(),
        offsets=torch.tensor(offsets, dtype=torch.float32),
    )


def needs_final_residual(targets: Sequence[Spec] | torch.Tensor | None) -> bool:
    """Whether valuing these targets needs the final residual (a direction spec is present)."""
    if targets is None or isinstance(targets, torch.Tensor):
        return False
    try:
        specs = canonical_targets(targets)
    except TargetSpecError:
        return False  # explicit_targets says what is wrong
    return any(isinstance(spec, dict) and "direction" in spec for spec in specs)


def _token_id(spec: str | int, tokenizer, d_vocab: int) -> int:
    if isinstance(spec, str):
        return _single_token_id(spec, tokenizer)
    if not 0 <= spec < d_vocab:
        raise TargetError(f"target token id {spec} is outside [0, {d_vocab})")
    return spec


def _single_token_id(text: str, tokenizer) -> int:
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise TargetError(
            f"target {text!r} is {len(ids)} tokens {ids}; give a string that is exactly one token"
        )
    if tokenizer.unk_token_id is not None and ids[0] == tokenizer.unk_token_id:
        raise TargetError(f"target {text!r} is not in the model's vocabulary")
    return int(ids[0])


def _make_targets(
    ids: torch.Tensor, last_logits: torch.Tensor, W_U: torch.Tensor, tokenizer
) -> Targets:
    probs = torch.softmax(last_logits.float(), dim=-1)
    ids = ids.to(W_U.device)
    vectors = (W_U[:, ids] - W_U.mean(dim=1, keepdim=True)).T  # (k, d_model)
    return Targets(
        token_ids=ids.to(torch.long).cpu(),
        probabilities=probs[ids.to(probs.device)].cpu(),
        vectors=vectors.detach(),
        token_strings=[tokenizer.decode([int(i)]) for i in ids.tolist()],
        kinds=["token"] * len(ids),
        values=last_logits.float()[ids.to(last_logits.device)].cpu(),
        offsets=torch.zeros(len(ids)),
    )
