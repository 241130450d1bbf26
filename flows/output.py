"""Query results for people and programs: a rich table, CSV or JSON, streamed."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import sys
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any

import pyarrow as pa
import pyarrow.csv as pacsv
from rich.console import Console
from rich.table import Table

# Piped output would otherwise be squeezed to 80 columns.
console = Console(width=None if sys.stdout.isatty() else 200)


def head(reader: pa.RecordBatchReader, n: int) -> tuple[pa.Table, int]:
    """The first `n` rows and the total row count, without keeping the rest in memory."""
    kept: list[pa.RecordBatch] = []
    have = total = 0
    for batch in reader:
        total += batch.num_rows
        if have < n:
            part = batch.slice(0, n - have)
            kept.append(part)
            have += part.num_rows
    return pa.Table.from_batches(kept, schema=reader.schema), total


def write_csv(reader: pa.RecordBatchReader, out: IO[bytes], limit: int | None = None) -> int:
    with pacsv.CSVWriter(out, reader.schema) as writer:
        return _copy(reader, writer.write_batch, limit)


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


def iter_json_rows(reader: pa.RecordBatchReader, limit: int | None = None) -> Iterator[str]:
    left = limit
    for batch in reader:
        if left is not None:
            batch = batch.slice(0, left)
            left -= batch.num_rows
        for row in batch.to_pylist():
            yield json.dumps({k: _json_value(v) for k, v in row.items()}, allow_nan=False)
        if left == 0:
            return


def write_json(reader: pa.RecordBatchReader, out: IO[str], limit: int | None = None) -> int:
    """A JSON array of row objects, streamed (timestamps as ISO 8601, NaN as null)."""
    out.write("[")
    n = 0
    for n, line in enumerate(iter_json_rows(reader, limit), start=1):
        out.write(("\n" if n == 1 else ",\n") + line)
    out.write("\n]\n" if n else "]\n")
    return n


def _copy(reader: pa.RecordBatchReader, write: Any, limit: int | None) -> int:
    n = 0
    for batch in reader:
        if limit is not None:
            batch = batch.slice(0, limit - n)
        write(batch)
        n += batch.num_rows
        if limit is not None and n >= limit:
            break
    return n


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def print_table(table: pa.Table, title: str | None = None) -> None:
    out = Table(title=title, header_style="bold", show_lines=False)
    for field in table.schema:
        numeric = pa.types.is_integer(field.type) or pa.types.is_floating(field.type)
        out.add_column(field.name, justify="right" if numeric else "left", overflow="fold")
    for row in table.to_pylist():
        out.add_row(*(cell(v) for v in row.values()))
    console.print(out)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
