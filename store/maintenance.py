"""Store upkeep: list runs, size by stage, verify integrity, collect garbage, compact tables.

- `du`: bytes and counts per stage (objects), per table, in quarantine/ and tmp/.
- `verify`: re-hash every object file against its manifest and open every table file's footer;
  optionally quarantine the damaged objects.
- `gc`: objects that no catalog row references, temporary leftovers and quarantined
  objects, each older than a grace period (runs write their events when they finish, so a young
  unreferenced object may belong to a run still in progress). Dry run unless ``apply=True``.
  Referenced means: named in a column that a registered table declares as `object_keys`.
- `compact`: merge each shard's small Parquet files into one file (see `store.catalog`).
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from circuitflow.store.catalog import COMPACT_PREFIX, SOURCES_META, read_sources
from circuitflow.store.fs import new_tmp_name, publish_file, utc_stamp
from circuitflow.store.objects import Problem, hash_files
from circuitflow.store.query import QuerySession
from circuitflow.store.store import Store

DEFAULT_GRACE_S = 24 * 3600
SMALL_FILE_BYTES = 64 << 20
COMPACT_OUTPUT_BYTES = 512 << 20
ROW_GROUP_ROWS = 128 * 1024


# -- du ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    area: str  # objects, tables, quarantine, tmp
    name: str  # stage or table ("" for quarantine and tmp)
    count: int  # objects, files, or entries
    bytes: int


def _children(fs: Any, path: str) -> list[dict[str, Any]]:
    try:
        return fs.ls(path, detail=True)
    except FileNotFoundError:
        return []


def _size(fs: Any, path: str) -> int:
    try:
        return int(fs.du(path, total=True, withdirs=False))
    except FileNotFoundError:
        return 0


def du(store: Store) -> list[Usage]:
    fs, loc = store.fs, store.location
    rows: list[Usage] = []
    for entry in _children(fs, loc.join("objects")):
        if entry["type"] != "directory":
            continue
        stage_dir = entry["name"].rstrip("/")
        count = sum(
            len([e for e in _children(fs, p["name"]) if e["type"] == "directory"])
            for p in _children(fs, stage_dir)
            if p["type"] == "directory"
        )
        rows.append(Usage("objects", posixpath.basename(stage_dir), count, _size(fs, stage_dir)))
    for table in store.catalog.table_names():
        files = store.catalog.files(table)
        paths = files.files + files.superseded
        if paths:
            size = sum(int(fs.info(p)["size"]) for p in paths)
            rows.append(Usage("tables", table, len(paths), size))
    for area in ("quarantine", "tmp"):
        entries = _children(fs, loc.join(area))
        if area == "quarantine":  # quarantine/<stage>/<entry>
            entries = [e for d in entries for e in _children(fs, d["name"])]
        if entries:
            total = sum(_size(fs, e["name"]) for e in entries)
            rows.append(Usage(area, "", len(entries), total))
    return rows


# -- verify --------------------------------------------------------------------------------


@dataclass
class VerifyReport:
    objects: int = 0
    files: int = 0
    table_files: int = 0
    problems: list[Problem] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(store: Store, *, quarantine: bool = False, workers: int = 2) -> VerifyReport:
    """Re-hash every object file and read every table file's footer."""
    loc = store.location
    report = VerifyReport()
    for stage, key, path in store.iter_objects():
        report.objects += 1
        manifest, problem = store.read_manifest(path, stage, key)
        if manifest is None:
            found = [Problem(loc.rel(path), "", problem or "manifest.json is missing")]
        else:
            report.files += len(manifest["files"])
            found = hash_files(loc, path, manifest, workers=workers)
        report.problems.extend(found)
        if found and quarantine:
            dest = store.quarantine(path, "; ".join(str(p) for p in found))
            if dest:
                report.quarantined.append(loc.rel(dest))
    for table in store.catalog.table_names():
        files = store.catalog.files(table)
        for path in files.files + files.superseded:
            report.table_files += 1
            try:
                with store.fs.open(path, "rb") as f:
                    pq.read_metadata(f)
            except Exception as exc:  # any failure to parse means the file is unusable
                report.problems.append(Problem(loc.rel(path), "", f"unreadable Parquet ({exc})"))
    return report


# -- gc ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GcItem:
    kind: str  # object, tmp, quarantine
    path: str  # relative to the store root
    bytes: int
    reason: str


@dataclass
class GcReport:
    items: list[GcItem]
    applied: bool

    @property
    def bytes(self) -> int:
        return sum(i.bytes for i in self.items)


def referenced_keys(store: Store) -> set[str]:
    """Object keys named in the `object_keys` column of any registered table."""
    keys: set[str] = set()
    with QuerySession(store.catalog) as session:
        for table, spec in store.catalog.tables.items():
            if spec.object_keys and store.catalog.files(table).files:
                column = spec.object_keys
                rows = session.arrow(
                    f'SELECT DISTINCT "{column}" AS k FROM "{table}" WHERE "{column}" IS NOT NULL'
                )
                keys.update(rows.column("k").to_pylist())
    return keys


def _age_s(store: Store, path: str, now: float) -> float:
    """Seconds since a path was last modified (0 when unknown, so it is never collected)."""
    try:
        modified = store.fs.modified(path)
    except (FileNotFoundError, NotImplementedError, IsADirectoryError, OSError):
        try:
            raw = store.fs.cat_file(posixpath.join(path, "manifest.json"))
            modified = datetime.fromisoformat(json.loads(raw)["created_at"])
        except Exception:
            return 0.0
    if isinstance(modified, datetime):
        return now - modified.timestamp()
    return now - float(modified)


