"""Stage outputs as plain records: tensors plus JSON metadata, never pickle.

Every stage of an attribution (precompute, targets, rows, the assembled graph) returns a small
dataclass. The workflow caches each one separately, so each must turn into named tensors and a
JSON-able dict and back again, exactly: `record.to_parts()` and `Type.from_parts(...)`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import torch

R = TypeVar("R", bound="Record")


class Record:
    """Mixin for dataclasses whose fields are tensors or JSON values."""

    def to_parts(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Split into ({name: tensor on CPU}, {name: JSON value})."""
        tensors, meta = {}, {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, torch.Tensor):
                tensors[field.name] = value.detach().to("cpu").contiguous()
            else:
                meta[field.name] = value
        return tensors, meta

    @classmethod
    def from_parts(cls: type[R], tensors: dict[str, Any], meta: dict[str, Any]) -> R:
        """Rebuild from the two dicts; numpy arrays are accepted where tensors are expected."""
        values = {}
        for field in dataclasses.fields(cls):
            if field.name in tensors:
                value = tensors[field.name]
                values[field.name] = (
                    value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
                )
            elif field.name in meta:
                values[field.name] = meta[field.name]
        return cls(**values)

    def to(self: R, device: torch.device | str) -> R:
        """A copy with every tensor moved to `device`."""
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return dataclasses.replace(self, **moved)
