"""Prefect tasks that build the built-in model: one task per step of `train-demo`.

Each task reads what earlier steps wrote under the output directory and writes its own files
there; tasks pass paths and small dicts of statistics, never tensors. The work itself lives in
`training`; these wrappers only name the steps for Prefect (and its UI and logs).

Steps, in order:
1. `build_tokenizer_task`: the world's vocabulary -> `OUT/tokenizer/`.
2. `train_model_task`: the language model -> `OUT/config.json`, `OUT/model.safetensors`.
3. `train_transcoders_task` (twice): per-layer -> `OUT/transcoders/plt/`, cross-layer ->
   `OUT/transcoders/clt/`.
4. `evaluate_task`: every metric -> `OUT/metrics.json` and `OUT/MODEL_CARD.md`.
"""

from __future__ import annotations

from typing import Any

from prefect import task

from circuitflow.training import pipeline
from circuitflow.training.config import TrainDemoConfig


@task(name="build-tokenizer", cache_policy=None)
def build_tokenizer_task(out: str, config: dict[str, Any]) -> str:
    """Write the word-level tokenizer; return its directory."""
    return str(pipeline.build_tokenizer_step(out, TrainDemoConfig.from_dict(config)))


@task(name="train-model", cache_policy=None)
def train_model_task(out: str, config: dict[str, Any], progress: bool = True) -> dict[str, Any]:
    """Train and save the language model; return its training statistics."""
    return pipeline.train_model_step(out, TrainDemoConfig.from_dict(config), progress=progress)


@task(name="train-transcoders", cache_policy=None)
def train_transcoders_task(
    out: str, config: dict[str, Any], which: str, progress: bool = True
) -> dict[str, Any]:
    """Train and save one transcoder set ("plt" or "clt"); return its training statistics."""
    return pipeline.train_transcoders_step(
        out, TrainDemoConfig.from_dict(config), which, progress=progress
    )


@task(name="evaluate-and-write-card", cache_policy=None)
def evaluate_task(out: str, config: dict[str, Any], training: dict[str, Any]) -> dict[str, Any]:
    """Measure everything, write metrics.json and MODEL_CARD.md; return the metrics."""
    return pipeline.evaluate_step(out, TrainDemoConfig.from_dict(config), training)
