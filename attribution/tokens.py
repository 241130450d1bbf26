"""Turning a prompt into the token ids we attribute, with clear errors for bad prompts.

Attribution always starts with a special start token at position 0. The first position of a
transformer carries unusually large activations and many active features; the method zeroes that
position's features and errors, so it must hold a token we do not care about. When the prompt's
first token is not already special, the tokenizer's start token is prepended (its id may be 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class PromptError(ValueError):
    """A prompt that cannot be attributed, with what to do about it."""


def start_token_id(tokenizer) -> int:
    """The id prepended at position 0: bos, else pad, else eos, else any special token."""
    for candidate in (
        tokenizer.bos_token_id,
        tokenizer.pad_token_id,
        tokenizer.eos_token_id,
        *tokenizer.all_special_ids,
    ):
        if candidate is not None:  # 0 is a valid id: test for None, not falsiness
            return int(candidate)
    raise PromptError("the tokenizer has no special token to use as the start token")


def to_token_ids(
    prompt: str | Sequence[int] | torch.Tensor,
    tokenizer,
    *,
    n_ctx: int,
    d_vocab: int,
) -> torch.Tensor:
    """Tokenize (or check) a prompt and prepend the start token when needed -> (n_pos,) int64."""
    if isinstance(prompt, str):
        ids = _encode_text(prompt, tokenizer)
    elif isinstance(prompt, torch.Tensor | Sequence):
        ids = torch.as_tensor(prompt, dtype=torch.long).flatten().cpu()
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= d_vocab):
            bad = ids[(ids < 0) | (ids >= d_vocab)].tolist()
            raise PromptError(f"token ids {bad[:5]} are outside the vocabulary [0, {d_vocab})")
    else:
        raise PromptError(
            "a prompt is a string, a list of token ids or a 1-D tensor, "
            f"not {type(prompt).__name__}"
        )

    special = set(tokenizer.all_special_ids) if tokenizer is not None else set()
    if ids.numel() == 0 or (ids.numel() == 1 and int(ids[0]) in special):
        raise PromptError("the prompt is empty: give at least one token to attribute")
    if int(ids[0]) not in special:
        ids = torch.cat([torch.tensor([start_token_id(tokenizer)]), ids])
    if ids.numel() > n_ctx:
        raise PromptError(
            f"the prompt has {ids.numel()} tokens with the start token, but the model's context "
            f"holds {n_ctx}: shorten it by {ids.numel() - n_ctx} tokens"
        )
    return ids


def _encode_text(prompt: str, tokenizer) -> torch.Tensor:
    if not prompt.strip():
        raise PromptError("the prompt is empty: give at least one token to attribute")
    encoded = tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=tokenizer.is_fast)
    ids = torch.tensor(encoded["input_ids"], dtype=torch.long)
    unk = tokenizer.unk_token_id
    if unk is not None and (ids == unk).any():
        where = (ids == unk).nonzero().flatten().tolist()
        if tokenizer.is_fast:
            # Clipped: one unknown "word" may be the whole of a 100,000-character prompt.
            words = [_clip(prompt[slice(*encoded["offset_mapping"][i])]) for i in where]
        else:
            words = [f"token {i}" for i in where]
        raise PromptError(
            f"the prompt has words the model's vocabulary lacks: {words[:10]}; "
            "rephrase with known words (the tokenizer maps these to its unknown token)"
        )
    return ids


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
