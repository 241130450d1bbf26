"""Stored objects: the content-addressed outputs of stages, published atomically.

An object lives at ``<root>/objects/<stage>/<key[:2]>/<key>/``::

    manifest.json          stage, key, version, params, inputs, code version, creation time,
                           tensor and table descriptions, and size + SHA-256 of every other file
    zarr.json, tensors/    a Zarr v3 group: one array per dense tensor (tensors/<name>/), a group
                           (indices, values) per COO one
    zarr.zip               instead of those, for a small object: the same files in one zip
                           (see `store.packed`)
    tables/<name>.parquet  one Parquet file (zstd) per table
    files/<name>           blobs (an exported graph JSON)

Publishing. A writer fills ``<root>/tmp/obj-.../`` and, on a local filesystem, renames it to its
final place in one ``os.rename``: readers see the whole object or nothing, and a killed writer
leaves only a temporary directory (removed by ``gc``). When two writers race for one key the
rename of the second fails because the target exists; it discards its copy and returns the
winner's. On remote filesystems (object stores have no atomic directory rename) the data files
are moved first and ``manifest.json`` is written last, as the commit; a directory without a
manifest there is an object still being published and reads as a miss. Two remote writers racing
for one key may interleave their files; the digests then disagree with the manifest, and the
object is quarantined and recomputed on first read.

Reading. Opening an object checks it is complete: the manifest parses and names this key, and
every file it lists is present with its size. Each file is then hashed as it is read and compared
with the manifest. Any failure moves the object to ``<root>/quarantine/`` and raises
`ObjectCorrupted`, a subclass of `ObjectMissing`: the caller recomputes, as for any cache miss.

Durability. Nothing is fsynced (it would double the cost of a 256 MB write): a killed process
cannot leave a partial object, but a power failure might leave a published one with short or stale
files. The size check on opening and the digest check on reading find those, and they are
recomputed like any other miss.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import itertools
import json
import logging
import os
import posixpath
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from zarr.abc.store import Store
from zarr.storage import FsspecStore

from circuitflow.store.arrow import to_arrow_table
from circuitflow.store.errors import ObjectCorrupted, ObjectMissing
from circuitflow.store.fs import (
    Location,
    hash_file,
    new_tmp_name,
    resolve,
    utc_now,
    utc_stamp,
    writing_to,
)
from circuitflow.store.keys import check_key, check_name, normalize
from circuitflow.store.packed import PACK_BYTES, PACKED, pack, unpacked_store
from circuitflow.store.tensors import (
    GROUP_METADATA,
    IntegrityError,
    SparseCOO,
    VerifyingStore,
    encode_dense,
    encode_sparse,
    read_dense,
    read_sparse,
    to_storage,
    to_torch,
)

log = logging.getLogger("circuitflow.store")

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 2  # 2: an object's Zarr files may be packed in zarr.zip


@cache
def default_code_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"circuitflow {version('circuitflow')}"
    except PackageNotFoundError:
        return "circuitflow (not installed)"


@dataclass(frozen=True)
class TensorInfo:
    name: str
    kind: str  # "dense" or "coo"
    dtype: str  # logical dtype, e.g. "float32" or "bfloat16"
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Problem:
    """One integrity problem: where (store-relative), which file in it, and what is wrong."""

    where: str
    file: str
    message: str

    def __str__(self) -> str:
        return (
            f"{self.where}/{self.file}: {self.message}"
            if self.file
            else (f"{self.where}: {self.message}")
        )


class ObjectStore:
    """The objects of a store rooted at a local path or an fsspec URL (see the module docs).

    `store.Store` adds the catalog and SQL on top; this class knows objects only.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, **storage_options: Any) -> None:
        self.location: Location = resolve(root, **storage_options)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location.url!r})"

    @property
    def fs(self) -> Any:
        return self.location.fs

    @property
    def root(self) -> str:
        return self.location.root

    # -- objects ----------------------------------------------------------------------------

    def object_path(self, stage: str, key: str) -> str:
        check_name("stage", stage)
        check_key(key)
        return self.location.join("objects", stage, key[:2], key)

    def writer(
        self,
        stage: str,
        key: str,
        *,
        version: int | str,
        params: Mapping[str, Any] | None = None,
        inputs: Mapping[str, str] | None = None,
        code_version: str | None = None,
        attrs: Mapping[str, Any] | None = None,
        pack_bytes: int = PACK_BYTES,
    ) -> ObjectWriter:
        """Start writing the object for `key` (use as a context manager; see ObjectWriter).

        An object whose Zarr files total at most `pack_bytes` is packed in one zip."""
        return ObjectWriter(
            self,
            stage,
            key,
            version=version,
            params=params or {},
            inputs=inputs or {},
            code_version=code_version or default_code_version(),
            attrs=attrs or {},
            pack_bytes=pack_bytes,
        )

    def get(self, stage: str, key: str, *, verify: bool = False) -> StoredObject | None:
        """The object for `key`, or None on a miss (absent, incomplete or corrupted).

        `verify` re-hashes every file now instead of as each file is read.
        """
        try:
            return self.open(stage, key, verify=verify)
        except ObjectMissing:
            return None

    @contextlib.contextmanager
    def computing(self, stage: str, key: str) -> Iterator[None]:
        """Hold while computing the object for `key`: two processes (Dask workers, two sweeps
        on one store) never compute one key at once. The second waits, then finds the first's
        object with `get`. Locks are striped over 256 files by key prefix (a rare false wait,
        no file per key). Local stores only; remote stores may compute a key twice, harmlessly.
        """
        check_name("stage", stage)
        check_key(key)
        if not self.location.local:
            yield
            return
        directory = self.location.join("tmp", "locks")
        os.makedirs(directory, exist_ok=True)
        fd = os.open(os.path.join(directory, f"{key[:2]}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def exists(self, stage: str, key: str) -> bool:
        return self.get(stage, key) is not None

    def open(self, stage: str, key: str, *, verify: bool = False) -> StoredObject:
        """Like `get`, but raise ObjectMissing / ObjectCorrupted (with the reason) on a miss."""
        path = self.object_path(stage, key)
        manifest, problem = self.read_manifest(path, stage, key)
        if manifest is None:
            if problem is None:
                raise ObjectMissing(f"no object {stage}/{key}")
            if problem == "manifest.json is missing" and not self.location.local:
                raise ObjectMissing(f"object {stage}/{key} is not fully published yet")
            raise self.corrupted(path, [Problem(self.location.rel(path), "", problem)])
        if verify:
            problems = hash_files(self.location, path, manifest)
        else:
            problems = check_complete(self.location, path, manifest)
        if problems:
            raise self.corrupted(path, problems)
        self._touch(path)
        return StoredObject(self, stage, key, path, manifest)

    def _touch(self, path: str) -> None:
        """Record that the object was used now (its manifest's mtime): `gc --max-size` evicts
        the least recently used first. Local stores only."""
        if self.location.local:
            with contextlib.suppress(OSError):
                os.utime(posixpath.join(path, MANIFEST))

    def last_used(self, path: str) -> float:
        """When the object at `path` was last opened (seconds since the epoch)."""
        try:
            return float(self.fs.modified(posixpath.join(path, MANIFEST)).timestamp())
        except (OSError, NotImplementedError, AttributeError):
            return 0.0

    def read_manifest(
        self, path: str, stage: str, key: str
    ) -> tuple[dict[str, Any] | None, str | None]:
        try:
            raw = self.fs.cat_file(posixpath.join(path, MANIFEST))
        except FileNotFoundError:
            return None, ("manifest.json is missing" if self.fs.exists(path) else None)
        try:
            manifest = json.loads(raw)
        except ValueError as exc:
            return None, f"manifest.json is not valid JSON ({exc})"
        if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
            return None, "manifest.json has no file list"
        if manifest.get("key") != key or manifest.get("stage") != stage:
            return None, "manifest.json describes another object"
        return manifest, None

    def iter_objects(self) -> Iterator[tuple[str, str, str]]:
        """(stage, key, path) of every object directory, complete or not."""
        base = self.location.join("objects")
        for stage_dir in _subdirs(self.fs, base):
            for prefix_dir in _subdirs(self.fs, stage_dir):
                for obj_dir in _subdirs(self.fs, prefix_dir):
                    yield posixpath.basename(stage_dir), posixpath.basename(obj_dir), obj_dir

    # -- damage -----------------------------------------------------------------------------

    def quarantine(self, path: str, reason: str) -> str | None:
        """Move an object directory aside to quarantine/; None if it was already gone."""
        rel = self.location.rel(path)
        parts = rel.split("/")
        stage, key = parts[1], parts[-1]
        dest = self.location.join("quarantine", stage, f"{key}-{utc_stamp()}-{new_tmp_name('q')}")
        return self._move_aside(path, dest, reason)

    def quarantine_batch(self, path: str, reason: str) -> str | None:
        """Move a damaged catalog batch directory aside to quarantine/tables/."""
        name = posixpath.basename(path.rstrip("/"))
        dest = self.location.join("quarantine", "tables", f"{name}-{new_tmp_name('q')}")
        return self._move_aside(path, dest, reason)

    def _move_aside(self, path: str, dest: str, reason: str) -> str | None:
        try:
            if self.location.local:
                os.makedirs(posixpath.dirname(dest), exist_ok=True)
                os.rename(path, dest)
            else:
                self.fs.mv(path, dest, recursive=True)
        except FileNotFoundError:
            return None
        with contextlib.suppress(OSError):
            self.fs.pipe_file(posixpath.join(dest, "REASON.txt"), (reason + "\n").encode())
        return dest

    def corrupted(self, path: str, problems: list[Problem]) -> ObjectCorrupted:
        """Quarantine a damaged object and build the error that reports it."""
        rel = self.location.rel(path)
        what = "; ".join(f"{p.file or 'object'}: {p.message}" for p in problems)
        dest = self.quarantine(path, what)
        where = (
            f"moved to {self.location.rel(dest)}"
            if dest
            else "already moved aside by another process"
        )
        message = (
            f"object {rel} is corrupted ({what}); {where}; "
            "it is treated as a cache miss and will be recomputed"
        )
        log.warning(message)
        return ObjectCorrupted(message, problems)


def _subdirs(fs: Any, path: str) -> list[str]:
    try:
        entries = fs.ls(path, detail=True)
    except FileNotFoundError:
        return []
    return sorted(e["name"].rstrip("/") for e in entries if e["type"] == "directory")


def check_complete(loc: Location, path: str, manifest: Mapping[str, Any]) -> list[Problem]:
    """Every file the manifest lists is present with the recorded size (no hashing)."""
    where = loc.rel(path)
    try:
        listing = loc.fs.find(path, detail=True)
    except FileNotFoundError:
        listing = {}
    sizes = {posixpath.relpath(name, path): info["size"] for name, info in listing.items()}
    problems = []
    for rel, expected in sorted(manifest["files"].items()):
        if rel not in sizes:
            problems.append(Problem(where, rel, "file is missing"))
        elif sizes[rel] != expected["size"]:
            problems.append(
                Problem(where, rel, f"size is {sizes[rel]} bytes, manifest says {expected['size']}")
            )
    return problems


def hash_files(
    loc: Location, path: str, manifest: Mapping[str, Any], workers: int = 2
) -> list[Problem]:
    """Re-hash every file against the manifest; one Problem per missing or changed file."""
    where = loc.rel(path)

    def check(item: tuple[str, Mapping[str, Any]]) -> Problem | None:
        rel, expected = item
        try:
            digest, size = hash_file(posixpath.join(path, rel), loc.fs)
        except FileNotFoundError:
            return Problem(where, rel, "file is missing")
        if digest != expected["sha256"] or size != expected["size"]:
            return Problem(where, rel, "contents do not match the manifest digest")
        return None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        found = pool.map(check, sorted(manifest["files"].items()))
        return [p for p in found if p is not None]


class ObjectWriter:
    """Collects an object's tensors and tables in a temporary directory, then publishes it.

    The Zarr files of its tensors are held in memory while they total at most `pack_bytes`,
    and written as one ``zarr.zip`` on publishing (`store.packed`); past that, they go to disk
    as they come.

    ::

        with store.writer("rows", key, version=1, params=p, inputs=i) as w:
            w.put_tensor("edges", matrix)
            w.put_table("order", {"node": [...]})
        obj = w.published  # the stored object (ours, or a racing writer's identical one)

    Leaving the block normally publishes; an exception discards the temporary copy.
    """

    def __init__(
        self,
        store: ObjectStore,
        stage: str,
        key: str,
        *,
        version: int | str,
        params: Mapping[str, Any],
        inputs: Mapping[str, str],
        code_version: str,
        attrs: Mapping[str, Any],
        pack_bytes: int = PACK_BYTES,
    ) -> None:
        self.store = store
        self.stage = check_name("stage", stage)
        self.key = check_key(key)
        self.final_path = store.object_path(stage, key)
        self.header = {
            "format": MANIFEST_FORMAT,
            "stage": stage,
            "key": key,
            "version": normalize(version),
            "params": normalize(params),
            "inputs": normalize(inputs),
            "code_version": code_version,
            "attrs": normalize(attrs),
        }
        loc = store.location
        self.tmp_path = loc.join("tmp", new_tmp_name(f"obj-{stage}-{key[:12]}"))
        if loc.local:
            with writing_to(loc, f"object {stage}/{key}"):
                os.makedirs(self.tmp_path)
        self._digests: dict[str, tuple[str, int]] = {}
        self._made_dirs: set[str] = set()  # an object has a few dozen files in a few directories
        self.pack_bytes = pack_bytes
        self._packing: list[tuple[str, bytes]] | None = []  # None: too big, written as files
        self._packing_size = 0
        self._tensors: dict[str, dict[str, Any]] = {}
        self._tables: dict[str, dict[str, Any]] = {}
        self._files: dict[str, dict[str, Any]] = {}
        self.published: StoredObject | None = None
        self.won: bool | None = None  # True if this writer's copy became the object

    def __enter__(self) -> ObjectWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.discard()
            return
        try:
            self.publish()
        except BaseException:  # a full disk while writing zarr.zip or the manifest
            self.discard()
            raise

    def _write(self, rel: str, data: bytes) -> None:
        """Write one file of the object into the temporary copy, recording its digest."""
        path = posixpath.join(self.tmp_path, rel)
        with writing_to(self.store.location, f"object {self.stage}/{self.key}"):
            if self.store.location.local:
                directory = posixpath.dirname(path)
                if directory not in self._made_dirs:
                    os.makedirs(directory, exist_ok=True)
                    self._made_dirs.add(directory)
                with open(path, "wb") as f:
                    f.write(data)
            else:
                self.store.fs.pipe_file(path, data)
        self._digests[rel] = (hashlib.sha256(data).hexdigest(), len(data))

    def _write_tensor_files(self, files: Iterable[tuple[str, bytes]]) -> None:
        if not self._tensors:  # the first tensor: the Zarr groups above it
            groups = [("zarr.json", GROUP_METADATA), ("tensors/zarr.json", GROUP_METADATA)]
            files = itertools.chain(groups, files)
        for rel, data in files:
            if self._packing is not None and self._packing_size + len(data) <= self.pack_bytes:
                self._packing.append((rel, data))
                self._packing_size += len(data)
            else:
                self._stop_packing()
                self._write(rel, data)

    def _stop_packing(self) -> None:
        """Too big to pack: the Zarr files held so far go to disk, and the rest as they come."""
        held, self._packing = self._packing or [], None
        for rel, data in held:
            self._write(rel, data)

    def _claim(self, name: str) -> str:
        check_name("tensor or table name", name)
        if name in self._tensors or name in self._tables or name in self._files:
            raise ValueError(f"{name!r} was already written to this object")
        return name

    def put_tensor(
        self,
        name: str,
        value: Any,
        *,
        dtype: str | None = None,
        chunks: tuple[int, ...] | None = None,
        dims: Sequence[str] | None = None,
    ) -> TensorInfo:
        """Store a dense tensor (numpy or torch; raw bits with `dtype="bfloat16"`).

        `dims` names its dimensions (xarray shows them); by default `<name>_dim<i>`, unique to
        the tensor. Torch sparse tensors and SparseCOO values are passed on to `put_sparse`.
        """
        if isinstance(value, SparseCOO) or getattr(value, "is_sparse", False):
            return self.put_sparse(name, value)
        self._claim(name)
        array, logical = to_storage(value, dtype)
        dims = (
            tuple(dims) if dims is not None else tuple(f"{name}_dim{i}" for i in range(array.ndim))
        )
        files = encode_dense(f"tensors/{name}", array, logical, chunks=chunks, dimension_names=dims)
        self._write_tensor_files(files)
        info = {"kind": "dense", "dtype": logical, "shape": list(array.shape)}
        self._tensors[name] = info
        return TensorInfo(name, "dense", logical, array.shape)

    def put_sparse(
        self,
        name: str,
        value: Any = None,
        *,
        indices: Any = None,
        values: Any = None,
        shape: Any = None,
        dtype: str | None = None,
    ) -> TensorInfo:
        """Store a sparse COO tensor: a torch sparse tensor, a SparseCOO, or its three parts."""
        self._claim(name)
        if value is not None:
            coo = SparseCOO.from_value(value)
        else:
            coo = SparseCOO.build(indices, values, shape, dtype)
        self._write_tensor_files(encode_sparse(f"tensors/{name}", coo, name))
        self._tensors[name] = {
            "kind": "coo",
            "dtype": coo.dtype,
            "shape": list(coo.shape),
            "nnz": int(coo.values.shape[0]),
        }
        return TensorInfo(name, "coo", coo.dtype, coo.shape)

    def put_table(self, name: str, table: Any) -> None:
        """Store a table (pyarrow Table, dict of columns, list of row dicts or DataFrame)."""
        self._claim(name)
        table = to_arrow_table(table)
        sink = pa.BufferOutputStream()
        # Non-compliant nesting keeps list field names as given, so tables round-trip exactly.
        pq.write_table(table, sink, compression="zstd", use_compliant_nested_type=False)
        self._write(f"tables/{name}.parquet", sink.getvalue().to_pybytes())
        self._tables[name] = {"rows": table.num_rows, "columns": table.column_names}

    def put_file(self, name: str, data: bytes) -> None:
        """Store a named blob of bytes as `files/<name>` (an exported JSON graph, say)."""
        self._claim(name)
        self._write(f"files/{name}", data)
        self._files[name] = {"size": len(data)}

    def manifest(self) -> dict[str, Any]:
        return {
            **self.header,
            "created_at": utc_now().isoformat(),
            "tensors": self._tensors,
            "tables": self._tables,
            "blobs": self._files,
            "files": {
                rel: {"sha256": digest, "size": size}
                for rel, (digest, size) in sorted(self._digests.items())
            },
        }

    def publish(self) -> StoredObject:
        """Make the object visible under its key, atomically; return the stored object."""
        if self.published is not None:
            return self.published
        if self._packing:
            self._write(PACKED, pack(self._packing))
            self._packing = None
        manifest = self.manifest()
        # Not indented: indented JSON takes Python's pure-Python encoder (4x the time, here).
        data = json.dumps(manifest, sort_keys=True).encode()
        with writing_to(self.store.location, f"object {self.stage}/{self.key}"):
            if self.store.location.local:
                self._publish_local(data)
            else:
                self._publish_remote(data)
        if self.won:
            self.published = StoredObject(
                self.store, self.stage, self.key, self.final_path, manifest
            )
        else:
            self.discard()
            self.published = self.store.open(self.stage, self.key)
        return self.published

    def _publish_local(self, manifest: bytes) -> None:
        with open(os.path.join(self.tmp_path, MANIFEST), "wb") as f:
            f.write(manifest)
        os.makedirs(os.path.dirname(self.final_path), exist_ok=True)
        for _ in range(3):
            try:
                os.rename(self.tmp_path, self.final_path)
                self.won = True
                return
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
            # Someone published this key first. Theirs stands if it is sound; a damaged one is
            # quarantined by get() and we try again.
            if self.store.get(self.stage, self.key) is not None:
                self.won = False
                return
        raise OSError(f"could not publish {self.final_path}: the target keeps reappearing")

    def _publish_remote(self, manifest: bytes) -> None:
        fs = self.store.fs
        if fs.exists(posixpath.join(self.final_path, MANIFEST)):
            self.won = False
            return
        for rel in self._digests:
            fs.mv(posixpath.join(self.tmp_path, rel), posixpath.join(self.final_path, rel))
        fs.pipe_file(posixpath.join(self.final_path, MANIFEST), manifest)
        self.won = True
        self.discard()

    def discard(self) -> None:
        """Delete the temporary copy (idempotent)."""
        if self.store.location.local:
            shutil.rmtree(self.tmp_path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                self.store.fs.rm(self.tmp_path, recursive=True)


class StoredObject:
    """A published object. Reads verify each file against the manifest as it is read."""

    def __init__(
        self, store: ObjectStore, stage: str, key: str, path: str, manifest: dict[str, Any]
    ) -> None:
        self.store = store
        self.stage = stage
        self.key = key
        self.path = path
        self.manifest = manifest
        self._unpacked: Store | None = None  # a packed object's files, once read

    def __repr__(self) -> str:
        return f"StoredObject({self.stage}/{self.key[:12]}..., {len(self.files)} files)"

    @property
    def params(self) -> dict[str, Any]:
        return self.manifest["params"]

    @property
    def inputs(self) -> dict[str, str]:
        return self.manifest["inputs"]

    @property
    def attrs(self) -> dict[str, Any]:
        return self.manifest.get("attrs", {})

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        return self.manifest["files"]

    @property
    def tensors(self) -> dict[str, TensorInfo]:
        return {
            name: TensorInfo(name, t["kind"], t["dtype"], tuple(t["shape"]))
            for name, t in self.manifest["tensors"].items()
        }

    @property
    def tables(self) -> list[str]:
        return list(self.manifest["tables"])

    @contextlib.contextmanager
    def _reading(self, kind: str, name: str, known: Mapping[str, Any]) -> Iterator[None]:
        if name not in known:
            raise KeyError(f"{self.stage}/{self.key[:12]}... has no {kind} {name!r}")
        try:
            yield
        except IntegrityError as exc:
            rel = self.store.location.rel(self.path)
            raise self.store.corrupted(self.path, [Problem(rel, exc.file, exc.problem)]) from None

    def _zarr(self) -> Store:
        """The object's Zarr files as a store, each file checked against the manifest."""
        if PACKED in self.files:
            if self._unpacked is None:
                self._unpacked = unpacked_store(self._verified_file(PACKED))
            return self._unpacked
        loc = self.store.location
        base = FsspecStore.from_url(
            loc.url_of(self.path), storage_options=dict(loc.storage_options), read_only=True
        )
        return VerifyingStore(base, self.files)

    def _verified_file(self, rel: str) -> bytes:
        """The bytes of one file of the object, checked against the manifest digest."""
        try:
            data = self.store.fs.cat_file(posixpath.join(self.path, rel))
        except FileNotFoundError:
            raise IntegrityError(rel, "file is missing") from None
        if hashlib.sha256(data).hexdigest() != self.files.get(rel, {}).get("sha256"):
            raise IntegrityError(rel, "contents do not match the manifest digest")
        return data

    def tensor(self, name: str, rows: slice | None = None) -> np.ndarray:
        """A dense numpy array (raw unsigned bits for bfloat16/float8: see `tensors[name].dtype`).

        `rows` selects along the first axis and reads only the chunks holding them (a few rows
        of a 250 MB edge matrix cost one 8 MB chunk; a packed object, 8 MB at most, is read
        whole once). Sparse tensors are densified; use `sparse` to keep them sparse.
        """
        with self._reading("tensor", name, self.manifest["tensors"]):
            if self.manifest["tensors"][name]["kind"] == "coo":
                dense = read_sparse(self._zarr(), f"tensors/{name}").to_dense()
                return dense if rows is None else dense[rows]
            return read_dense(self._zarr(), f"tensors/{name}", rows)[0]

    def dataset(self) -> Any:
        """The object's dense tensors as one lazy `xarray.Dataset`, dimensions named as the
        writer named them (`put_tensor(dims=...)`), every file verified against the manifest
        as xarray reads it: damaged metadata raises `ObjectCorrupted` here, a damaged chunk
        raises `IntegrityError` when its values are read.

        Without circuitflow, `xarray.open_zarr(<object dir>, group="tensors")` opens the same
        arrays, unverified; for a packed object (``zarr.zip`` in its directory, see
        `store.packed`), `xarray.open_zarr(zarr.storage.ZipStore(<object dir>/zarr.zip,
        mode="r"), group="tensors")`. Raw-bit tensors (bfloat16, float8) show as their
        unsigned integers; sparse (COO) tensors are groups, which a Dataset leaves out.
        """
        import xarray

        try:
            return xarray.open_zarr(
                self._zarr(), group="tensors", consolidated=False, zarr_format=3
            )
        except IntegrityError as exc:
            rel = self.store.location.rel(self.path)
            raise self.store.corrupted(self.path, [Problem(rel, exc.file, exc.problem)]) from None

    def sparse(self, name: str) -> SparseCOO:
        with self._reading("tensor", name, self.manifest["tensors"]):
            if self.manifest["tensors"][name]["kind"] != "coo":
                raise TypeError(f"tensor {name!r} is dense; read it with tensor()")
            return read_sparse(self._zarr(), f"tensors/{name}")

    def torch(self, name: str, rows: slice | None = None) -> Any:
        """The tensor as torch, in its logical dtype (bfloat16 included); sparse stays sparse
        (`rows`: see `tensor`)."""
        info = self.tensors.get(name)
        if info is not None and info.kind == "coo" and rows is None:
            return self.sparse(name).to_torch()
        array = self.tensor(name, rows)
        return to_torch(array, self.manifest["tensors"][name]["dtype"])

    def table(self, name: str) -> pa.Table:
        rel = f"tables/{name}.parquet"
        with self._reading("table", name, self.manifest["tables"]):
            return pq.read_table(pa.BufferReader(self._verified_file(rel)))

    @property
    def blobs(self) -> list[str]:
        return list(self.manifest.get("blobs", {}))

    def blob_path(self, name: str) -> str:
        """Where the named blob lies: a local path, or a URL for remote stores."""
        path = posixpath.join(self.path, "files", name)
        return path if self.store.location.local else self.store.location.url_of(path)

    def blob(self, name: str) -> bytes:
        """The named blob's bytes, checked against the manifest digest."""
        with self._reading("blob", name, self.manifest.get("blobs", {})):
            return self._verified_file(f"files/{name}")

    def verify(self) -> list[Problem]:
        """Re-hash every file; an empty list means the object is intact."""
        return hash_files(self.store.location, self.path, self.manifest)
