"""Tensors and tables round-trip bit for bit: float32, bfloat16, sparse COO, tables."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from circuitflow.store import SparseCOO, Store, stage_key
from circuitflow.store.tensors import default_chunks, to_storage


def _key(name: str) -> str:
    return stage_key("test", 1, {"name": name})


def _roundtrip(store: Store, **tensors):
    key = _key(str(sorted(tensors)))
    with store.writer("test", key, version=1) as w:
        for name, value in tensors.items():
            w.put_tensor(name, value)
    return store.get("test", key)


def test_float32_and_bfloat16_round_trip_exactly(store: Store) -> None:
    gen = torch.Generator().manual_seed(0)
    f32 = torch.randn(300, 70, generator=gen)
    f32[0, 0] = float("nan")
    f32[0, 1] = float("-inf")
    f32[0, 2] = -0.0
    bf16 = (torch.randn(130, 3, 5, generator=gen) * 1e30).to(torch.bfloat16)
    obj = _roundtrip(store, f32=f32, bf16=bf16, np32=f32.numpy())

    assert obj.tensors["bf16"].dtype == "bfloat16"
    raw = obj.tensor("bf16")
    assert raw.dtype == np.uint16  # numpy has no bfloat16: the bits, with the dtype recorded
    assert np.array_equal(raw, bf16.view(torch.int16).numpy().view(np.uint16))
    back = obj.torch("bf16")
    assert back.dtype == torch.bfloat16
    assert torch.equal(back.view(torch.int16), bf16.view(torch.int16))

    for name in ("f32", "np32"):
        got = obj.tensor(name)
        assert got.dtype == np.float32
        assert got.tobytes() == f32.numpy().tobytes()  # NaN, -inf and -0.0 included


def test_raw_bfloat16_bits_with_explicit_dtype(store: Store) -> None:
    bits = np.array([0x3F80, 0xBF80, 0x7FC0], dtype=np.uint16)  # 1.0, -1.0, NaN
    key = _key("raw")
    with store.writer("test", key, version=1) as w:
        w.put_tensor("x", bits, dtype="bfloat16")
    obj = store.get("test", key)
    assert obj.tensors["x"].dtype == "bfloat16"
    assert obj.torch("x")[:2].tolist() == [1.0, -1.0]
    with pytest.raises(TypeError, match="uint16"):
        to_storage(bits.astype(np.int32), dtype="bfloat16")


def test_sparse_coo_round_trips(store: Store) -> None:
    indices = torch.tensor([[0, 0, 2, 3], [1, 4, 2, 0], [5, 5, 0, 1]])
    values = torch.tensor([1.5, -2.0, 3.25, 1e-8])
    sparse = torch.sparse_coo_tensor(indices, values, (4, 5, 6), check_invariants=True).coalesce()
    sparse_bf16 = torch.sparse_coo_tensor(
        indices, values.to(torch.bfloat16), (4, 5, 6), check_invariants=True
    )
    key = _key("sparse")
    with store.writer("test", key, version=1) as w:
        w.put_tensor("acts", sparse)
        w.put_tensor("acts_bf16", sparse_bf16)
        w.put_sparse("parts", indices=indices.numpy(), values=values.numpy(), shape=(4, 5, 6))
    obj = store.get("test", key)

    assert obj.tensors["acts"].kind == "coo"
    coo = obj.sparse("acts")
    assert isinstance(coo, SparseCOO) and coo.shape == (4, 5, 6)
    assert np.array_equal(coo.indices, sparse.indices().numpy())
    assert coo.values.tobytes() == sparse.values().numpy().tobytes()
    assert torch.equal(obj.torch("acts").to_dense(), sparse.to_dense())
    assert torch.equal(obj.torch("acts_bf16").to_dense(), sparse_bf16.to_dense())
    assert np.array_equal(obj.tensor("parts"), sparse.to_dense().numpy())


def test_odd_shapes_and_dtypes(store: Store) -> None:
    obj = _roundtrip(
        store,
        empty=np.zeros((0, 7), np.float32),
        scalar=np.float64(3.5),
        ints=np.arange(10, dtype=np.int64),
        flags=np.array([True, False]),
        half=torch.tensor([1.0, 2.0], dtype=torch.float16),
    )
    assert obj.tensor("empty").shape == (0, 7)
    assert obj.tensor("scalar") == 3.5
    assert obj.tensor("ints").tolist() == list(range(10))
    assert obj.tensor("flags").tolist() == [True, False]
    assert obj.torch("half").dtype == torch.float16


def test_tables_round_trip(store: Store) -> None:
    table = pa.table(
        {
            "node": ["a", "b", None],
            "layer": pa.array([0, 1, 2], pa.int32()),
            "influence": [0.5, float("nan"), 1e-300],
            "tokens": [[1, 2], [], None],
        }
    )
    key = _key("table")
    with store.writer("test", key, version=1) as w:
        w.put_table("nodes", table)
        w.put_table("rows", [{"x": 1}, {"x": 2}])
    obj = store.get("test", key)
    got = obj.table("nodes")
    assert got.schema == table.schema
    for name in ("node", "layer", "tokens"):
        assert got[name].to_pylist() == table[name].to_pylist()
    np.testing.assert_array_equal(got["influence"].to_numpy(), table["influence"].to_numpy())
    assert obj.table("rows").column("x").to_pylist() == [1, 2]
    assert obj.tables == ["nodes", "rows"]


def test_default_chunks_cover_whole_rows() -> None:
    assert default_chunks((8000, 8000), 4) == (262, 8000)
    assert default_chunks((10,), 4) == (10,)
    assert default_chunks((0, 5), 4) == (1, 5)
    assert default_chunks((), 8) == ()


def test_written_arrays_are_plain_zarr_that_zarr_and_xarray_open(store: Store) -> None:
    """Objects are written without zarr-python; zarr-python and xarray read them as their own."""
    import xarray as xr
    import zarr

    gen = np.random.default_rng(0)
    edges = gen.standard_normal((37, 11)).astype(np.float32)
    flags = gen.random(9) > 0.5
    key = _key("interop")
    with store.writer("test", key, version=1, pack_bytes=0) as w:
        # chunks of 10 rows: the last chunk is partial, stored padded as Zarr v3 requires
        w.put_tensor("edges", edges, chunks=(10, 11), dims=("row", "node"))
        w.put_tensor("flags", flags, dims=("feature",))
        w.put_tensor("counts", np.arange(5, dtype=np.int64))
    obj = store.get("test", key, verify=True)
    group = zarr.open_group(f"{obj.path}/tensors", mode="r")
    assert np.array_equal(group["edges"][...], edges)
    assert group["edges"].metadata.dimension_names == ("row", "node")
    dataset = xr.open_zarr(f"{obj.path}/tensors", consolidated=False)
    assert dataset["edges"].dims == ("row", "node")
    assert np.array_equal(dataset["edges"].values, edges)
    assert dataset["flags"].dtype == bool and np.array_equal(dataset["flags"].values, flags)
    writer = store.writer("test", _key("bad dims"), version=1)
    with pytest.raises(ValueError, match="2 dimension names for a 1-d tensor"), writer as w:
        w.put_tensor("x", np.zeros(3), dims=("a", "b"))


def test_reading_some_rows_reads_only_their_chunks(store: Store, monkeypatch) -> None:
    from circuitflow.store import tensors

    matrix = np.arange(100 * 8, dtype=np.float32).reshape(100, 8)
    key = _key("rows")
    with store.writer("test", key, version=1, pack_bytes=0) as w:
        w.put_tensor("edges", matrix, chunks=(10, 8))  # 10 chunks of 10 rows
    obj = store.get("test", key)
    read: list[str] = []
    original = tensors.VerifyingStore.get

    async def counting(self, key, prototype, byte_range=None):
        read.append(key)
        return await original(self, key, prototype, byte_range)

    monkeypatch.setattr(tensors.VerifyingStore, "get", counting)
    rows = obj.tensor("edges", rows=slice(25, 38))
    assert np.array_equal(rows, matrix[25:38])
    chunks = sorted(k for k in read if "/c." in k)
    assert chunks == ["tensors/edges/c.2.0", "tensors/edges/c.3.0"]
    assert obj.torch("edges", rows=slice(99, 100)).tolist() == [matrix[99].tolist()]
