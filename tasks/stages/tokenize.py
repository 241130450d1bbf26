"""Stage tokenize: prompt text -> token ids, start token first.

Keyed by the model and the text. Its identity for later stages is the digest of its token ids,
so two texts that tokenize alike share every stage after this one.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import torch

from circuitflow.attribution import tokenize
from circuitflow.attribution.attribute import token_strings
from circuitflow.attribution.serialize import Record
from circuitflow.store import prompt_digest
from circuitflow.tasks.context import RunContext
from circuitflow.tasks.declare import RunColumn, Stage


@dataclass
class TokenizedPrompt(Record):
    """tokens: (n_pos,) int64, start token first; token_strings: each decoded;
    prompt_hash: the digest of the token ids (the prompt's identity)."""

    tokens: torch.Tensor
    token_strings: list[str]
    prompt_hash: str


def compute(run: RunContext) -> TokenizedPrompt:
    replacement = run.model.replacement
    tokens = tokenize(replacement, run.prompt)
    return TokenizedPrompt(tokens, token_strings(replacement, tokens), prompt_digest(tokens))


def _prompt_hash(run: RunContext) -> str:
    return run.record("tokenize").prompt_hash


def _n_tokens(run: RunContext) -> int:
    return len(run.record("tokenize").tokens)


STAGE = Stage(
    name="tokenize",
    version=1,
    inputs=(),
    params=("prompt",),
    identities=("model",),
    record=TokenizedPrompt,
    compute=compute,
    uses_model=True,
    identity="prompt_hash",
    dims=(("tokens", ("pos",)),),
    run_columns=(
        RunColumn("prompt_hash", pa.string(), _prompt_hash),
        RunColumn("n_tokens", pa.int32(), _n_tokens),
    ),
)
