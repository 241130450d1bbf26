"""Stage 2, targets: which next-token logits the graph explains.

A logit node does not read the raw logit but the *demeaned* logit: the token's unembedding
column minus the mean column of the unembedding, dotted with the final normalised residual. Its
weight in the influence computation is the token's probability.

Salient mode takes the most probable tokens, in order, until their cumulative probability reaches
`desired_logit_prob`, at most `max_n_logits` of them. Explicit mode takes the tokens it is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from circuitflow.attribution.params import DEFAULTS, check
from circuitflow.attribution.serialize import Record


class TargetError(ValueError):
    """Target tokens or settings that cannot be used."""


@dataclass
class Targets(Record):
    """The logit nodes of a graph.

    token_ids:     (k,) int64 vocabulary ids
    probabilities: (k,) softmax probabilities at the last position (the logit weights)
    vectors:       (k, d_model) demeaned unembedding columns, injected at the final residual
    token_strings: the decoded tokens, for people
    """

    token_ids: torch.Tensor
    probabilities: torch.Tensor
    vectors: torch.Tensor
    token_strings: list[str]

    def __len__(self) -> int:
        return int(self.token_ids.shape[0])


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
    return _make_targets(top_ids[:n_keep], probs, W_U, tokenizer)


def explicit_targets(
    tokens: Sequence[str | int] | torch.Tensor,
    last_logits: torch.Tensor,
    W_U: torch.Tensor,
    tokenizer,
) -> Targets:
    """Targets for the given tokens: each a token id or a string that is exactly one token."""
    if len(tokens) == 0:
        raise TargetError("the list of target tokens is empty")
    d_vocab = W_U.shape[1]
    ids = []
    for token in list(tokens):
        if isinstance(token, str):
            ids.append(_single_token_id(token, tokenizer))
        else:
            token_id = int(token)
            if not 0 <= token_id < d_vocab:
                raise TargetError(f"target token id {token_id} is outside [0, {d_vocab})")
            ids.append(token_id)
    probs = torch.softmax(last_logits.float(), dim=-1)
    return _make_targets(torch.tensor(ids, device=W_U.device), probs, W_U, tokenizer)


def _single_token_id(text: str, tokenizer) -> int:
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise TargetError(
            f"target {text!r} is {len(ids)} tokens {ids}; give a string that is exactly one token"
        )
    if tokenizer.unk_token_id is not None and ids[0] == tokenizer.unk_token_id:
        raise TargetError(f"target {text!r} is not in the model's vocabulary")
    return int(ids[0])


def _make_targets(ids: torch.Tensor, probs: torch.Tensor, W_U: torch.Tensor, tokenizer) -> Targets:
    ids = ids.to(W_U.device)
    vectors = (W_U[:, ids] - W_U.mean(dim=1, keepdim=True)).T  # (k, d_model)
    return Targets(
        token_ids=ids.to(torch.long).cpu(),
        probabilities=probs[ids.to(probs.device)].cpu(),
        vectors=vectors.detach(),
        token_strings=[tokenizer.decode([int(i)]) for i in ids.tolist()],
    )
