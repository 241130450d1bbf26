"""Typed settings for training the built-in model, readable from and writable to YAML.

`TrainDemoConfig` is everything `circuitflow train-demo` needs: the world's seed, the language
model's shape and training schedule, and one `TranscoderTrainConfig` per transcoder set. The
defaults here are the shipped recipe; `configs/train_demo.yaml` holds the same values, and
`TrainDemoConfig.quick()` is a tiny variant that runs end to end in seconds (for tests).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

Activation = Literal["relu", "jumprelu"]


@dataclass
class ModelTrainConfig:
    """Shape and training schedule of the HookedTransformer."""

    n_layers: int = 4
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 512
    act_fn: str = "gelu"
    n_ctx: int = 64
    seq_len: int = 48  # tokens per training sequence, the start token included
    batch_size: int = 64
    steps: int = 800
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50


@dataclass
class TranscoderTrainConfig:
    """How to train one transcoder set (per-layer or cross-layer) on the model's MLPs.

    `activation` "relu" trains ReLU features with an L1 penalty of weight `l1_coefficient` on
    activation x decoder norm. "jumprelu" trains JumpReLU features whose per-layer threshold
    tracks the BatchTopK cut for `k` active features per token (on average over a batch), then
    is frozen for the last `jumprelu_finetune_fraction` of the steps (see transcoders.py).
    """

    kind: Literal["transcoder_set", "cross_layer_transcoder"] = "transcoder_set"
    n_features: int = 1024
    activation: Activation = "jumprelu"
    k: int = 16
    l1_coefficient: float = 0.02
    jumprelu_finetune_fraction: float = 0.2
    lr: float = 5e-3
    batch_size: int = 1024
    steps: int = 600
    input_hook: str = "ln2.hook_normalized"
    output_hook: str = "hook_mlp_out"


@dataclass
class TrainDemoConfig:
    """Everything that determines the shipped model and transcoders."""

    seed: int = 0
    held_out_fraction: float = 0.2
    model: ModelTrainConfig = field(default_factory=ModelTrainConfig)
    activation_tokens: int = 160_000  # tokens of MLP activations collected to train transcoders
    eval_sequences: int = 256  # held-out text sequences for FVU and splice agreement
    plt: TranscoderTrainConfig = field(default_factory=TranscoderTrainConfig)
    clt: TranscoderTrainConfig = field(
        default_factory=lambda: TranscoderTrainConfig(kind="cross_layer_transcoder")
    )

    @classmethod
    def quick(cls) -> TrainDemoConfig:
        """A tiny configuration that exercises every step in seconds (quality is not the aim)."""
        return cls(
            model=ModelTrainConfig(n_layers=2, d_model=32, n_heads=2, d_mlp=64, steps=20),
            activation_tokens=4_000,
            eval_sequences=16,
            plt=TranscoderTrainConfig(n_features=64, k=4, steps=20, batch_size=256),
            clt=TranscoderTrainConfig(
                kind="cross_layer_transcoder", n_features=64, k=4, steps=20, batch_size=256
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        """A plain nested dict (YAML- and JSON-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainDemoConfig:
        """Build from a nested dict; missing keys take their defaults, unknown keys raise."""
        data = dict(data)
        defaults = cls()
        nested = {
            "model": (ModelTrainConfig, defaults.model),
            "plt": (TranscoderTrainConfig, defaults.plt),
            "clt": (TranscoderTrainConfig, defaults.clt),
        }
        for key, (sub_cls, default) in nested.items():
            if key in data:
                data[key] = sub_cls(**{**dataclasses.asdict(default), **(data[key] or {})})
        return cls(**data)

    def to_yaml(self, path: str | Path | None = None) -> str:
        """The config as YAML text; also written to `path` when one is given."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainDemoConfig:
        """Read a config written by `to_yaml` (or by hand)."""
        return cls.from_dict(yaml.safe_load(Path(path).read_text()) or {})
