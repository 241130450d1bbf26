"""Small objects' Zarr files in one zip (store/packed.py): layout, interop, damage, spilling."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from circuitflow.store import ObjectCorrupted, Store, stage_key
from circuitflow.store.packed import PACKED, pack, unpacked_store
from circuitflow.store.tensors import SparseCOO


def _files(path: str) -> set[str]:
    root = Path(path)
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _write_small(store: Store, name: str, **options) -> tuple[str, dict]:
    gen = np.random.default_rng(len(name))
    tensors = {
        "matrix": gen.standard_normal((12, 7)).astype(np.float32),
        "half": torch.from_numpy(gen.standard_normal(5)).to(torch.bfloat16),
        "empty": np.zeros((0, 3), dtype=np.int64),
    }
    key = stage_key("rows", 1, {"name": name})
    with store.writer("rows", key, version=1, **options) as w:
        w.put_tensor("matrix", tensors["matrix"], dims=("row", "node"))
        w.put_tensor("half", tensors["half"])
        w.put_tensor("empty", tensors["empty"])
        w.put_sparse("coo", indices=[[0, 2], [1, 0]], values=np.float32([3, 4]), shape=(3, 2))
    return key, tensors


def test_a_small_object_is_one_zip_beside_its_manifest(store: Store) -> None:
    key, tensors = _write_small(store, "small")
    obj = store.get("rows", key, verify=True)
    assert _files(obj.path) == {"manifest.json", PACKED}
    assert set(obj.files) == {PACKED}
    assert np.array_equal(obj.tensor("matrix"), tensors["matrix"])
    half = obj.torch("half")  # bfloat16 bits come back as bfloat16, unrounded
    assert half.dtype == torch.bfloat16
    assert torch.equal(half.view(torch.int16), tensors["half"].view(torch.int16))
    assert obj.tensor("empty").shape == (0, 3)
    assert obj.sparse("coo").to_dense().tolist() == [[0, 3], [0, 0], [4, 0]]
    assert obj.dataset()["matrix"].dims == ("row", "node")


def test_a_packed_object_opens_in_zarr_and_xarray_without_circuitflow(store: Store) -> None:
    import xarray
    import zarr

    key, tensors = _write_small(store, "interop")
    archive = zarr.storage.ZipStore(Path(store.object_path("rows", key)) / PACKED, mode="r")
    group = zarr.open_group(archive, mode="r")
    assert np.array_equal(group["tensors/matrix"][...], tensors["matrix"])
    dataset = xarray.open_zarr(archive, group="tensors", consolidated=False)
    assert dataset["matrix"].dims == ("row", "node")
    assert np.array_equal(dataset["matrix"].values, tensors["matrix"])


def test_the_same_tensors_pack_to_the_same_bytes(store: Store) -> None:
    first, _ = _write_small(store, "same")
    again = Store(str(Path(store.root).parent / "other"))
    second, _ = _write_small(again, "same")
    digest = store.open("rows", first).files[PACKED]["sha256"]
    assert again.open("rows", second).files[PACKED]["sha256"] == digest


def test_an_object_past_the_limit_writes_every_file_to_disk(store: Store) -> None:
    big = np.random.default_rng(1).standard_normal((64, 64)).astype(np.float32)  # 16 KB
    key = stage_key("rows", 1, {"big": True})
    with store.writer("rows", key, version=1, pack_bytes=10_000) as w:
        w.put_tensor("first", big[:8])  # fits: held in memory
        w.put_tensor("second", big)  # does not: both go to disk
    obj = store.get("rows", key, verify=True)
    assert PACKED not in _files(obj.path)
    assert {"tensors/first/c.0.0", "tensors/second/c.0.0", "zarr.json"} <= _files(obj.path)
    assert np.array_equal(obj.tensor("first"), big[:8])
    assert np.array_equal(obj.tensor("second"), big)


def test_a_damaged_zip_is_named_quarantined_and_a_miss(store: Store) -> None:
    flipped, _ = _write_small(store, "flipped")
    path = Path(store.object_path("rows", flipped)) / PACKED
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: the object opens, its first read fails
    path.write_bytes(bytes(data))
    obj = store.get("rows", flipped)
    with pytest.raises(ObjectCorrupted, match=r"zarr\.zip.*quarantine"):
        obj.tensor("matrix")
    assert store.get("rows", flipped) is None

    lost, _ = _write_small(store, "lost")
    obj = store.get("rows", lost)
    (Path(obj.path) / PACKED).unlink()
    with pytest.raises(ObjectCorrupted, match="file is missing"):
        obj.dataset()


def test_unpacked_store_checks_each_members_crc() -> None:
    data = bytearray(pack([("zarr.json", b'{"zarr_format": 3}'), ("a/c.0", b"chunk bytes")]))
    data[data.index(b"chunk bytes")] ^= 0x01
    with pytest.raises(zipfile.BadZipFile, match="CRC"):
        unpacked_store(bytes(data))


def test_sparse_values_survive_packing(store: Store) -> None:
    coo = SparseCOO.build([[0, 1, 1]], np.float32([1, 2, 3]), (4,))
    key = stage_key("rows", 1, {"sparse": True})
    with store.writer("rows", key, version=1) as w:
        w.put_sparse("v", coo)
    assert store.open("rows", key).tensor("v").tolist() == [1, 5, 0, 0]
