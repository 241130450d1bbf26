"""Row data of any common shape as a pyarrow Table (for object tables and catalog files)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa


def to_arrow_table(value: Any) -> pa.Table:
    """A pyarrow Table from a Table, RecordBatch, column dict, list of row dicts or DataFrame."""
    if isinstance(value, pa.Table):
        return value
    if isinstance(value, pa.RecordBatch):
        return pa.Table.from_batches([value])
    if isinstance(value, Mapping):
        return pa.table(dict(value))
    if isinstance(value, list):
        # from_pylist would take the columns from the first row only and drop the others.
        names = list(dict.fromkeys(k for row in value for k in row))
        return pa.table({k: [row.get(k) for row in value] for k in names})
    if type(value).__name__ == "DataFrame":
        return pa.Table.from_pandas(value, preserve_index=False)
    raise TypeError(f"cannot make a table from {type(value).__name__}")
