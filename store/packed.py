"""Small objects' Zarr files packed into one zip: a few files a stage, not a few dozen.

A stage's object holds a Zarr group with one array per tensor: a ``zarr.json`` for the group, one
for each array, and a file per chunk. For the small objects of a sweep (a built-in model's run
has seven objects with 64 such files in 30 directories) creating those files and directories
costs as much CPU as a third of the attribution: 56-70 ms a run, against 12-20 ms for the same
bytes in one zip per object (on a 2-core VM, where a file creation costs 0.1-0.8 ms). So an object
whose tensors encode to at most `PACK_BYTES` keeps its Zarr files as members of ``zarr.zip``,
under the same relative paths (``zarr.json``, ``tensors/<name>/zarr.json``, ...). Larger objects
(an edge matrix at GPT-2-small size is 250 MB) keep their chunk files on disk, so that reading a
few rows reads only their chunks.

The zip is a standard Zarr store: without circuitflow,
``xarray.open_zarr(zarr.storage.ZipStore("<object>/zarr.zip", mode="r"), group="tensors")``
opens it. Members are stored uncompressed (ZIP_STORED): the chunks are zstd-compressed already.

Reading verifies the zip as one file against the manifest digest (it is small by construction),
then serves its members from memory; `zipfile` also checks each member's CRC-32.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable

from zarr.core.buffer import cpu
from zarr.storage import MemoryStore

PACKED = "zarr.zip"  # the packed Zarr files' name in an object directory
PACK_BYTES = 8 << 20  # an object whose Zarr files total at most this is packed


def pack(files: Iterable[tuple[str, bytes]]) -> bytes:
    """The bytes of a zip holding `files` (relative path, bytes), uncompressed, in order."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for rel, data in files:
            # A fixed date: the same files always pack to the same bytes.
            archive.writestr(zipfile.ZipInfo(rel, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return buffer.getvalue()


def unpacked_store(data: bytes) -> MemoryStore:
    """A read-only Zarr store over the members of the zip `data` (a `pack` result).

    A damaged member raises `zipfile.BadZipFile` (its CRC-32); callers verify the whole zip's
    digest first, so that only a bug reaches that check.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = {name: cpu.Buffer.from_bytes(archive.read(name)) for name in archive.namelist()}
    return MemoryStore(store_dict=members, read_only=True)