def gc(store: Store, *, apply: bool = False, older_than: float = DEFAULT_GRACE_S) -> GcReport:
    """Find (and with `apply`, delete) what no run needs; see the module docstring."""
    loc, fs = store.location, store.fs
    now = time.time()
    keys = referenced_keys(store)
    items: list[GcItem] = []
    for stage, key, path in store.iter_objects():
        if key not in keys and _age_s(store, path, now) >= older_than:
            reason = f"no run references {stage} object {key[:12]}..."
            items.append(GcItem("object", loc.rel(path), _size(fs, path), reason))
    for entry in _children(fs, loc.join("tmp")):
        if _age_s(store, entry["name"], now) >= older_than:
            items.append(
                GcItem("tmp", loc.rel(entry["name"]), _size(fs, entry["name"]), "unfinished write")
            )
    for stage_dir in _children(fs, loc.join("quarantine")):
        for entry in _children(fs, stage_dir["name"]):
            if _age_s(store, entry["name"], now) >= older_than:
                size = _size(fs, entry["name"])
                items.append(GcItem("quarantine", loc.rel(entry["name"]), size, "quarantined"))
    if apply:
        for item in items:
            _remove(store, loc.join(item.path), item.kind == "object")
    return GcReport(items, applied=apply)


def _remove(store: Store, path: str, is_object: bool) -> None:
    loc = store.location
    if loc.local:
        if is_object:
            # Renamed away first: a concurrent reader sees the whole object or none of it.
            doomed = loc.join("tmp", new_tmp_name("gc"))
            os.makedirs(posixpath.dirname(doomed), exist_ok=True)
            try:
                os.rename(path, doomed)
            except FileNotFoundError:
                return
            with contextlib.suppress(OSError):  # the objects/<stage>/<xx>/ parent, once empty
                os.rmdir(posixpath.dirname(path))
            path = doomed
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        return
    # Manifest first, so that readers treat the rest as an unfinished object.
    with contextlib.suppress(FileNotFoundError):
        store.fs.rm_file(posixpath.join(path, "manifest.json"))
    with contextlib.suppress(FileNotFoundError):
        store.fs.rm(path, recursive=True)


# -- compact -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Compaction:
    table: str
    shard: str
    files_in: int
    rows: int
    output: str  # relative path of the merged file


def _batches(paths: list[str], limit: int, sizes: dict[str, int]) -> Iterable[list[str]]:
    group: list[str] = []
    total = 0
    for path in paths:
        if group and total + sizes[path] > limit:
            yield group
            group, total = [], 0
        group.append(path)
        total += sizes[path]
    if group:
        yield group


def compact(
    store: Store,
    tables: Iterable[str] | None = None,
    *,
    small_bytes: int = SMALL_FILE_BYTES,
    output_bytes: int = COMPACT_OUTPUT_BYTES,
) -> list[Compaction]:
    """Merge the small Parquet files of each shard of each table into few files, atomically.

    A merged file is published (atomic rename) before its sources are deleted, and names them in
    its metadata, so readers never see a row twice or miss one, even if this is interrupted.
    """
    catalog, fs = store.catalog, store.fs
    done: list[Compaction] = []
    for table in tables or catalog.table_names():
        schema = catalog.spec(table).schema if table in catalog.tables else None
        with catalog.lock(table, exclusive=True):
            for shard_dir in catalog.shard_dirs(table):
                names, superseded = catalog.shard_listing(shard_dir)
                live = []
                for path in names:
                    if posixpath.basename(path) in superseded:
                        fs.rm_file(path)  # an interrupted compaction left it behind
                    else:
                        live.append(path)
                sizes = {p: int(fs.info(p)["size"]) for p in live}
                small = [p for p in live if sizes[p] <= small_bytes]
                if len(small) < 2:
                    continue
                for group in _batches(small, output_bytes, sizes):
                    if len(group) < 2:
                        continue
                    done.append(_merge(store, table, schema, shard_dir, group))
    return done


def _merge(
    store: Store, table: str, schema: pa.Schema | None, shard_dir: str, group: list[str]
) -> Compaction:
    loc, fs = store.location, store.fs
    if schema is None:  # a table nobody registered: the union of its files' columns
        schemas = []
        for path in group:
            with fs.open(path, "rb") as f:
                schemas.append(pq.read_schema(f).remove_metadata())
        schema = pa.unify_schemas(schemas)
    sources: set[str] = set()
    for path in group:
        sources.add(posixpath.basename(path))
        sources.update(read_sources(fs, path))
    filesystem = store.catalog._arrow_fs()
    data = ds.dataset(group, schema=schema, format="parquet", filesystem=filesystem).to_table()
    # Sorted by run, so Parquet row-group statistics let a run_id filter skip most of the file.
    data = data.sort_by("run_id")
    meta_schema = schema.with_metadata({SOURCES_META: json.dumps(sorted(sources)).encode()})
    data = data.replace_schema_metadata(meta_schema.metadata)
    name = f"{COMPACT_PREFIX}{utc_stamp()}-{new_tmp_name('c').rsplit('-', 1)[-1]}.parquet"
    final = posixpath.join(shard_dir, name)
    options = {"compression": "zstd", "row_group_size": ROW_GROUP_ROWS}
    if loc.local:
        tmp = loc.join("tmp", new_tmp_name("compact") + ".parquet")
        os.makedirs(posixpath.dirname(tmp), exist_ok=True)
        pq.write_table(data, tmp, **options)
        publish_file(loc, tmp, final, exclusive=True)
    else:
        with fs.open(final, "wb") as f:
            pq.write_table(data, f, **options)
    for path in group:
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(path)
    shard = posixpath.basename(shard_dir).split("=", 1)[-1]
    return Compaction(table, shard, len(group), data.num_rows, loc.rel(final))
