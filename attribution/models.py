"""Loading and saving the language models we attribute: TransformerLens HookedTransformers.

A model directory holds three things, all plain files (no pickle):

    config.json          the HookedTransformerConfig fields (dtype as a string)
    model.safetensors    the state dict
    tokenizer/           a transformers tokenizer directory

TransformerLens needs a tokenizer loaded from a directory (an in-memory one fails), which is why
the tokenizer travels as a directory. A name that is not a directory is taken as a known
TransformerLens model name and loaded with `HookedTransformer.from_pretrained` (online only),
without folding or centring weights, so hook values mean what the transcoders were trained on.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

if TYPE_CHECKING:  # imported where a model is loaded: TransformerLens takes seconds to import
    from transformer_lens import HookedTransformer


class ModelLoadError(ValueError):
    """A model directory or name that cannot be loaded, with what to do about it."""


def load_model(
    path: str | os.PathLike,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> HookedTransformer:
    """Load a HookedTransformer from a model directory, or by TransformerLens name when online."""
    from transformer_lens import HookedTransformer

    directory = Path(path).expanduser()
    if directory.is_dir():
        return _load_directory(directory, device, dtype)
    if directory.exists() or str(path).startswith((".", "/", "~")):
        raise ModelLoadError(f"model directory {str(path)!r} not found")
    try:
        return HookedTransformer.from_pretrained(
            str(path),
            fold_ln=False,
            center_writing_weights=False,
            center_unembed=False,
            device=device,
            dtype=dtype,
        )
    except Exception as error:
        raise ModelLoadError(
            f"could not load model {str(path)!r}: it is not a local model directory and "
            f"TransformerLens could not load it by name ({error}). Give a directory with "
            "config.json, model.safetensors and tokenizer/."
        ) from error


def _load_directory(directory: Path, device, dtype) -> HookedTransformer:
    for needed in ("config.json", "model.safetensors", "tokenizer"):
        if not (directory / needed).exists():
            raise ModelLoadError(
                f"{directory} lacks {needed}: a model directory holds config.json, "
                "model.safetensors and tokenizer/"
            )
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformers import AutoTokenizer

    fields = json.loads((directory / "config.json").read_text())
    fields["dtype"] = dtype
    fields["device"] = str(device)
    known = {f.name for f in dataclasses.fields(HookedTransformerConfig)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ModelLoadError(f"{directory}/config.json has unknown fields {unknown}")
    cfg = HookedTransformerConfig(**fields)
    tokenizer = AutoTokenizer.from_pretrained(str(directory / "tokenizer"))
    model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
    try:
        state = load_file(str(directory / "model.safetensors"))
    except SafetensorError as error:  # truncated or not a safetensors file
        raise ModelLoadError(f"{directory}/model.safetensors cannot be read: {error}") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not _is_buffer(model, k)]
    if missing or unexpected:
        raise ModelLoadError(
            f"{directory}/model.safetensors does not match config.json: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    if str(device) != "cpu":
        model.to(device, print_details=False)
    model.eval()
    return model


def _is_buffer(model: torch.nn.Module, name: str) -> bool:
    return name in dict(model.named_buffers())


def save_model(model: HookedTransformer, directory: str | os.PathLike) -> Path:
    """Write a HookedTransformer as config.json + model.safetensors + tokenizer/."""
    from transformer_lens import HookedTransformerConfig

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fields = {}
    for field in dataclasses.fields(HookedTransformerConfig):
        value = getattr(model.cfg, field.name)
        if field.name in ("dtype", "device", "n_params") or not _json_safe(value):
            continue
        fields[field.name] = value
    (directory / "config.json").write_text(json.dumps(fields, indent=2, sort_keys=True))
    buffers = dict(model.named_buffers())
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(
        {k: v for k, v in weights.items() if k not in buffers}, directory / "model.safetensors"
    )
    if model.tokenizer is not None:
        model.tokenizer.save_pretrained(str(directory / "tokenizer"))
    return directory


def _json_safe(value) -> bool:
    try:
        json.dumps(value)
        return True
    except TypeError:
        return False
