"""Stage outputs as plain records: tensors, JSON metadata and files, never pickle.

Every stage of an attribution (precompute, targets, rows, the assembled graph) returns a small
dataclass. The workflow caches each one separately, so each must turn into named tensors, a
JSON-able dict and named byte strings, and back again, exactly: `record.to_parts()` and
`Type.from_parts(...)`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import torch

R = TypeVar("R", bound="Record")


class Record:
    """Mixin for dataclasses whose fields are tensors, bytes (files) or JSON values."""

    def to_parts(self) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, bytes]]:
        """Split into ({name: tensor on CPU}, {name: JSON value}, {name: bytes})."""
        tensors, meta, files = {}, {}, {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, torch.Tensor):
                tensors[field.name] = value.detach().to("cpu").contiguous()
            elif isinstance(value, bytes):
                files[field.name] = value
            else:
                meta[field.name] = value
        return tensors, meta, files

    @classmethod
    def from_parts(
        cls: type[R],
        tensors: dict[str, Any],
        meta: dict[str, Any],
        files: dict[str, bytes] | None = None,
    ) -> R:
        """Rebuild from the parts; numpy arrays are accepted where tensors are expected."""
        values = {}
        for field in dataclasses.fields(cls):
            if field.name in tensors:
                value = tensors[field.name]
                values[field.name] = (
                    value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
                )
            elif field.name in meta:
                values[field.name] = meta[field.name]
            elif files and field.name in files:
                values[field.name] = files[field.name]
        return cls(**values)

    def to(self: R, device: torch.device | str) -> R:
        """A copy with every tensor moved to `device`."""
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return dataclasses.replace(self, **moved)
