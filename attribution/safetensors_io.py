"""Named tensors and shapes out of safetensors files, without loading anything else.

Both transcoder loaders read through here (`transcoders.py` for our own layouts,
`transcoder_formats.py` for listed files). Each has its own error type, so the caller passes
the one to raise; the message says which file and what is wrong with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors import safe_open


def read_tensors(
    path: Path, names: Iterable[str] | None = None, error: type[Exception] = ValueError
) -> dict[str, torch.Tensor]:
    """The tensors `names` that the file holds (every tensor when `names` is None)."""
    if not path.is_file():
        raise error(f"missing transcoder file {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            present = set(f.keys())
            keys = sorted(present) if names is None else [n for n in names if n in present]
            return {key: f.get_tensor(key) for key in keys}
    except Exception as failure:
        raise error(f"cannot read {path}: {failure}") from failure


def tensor_shape(path: Path, name: str, error: type[Exception] = ValueError) -> list[int]:
    """The shape of tensor `name`, read from the file's header (no data loaded)."""
    with safe_open(str(path), framework="pt") as f:
        if name not in f.keys():
            raise error(f"{path} lacks the tensor {name!r}")
        return list(f.get_slice(name).get_shape())
