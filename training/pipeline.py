"""The steps of `train-demo` as plain functions over an output directory (no Prefect here).

`tasks/training.py` wraps each step in a Prefect task; tests and scripts may call them directly.
Every step is deterministic given the config's seed, and reads only what earlier steps wrote:

    build_tokenizer_step     -> OUT/tokenizer/, OUT/train_config.yaml
    train_model_step         -> OUT/config.json, OUT/model.safetensors
    train_transcoders_step   -> OUT/transcoders/plt/ or OUT/transcoders/clt/
    evaluate_step            -> OUT/metrics.json, OUT/MODEL_CARD.md

Three disjoint text streams are drawn from the world, each with its own seed: training text for
the language model, text whose MLP activations train the transcoders, and held-out evaluation
text for FVU and splice agreement.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from transformer_lens import HookedTransformer

from circuitflow.attribution.models import load_model
from circuitflow.training import evaluate, model_card, world
from circuitflow.training.config import TrainDemoConfig
from circuitflow.training.language_model import (
    PackedBatches,
    save_language_model,
    train_language_model,
)
from circuitflow.training.tokenizer import build_tokenizer, load_tokenizer, save_tokenizer
from circuitflow.training.transcoders import collect_activations, train_transcoders

TRANSCODER_DIRS = {"plt": "transcoders/plt", "clt": "transcoders/clt"}


def text_seed(cfg: TrainDemoConfig, stream: str) -> int:
    """The seed of one text stream: "model" (training text), "activations" or "eval"."""
    return cfg.seed * 1000 + {"model": 1, "activations": 2, "eval": 3}[stream]


def fact_split(cfg: TrainDemoConfig) -> world.FactSplit:
    """The world's facts with the config's held-out split."""
    return world.split_facts(cfg.seed, cfg.held_out_fraction)


def token_batches(
    model: HookedTransformer, cfg: TrainDemoConfig, stream: str, n_sequences: int, batch: int = 256
) -> list[torch.Tensor]:
    """`n_sequences` packed sequences of one text stream, in batches of (up to) `batch`."""
    packer = PackedBatches(
        model.tokenizer,
        world.sentence_stream(fact_split(cfg), text_seed(cfg, stream)),
        cfg.model.seq_len,
    )
    sizes = [batch] * (n_sequences // batch) + (
        [n_sequences % batch] if n_sequences % batch else []
    )
    return [packer.next_batch(n) for n in sizes]


def build_tokenizer_step(out: str | Path, cfg: TrainDemoConfig) -> Path:
    """Build and save the tokenizer; also record the config used for this output."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg.to_yaml(out / "train_config.yaml")
    tokenizer = build_tokenizer(world.all_sentences(fact_split(cfg)), cfg.model.n_ctx)
    return save_tokenizer(tokenizer, out / "tokenizer")


def train_model_step(
    out: str | Path, cfg: TrainDemoConfig, progress: bool = True
) -> dict[str, Any]:
    """Train the language model on the training stream and save it next to the tokenizer."""
    out = Path(out)
    torch.manual_seed(cfg.seed)
    # TransformerLens needs a tokenizer loaded from a directory, not one built in memory.
    tokenizer = load_tokenizer(out / "tokenizer")
    sentences = world.sentence_stream(fact_split(cfg), text_seed(cfg, "model"))
    model, stats = train_language_model(cfg.model, tokenizer, sentences, cfg.seed, progress)
    save_language_model(model, tokenizer, out)
    return stats


def train_transcoders_step(
    out: str | Path, cfg: TrainDemoConfig, which: str, progress: bool = True
) -> dict[str, Any]:
    """Train one transcoder set ("plt" or "clt") on activations of the activation stream."""
    out = Path(out)
    tc_cfg = {"plt": cfg.plt, "clt": cfg.clt}[which]
    model = load_model(out)
    n_sequences = -(-cfg.activation_tokens // (cfg.model.seq_len - 1))  # ceil division
    batches = token_batches(model, cfg, "activations", n_sequences)
    x, y = collect_activations(model, batches, tc_cfg.input_hook, tc_cfg.output_hook, progress)
    result = train_transcoders(x, y, tc_cfg, seed=cfg.seed, progress=progress)
    result.transcoders.save(out / TRANSCODER_DIRS[which], model.cfg.model_name)
    return {**result.stats, "activation_tokens": x.shape[1]}


def evaluate_step(
    out: str | Path, cfg: TrainDemoConfig, training: dict[str, Any]
) -> dict[str, Any]:
    """Measure every metric, then write metrics.json and MODEL_CARD.md under `out`."""
    out = Path(out)
    start = time.perf_counter()
    metrics = evaluate.evaluate_all(
        out,
        fact_split(cfg),
        eval_tokens=lambda model: torch.cat(token_batches(model, cfg, "eval", cfg.eval_sequences)),
        transcoder_dirs={k: out / v for k, v in TRANSCODER_DIRS.items()},
    )
    training = dict(training)
    training["evaluation_seconds"] = time.perf_counter() - start
    if "total_seconds_before_evaluation" in training:
        training["total_seconds"] = (
            training["total_seconds_before_evaluation"] + training["evaluation_seconds"]
        )
    metrics["training"] = training
    metrics["config"] = cfg.to_dict()
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "MODEL_CARD.md").write_text(model_card.render(metrics))
    return metrics
