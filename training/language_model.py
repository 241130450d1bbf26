"""Train the built-in language model (a TransformerLens HookedTransformer) and save it.

The model is a small pre-norm transformer: `n_layers` blocks of attention + MLP, RMSNorm,
rotary position embeddings, GELU MLPs, untied embedding and unembedding. It is trained from
scratch with next-token cross-entropy on packed sequences of world sentences:

    <bos> Dallas is a city in Texas . The capital of the state containing Miami is Tallahassee . ...

Each training sequence starts with `<bos>` (as every prompt does at inference, where
TransformerLens prepends it) and is cut at `seq_len` tokens.

Saved layout (written by `attribution.save_model`, read by `attribution.load_model`):

    DIR/config.json          HookedTransformerConfig fields; dtype as a string ("float32")
    DIR/model.safetensors    the HookedTransformer's weights, float32
    DIR/tokenizer/           a transformers tokenizer directory (see tokenizer.py)
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformers import PreTrainedTokenizerFast

from circuitflow.attribution.models import save_model
from circuitflow.training.config import ModelTrainConfig
from circuitflow.training.tokenizer import encode_words, save_tokenizer

MODEL_NAME = "capitals-4l"


def hooked_config(cfg: ModelTrainConfig, d_vocab: int, seed: int = 0) -> HookedTransformerConfig:
    """The HookedTransformerConfig of a model with the shape in `cfg`."""
    if d_vocab == cfg.d_model:
        # circuit-tracer guesses the unembedding's orientation from its shape.
        raise ValueError("vocabulary size must differ from d_model")
    d_head = cfg.d_model // cfg.n_heads
    return HookedTransformerConfig(
        model_name=MODEL_NAME if cfg.n_layers == 4 else f"capitals-{cfg.n_layers}l",
        n_layers=cfg.n_layers,
        d_model=cfg.d_model,
        n_heads=cfg.n_heads,
        d_head=d_head,
        d_mlp=cfg.d_mlp,
        d_vocab=d_vocab,
        n_ctx=cfg.n_ctx,
        act_fn=cfg.act_fn,
        normalization_type="RMS",
        positional_embedding_type="rotary",
        rotary_dim=d_head,
        default_prepend_bos=True,
        seed=seed,
        device="cpu",
        dtype=torch.float32,
    )


class PackedBatches:
    """Turns a stream of sentences into (batch, seq_len) token batches.

    Each row is `<bos>` followed by whole sentences, each ended by ".", cut at `seq_len` tokens.
    Sentence token ids are cached (the world has a few thousand distinct sentences).
    """

    def __init__(
        self, tokenizer: PreTrainedTokenizerFast, sentences: Iterator[str], seq_len: int
    ) -> None:
        self.tokenizer = tokenizer
        self.sentences = sentences
        self.seq_len = seq_len
        self._ids: dict[str, list[int]] = {}
        self._period = encode_words(tokenizer, ".")

    def _sentence_ids(self, sentence: str) -> list[int]:
        if sentence not in self._ids:
            self._ids[sentence] = encode_words(self.tokenizer, sentence) + self._period
        return self._ids[sentence]

    def next_batch(self, batch_size: int) -> torch.Tensor:
        """A (batch_size, seq_len) LongTensor of token ids."""
        rows = []
        for _ in range(batch_size):
            row = [self.tokenizer.bos_token_id]
            while len(row) < self.seq_len:
                row += self._sentence_ids(next(self.sentences))
            rows.append(row[: self.seq_len])
        return torch.tensor(rows, dtype=torch.long)


def _lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak learning rate."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def train_language_model(
    cfg: ModelTrainConfig,
    tokenizer: PreTrainedTokenizerFast,
    sentences: Iterator[str],
    seed: int = 0,
    progress: bool = True,
) -> tuple[HookedTransformer, dict[str, Any]]:
    """Train a fresh HookedTransformer on `sentences`; return it and training statistics.

    Statistics: final loss (mean of the last 20 steps), steps, seconds.
    """
    torch.manual_seed(seed)
    model = HookedTransformer(hooked_config(cfg, len(tokenizer), seed), tokenizer=tokenizer)
    batches = PackedBatches(tokenizer, sentences, cfg.seq_len)
    opt = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98)
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: _lr_factor(s, cfg.warmup_steps, cfg.steps)
    )
    losses: list[float] = []
    start = time.perf_counter()
    model.train()
    bar = tqdm(range(cfg.steps), desc="language model", disable=not progress, unit="step")
    for _ in bar:
        tokens = batches.next_batch(cfg.batch_size)  # (B, T)
        loss = model(tokens, return_type="loss")  # mean next-token cross-entropy
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    stats = {
        "final_loss": sum(losses[-20:]) / len(losses[-20:]),
        "steps": cfg.steps,
        "seconds": time.perf_counter() - start,
    }
    return model, stats


def save_language_model(
    model: HookedTransformer, tokenizer: PreTrainedTokenizerFast, directory: str | Path
) -> Path:
    """Write config.json, model.safetensors and tokenizer/ under `directory`.

    The files are written by `attribution.save_model` (the format `attribution.load_model`
    reads); config.json additionally records the weights' dtype as a string ("float32").
    """
    directory = save_model(model, directory)
    # The tokenizer as built, not TransformerLens's re-loaded copy (which adds settings).
    save_tokenizer(tokenizer, Path(directory) / "tokenizer")
    config_path = Path(directory) / "config.json"
    fields = json.loads(config_path.read_text())
    fields["dtype"] = str(model.cfg.dtype).removeprefix("torch.")
    config_path.write_text(json.dumps(fields, indent=2, sort_keys=True) + "\n")
    return Path(directory)
