"""Tensors on disk: numpy/torch values to Zarr v3 arrays and back, bit for bit.

- Dense tensors are one Zarr array each: zstd-compressed, chunked along the leading axes so that a
  chunk is about 8 MB (big enough to compress well, small enough to spread over threads).
- Dtypes numpy lacks (bfloat16, float8) are stored as raw unsigned integers of the same width, with
  the real dtype recorded in the array's attributes (``circuitflow_dtype``). Reading returns the raw
  integers plus that name; `to_torch` reinterprets them, so no value is ever rounded.
- Sparse tensors are COO: a Zarr group holding ``indices`` (ndim x nnz, int64) and ``values``
  (nnz), with the dense shape in the group's attributes.

`HashingStore` digests every file as Zarr writes it and `VerifyingStore` checks every file as Zarr
reads it, against the object's manifest: a flipped byte raises instead of decoding to garbage,
and a missing chunk raises instead of reading as the fill value (zeros).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
from zarr.abc.store import ByteRequest, Store
from zarr.codecs import ZstdCodec
from zarr.core.buffer import Buffer, BufferPrototype
from zarr.storage import WrapperStore

from circuitflow.store.errors import StoreError

# Dtypes without a numpy equivalent, and the unsigned integer type holding their bits.
RAW_DTYPES: dict[str, type[np.unsignedinteger[Any]]] = {
    "bfloat16": np.uint16,
    "float8_e4m3fn": np.uint8,
    "float8_e5m2": np.uint8,
    "float8_e4m3fnuz": np.uint8,
    "float8_e5m2fnuz": np.uint8,
}
DTYPE_ATTR = "circuitflow_dtype"
KIND_ATTR = "circuitflow_kind"
CHUNK_BYTES = 8 << 20
ZSTD_LEVEL = 1  # on float data level 3 costs twice the CPU for the same ratio


class IntegrityError(StoreError):
    """A file of an object is missing or does not match its recorded digest."""

    def __init__(self, file: str, problem: str) -> None:
        super().__init__(f"{file}: {problem}")
        self.file = file
        self.problem = problem


def _is_torch(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def _torch_to_numpy(t: Any) -> tuple[np.ndarray, str]:
    import torch

    t = t.detach().cpu().contiguous()
    name = str(t.dtype).removeprefix("torch.")
    if name in RAW_DTYPES:
        width = {np.uint16: torch.int16, np.uint8: torch.uint8}[RAW_DTYPES[name]]
        return t.view(width).numpy().view(RAW_DTYPES[name]), name
    return t.resolve_conj().resolve_neg().numpy(), name


def to_storage(value: Any, dtype: str | None = None) -> tuple[np.ndarray, str]:
    """A value as (array to store, logical dtype name).

    Accepts numpy arrays (including ml_dtypes' bfloat16), torch tensors, and raw unsigned arrays
    with an explicit `dtype` such as ``"bfloat16"``.
    """
    if _is_torch(value):
        if value.is_sparse:
            raise TypeError("sparse torch tensor: store it with put_sparse")
        array, logical = _torch_to_numpy(value)
    else:
        array = np.asarray(value)
        logical = array.dtype.name
        if logical in RAW_DTYPES:  # ml_dtypes arrays
            array = array.view(RAW_DTYPES[logical])
    if dtype is not None and dtype != logical:
        if dtype not in RAW_DTYPES:
            raise TypeError(f"dtype={dtype!r} is only for raw bit patterns of {sorted(RAW_DTYPES)}")
        if array.dtype != RAW_DTYPES[dtype]:
            raise TypeError(f"{dtype} bits must be given as {RAW_DTYPES[dtype].__name__}")
        logical = dtype
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return np.ascontiguousarray(array), logical


def to_torch(array: np.ndarray, dtype: str) -> Any:
    """A stored array as a torch tensor of its logical dtype (raw bits reinterpreted)."""
    import torch

    if dtype in RAW_DTYPES:
        signed = array.view(np.int16) if array.dtype == np.uint16 else array
        return torch.from_numpy(np.ascontiguousarray(signed)).view(getattr(torch, dtype))
    return torch.from_numpy(np.ascontiguousarray(array))


@dataclass(frozen=True)
class SparseCOO:
    """A sparse tensor in coordinate form; `values` holds raw bits when `dtype` is in RAW_DTYPES."""

    indices: np.ndarray  # (ndim, nnz) int64
    values: np.ndarray  # (nnz,)
    shape: tuple[int, ...]
    dtype: str

    @classmethod
    def from_value(cls, value: Any) -> SparseCOO:
        """From a torch sparse COO tensor (or an existing SparseCOO)."""
        if isinstance(value, SparseCOO):
            return value
        if _is_torch(value) and value.is_sparse:
            value = value.detach().cpu().coalesce()
            values, dtype = _torch_to_numpy(value.values())
            indices = value.indices().numpy().astype(np.int64)
            return cls(indices, values, tuple(int(s) for s in value.shape), dtype)
        raise TypeError(f"cannot read a sparse tensor from {type(value).__name__}")

    @classmethod
    def build(
        cls, indices: Any, values: Any, shape: Iterable[int], dtype: str | None = None
    ) -> SparseCOO:
        vals, logical = to_storage(values, dtype)
        idx = np.ascontiguousarray(np.asarray(indices, dtype=np.int64))
        shape = tuple(int(s) for s in shape)
        if idx.ndim != 2 or idx.shape[0] != len(shape) or idx.shape[1] != vals.shape[0]:
            raise ValueError(
                f"COO indices must be (ndim={len(shape)}, nnz={vals.shape[0]}), got {idx.shape}"
            )
        return cls(idx, vals.reshape(-1), shape, logical)

    def to_dense(self) -> np.ndarray:
        """Dense numpy array (raw bits for RAW_DTYPES; duplicates are summed otherwise)."""
        out = np.zeros(self.shape, dtype=self.values.dtype)
        if self.dtype in RAW_DTYPES:
            out[tuple(self.indices)] = self.values
        else:
            np.add.at(out, tuple(self.indices), self.values)
        return out

    def to_torch(self) -> Any:
        import torch

        return torch.sparse_coo_tensor(
            torch.from_numpy(self.indices),
            to_torch(self.values, self.dtype),
            self.shape,
            check_invariants=True,
        )


def default_chunks(shape: tuple[int, ...], itemsize: int, target: int = CHUNK_BYTES) -> tuple:
    """Chunks covering whole trailing axes and as many leading rows as fit in `target` bytes."""
    chunks = []
    budget = max(1, target // max(1, itemsize))
    for size in reversed(shape):
        take = max(1, min(size, budget))
        chunks.append(take)
        budget = max(1, budget // max(1, size))
    return tuple(reversed(chunks))


class HashingStore(WrapperStore[Store]):
    """Records the SHA-256 and size of every file Zarr writes, keyed by its path in the store."""

    def __init__(self, store: Store, digests: dict[str, tuple[str, int]] | None = None) -> None:
        super().__init__(store)
        self.digests: dict[str, tuple[str, int]] = {} if digests is None else digests

    def _with_store(self, store: Store) -> HashingStore:
        return type(self)(store, self.digests)

    async def set(self, key: str, value: Buffer) -> None:
        data = value.as_numpy_array()
        # hashlib releases the GIL, so hashing overlaps with the write and other chunks' codecs.
        digest, _ = await asyncio.gather(
            asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest()),
            self._store.set(key, value),
        )
        self.digests[key] = (digest, data.nbytes)

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        if key not in self.digests:
            await self.set(key, value)

    async def _set_many(self, values: Iterable[tuple[str, Buffer]]) -> None:
        await asyncio.gather(*(self.set(k, v) for k, v in values))


class VerifyingStore(WrapperStore[Store]):
    """Serves only files listed in a manifest, and only if their digest matches."""

    def __init__(self, store: Store, files: Mapping[str, Mapping[str, Any]]) -> None:
        super().__init__(store)
        self.files = files

    def _with_store(self, store: Store) -> VerifyingStore:
        return type(self)(store, self.files)

    async def get(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        expected = self.files.get(key)
        if expected is None:
            # Zarr probes for optional metadata (v2 names); an unlisted file is absent by design.
            return None
        if byte_range is not None:
            raise IntegrityError(key, "partial reads cannot be verified")
        value = await self._store.get(key, prototype)
        if value is None:
            raise IntegrityError(key, "file is missing")
        data = value.as_numpy_array()
        digest = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
        if data.nbytes != expected["size"] or digest != expected["sha256"]:
            raise IntegrityError(key, "contents do not match the manifest digest")
        return value

    async def exists(self, key: str) -> bool:
        return key in self.files


def write_dense(
    zstore: Store,
    path: str,
    array: np.ndarray,
    dtype: str,
    *,
    chunks: tuple[int, ...] | None = None,
    level: int = ZSTD_LEVEL,
) -> None:
    arr = zarr.create_array(
        zstore,
        name=path,
        shape=array.shape,
        dtype=array.dtype,
        chunks=chunks or default_chunks(array.shape, array.dtype.itemsize),
        compressors=ZstdCodec(level=level),
        attributes={DTYPE_ATTR: dtype, KIND_ATTR: "dense"},
        # Every chunk is a file, so a missing file is always damage, never "all zeros".
        config={"write_empty_chunks": True},
        zarr_format=3,
    )
    if array.size:
        arr[...] = array


def write_sparse(zstore: Store, path: str, coo: SparseCOO, *, level: int = ZSTD_LEVEL) -> None:
    zarr.create_group(
        zstore,
        path=path,
        attributes={DTYPE_ATTR: coo.dtype, KIND_ATTR: "coo", "shape": list(coo.shape)},
        zarr_format=3,
    )
    write_dense(zstore, f"{path}/indices", coo.indices, "int64", level=level)
    write_dense(zstore, f"{path}/values", coo.values, coo.dtype, level=level)


def read_dense(zstore: Store, path: str) -> tuple[np.ndarray, str]:
    arr = zarr.open_array(zstore, path=path, mode="r", zarr_format=3)
    data = arr[...] if arr.size else np.empty(arr.shape, dtype=arr.dtype)
    return np.asarray(data), str(arr.attrs.get(DTYPE_ATTR, arr.dtype))


def read_sparse(zstore: Store, path: str) -> SparseCOO:
    group = zarr.open_group(zstore, path=path, mode="r", zarr_format=3)
    indices, _ = read_dense(zstore, f"{path}/indices")
    values, dtype = read_dense(zstore, f"{path}/values")
    return SparseCOO(indices, values, tuple(group.attrs["shape"]), dtype)
