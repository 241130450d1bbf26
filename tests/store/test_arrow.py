"""Row data of every accepted shape as a pyarrow Table (store/arrow.py)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa
import pytest

from circuitflow.store.arrow import to_arrow_table


def test_rows_with_different_keys_keep_every_column_with_nulls() -> None:
    when = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    table = to_arrow_table(
        [{"b": 1, "a": "x"}, {"c": 2.5, "b": 2.5}, {"t": when, "l": [1, 2], "a": None}]
    )
    assert table.column_names == ["b", "a", "c", "t", "l"]  # first seen first
    assert table.schema.field("b").type == pa.float64()  # 1 and 2.5: one float column
    assert table.schema.field("t").type == pa.timestamp("us", tz="UTC")
    assert table.to_pylist() == [
        {"b": 1.0, "a": "x", "c": None, "t": None, "l": None},
        {"b": 2.5, "a": None, "c": 2.5, "t": None, "l": None},
        {"b": None, "a": None, "c": None, "t": when, "l": [1, 2]},
    ]


def test_every_accepted_shape_gives_the_same_table() -> None:
    columns = {"x": [1, 2], "y": ["a", "b"]}
    expected = pa.table(columns)
    for value in (
        columns,
        [{"x": 1, "y": "a"}, {"x": 2, "y": "b"}],
        expected,
        expected.to_batches()[0],
    ):
        assert to_arrow_table(value).equals(expected), type(value)
    # pandas' own string dtype may arrive as large_string: same rows
    assert to_arrow_table(pd.DataFrame(columns)).to_pylist() == expected.to_pylist()
    assert to_arrow_table([]).num_rows == 0 and to_arrow_table([]).num_columns == 0


def test_rows_that_are_not_mappings_are_refused() -> None:
    with pytest.raises((TypeError, pa.ArrowException)):
        to_arrow_table([{"x": 1}, 5])
    with pytest.raises(TypeError, match="cannot make a table from int"):
        to_arrow_table(5)
