"""Store upkeep: sizes by stage and table, verify integrity, collect garbage, compact tables.

- `du`: bytes and counts per stage (objects), per table, in quarantine/ and tmp/.
- `verify`: re-hash every object file against its manifest and open every table file's footer;
  optionally quarantine the damaged objects.
- `gc`: objects that no catalog row references, temporary leftovers and quarantined
  objects, each older than a grace period (runs write their events when they finish, so a young
  unreferenced object may belong to a run still in progress). Dry run unless ``apply=True``.
  Referenced means: named in a column that a registered table declares as `object_keys`.
- `compact`: merge small catalog batches into one (see `store.catalog`).
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
import pyarrow.compute as pc
import pyarrow.parquet as pq

from circuitflow.store.fs import new_tmp_name
from circuitflow.store.objects import Problem, hash_files
from circuitflow.store.query import QuerySession
from circuitflow.store.store import Store

DEFAULT_GRACE_S = 24 * 3600
SMALL_FILE_BYTES = 64 << 20
COMPACT_OUTPUT_BYTES = 512 << 20


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
    state = store.catalog.state()
    for table in store.catalog.table_names():
        paths = state.files(table)
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
    state = store.catalog.state()
    for batch in state.batches + state.absorbed:
        found = []
        for table in batch.tables:
            report.table_files += 1
            try:
                with store.fs.open(batch.file(table), "rb") as f:
                    rows = pq.read_metadata(f).num_rows
            except Exception as exc:  # any failure to parse means the file is unusable
                found.append(Problem(loc.rel(batch.file(table)), "", f"unreadable Parquet ({exc})"))
                continue
            if rows != batch.rows[table]:
                problem = f"{rows} rows, commit.json says {batch.rows[table]}"
                found.append(Problem(loc.rel(batch.file(table)), "", problem))
        report.problems.extend(found)
        if found and quarantine:
            # The whole batch goes: its runs are then unrecorded, and the next run of them
            # records them again from their stored stages.
            dest = store.quarantine_batch(batch.path, "; ".join(str(p) for p in found))
            if dest:
                report.quarantined.append(loc.rel(dest))
    return report


# -- gc ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GcItem:
    kind: str  # object, tmp, quarantine, evict
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
    state = store.catalog.state()
    with QuerySession(store.catalog) as session:
        for table, spec in store.catalog.tables.items():
            if spec.object_keys and state.files(table):
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


def gc(
    store: Store,
    *,
    apply: bool = False,
    older_than: float = DEFAULT_GRACE_S,
    max_size: int | None = None,
) -> GcReport:
    """Find (and with `apply`, delete) what no run needs; see the module docstring.

    With `max_size` (bytes), also evict stored objects until the store fits: objects whose
    writer marked them `retention: recompute-first` (edge matrices: large, and recomputed from
    small inputs) before `recompute` ones, each least recently used first; `keep` objects
    (pruned graphs) and the catalog are never evicted. An evicted object is a cache miss: the
    next run that needs it recomputes it.
    """
    loc, fs = store.location, store.fs
    now = time.time()
    keys = referenced_keys(store)
    items: list[GcItem] = []
    for stage, key, path in store.iter_objects():
        if key not in keys and _age_s(store, path, now) >= older_than:
            reason = f"no run references {stage} object {key[:12]}..."
            items.append(GcItem("object", loc.rel(path), _size(fs, path), reason))
    for entry in _children(fs, loc.join("tmp")):
        if posixpath.basename(entry["name"].rstrip("/")) == "locks":
            continue  # held by running writers; a handful of small files
        if _age_s(store, entry["name"], now) >= older_than:
            items.append(
                GcItem("tmp", loc.rel(entry["name"]), _size(fs, entry["name"]), "unfinished write")
            )
    for stage_dir in _children(fs, loc.join("quarantine")):
        for entry in _children(fs, stage_dir["name"]):
            if _age_s(store, entry["name"], now) >= older_than:
                size = _size(fs, entry["name"])
                items.append(GcItem("quarantine", loc.rel(entry["name"]), size, "quarantined"))
    if max_size is not None:
        items += _evictions(store, max_size, {i.path for i in items}, sum(i.bytes for i in items))
    if apply:
        for item in items:
            _remove(store, loc.join(item.path), item.kind in ("object", "evict"))
    return GcReport(items, applied=apply)


EVICTION_ORDER = {"recompute-first": 0, "recompute": 1}  # "keep" (and unmarked): never


def _evictions(store: Store, max_size: int, planned: set[str], freed: int) -> list[GcItem]:
    """Objects to evict so that the store fits in `max_size` bytes (see `gc`)."""
    loc = store.location
    total = sum(u.bytes for u in du(store)) - freed
    candidates = []
    for stage, key, path in store.iter_objects():
        if loc.rel(path) in planned:
            continue
        manifest, _ = store.read_manifest(path, stage, key)
        if manifest is None:
            continue
        retention = manifest.get("attrs", {}).get("retention", "keep")
        if retention in EVICTION_ORDER:
            size = sum(f["size"] for f in manifest["files"].values())
            rank = (EVICTION_ORDER[retention], store.last_used(path))
            candidates.append((rank, stage, key, path, size))
    items = []
    for _, stage, key, path, size in sorted(candidates):
        if total <= max_size:
            break
        reason = f"store over {max_size} bytes: {stage} {key[:12]}... recomputes when read"
        items.append(GcItem("evict", loc.rel(path), size, reason))
        total -= size
    return items


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
    batches_in: int
    runs: int
    rows: int
    output: str  # relative path of the merged batch


def _groups(batches: list, limit: int, sizes: dict[str, int]) -> Iterable[list]:
    group: list = []
    total = 0
    for batch in batches:
        if group and total + sizes[batch.id] > limit:
            yield group
            group, total = [], 0
        group.append(batch)
        total += sizes[batch.id]
    if group:
        yield group


def compact(
    store: Store, *, small_bytes: int = SMALL_FILE_BYTES, output_bytes: int = COMPACT_OUTPUT_BYTES
) -> list[Compaction]:
    """Merge small committed batches into few, atomically; delete what earlier merges absorbed.

    A merged batch is published (one rename) before its sources are deleted and names them in
    its commit.json, so readers never see a row twice or miss one, even if this is interrupted.
    """
    catalog, fs = store.catalog, store.fs
    done: list[Compaction] = []
    with catalog.lock():
        state = catalog.state()
        for batch in state.absorbed:  # an interrupted compaction left them behind
            _remove(store, batch.path, is_object=False)
        sizes = {b.id: _size(fs, b.path) for b in state.batches}
        small = [b for b in state.batches if sizes[b.id] <= small_bytes]
        for group in _groups(small, output_bytes, sizes):
            if len(group) >= 2:
                done.append(_merge(store, state, group))
    return done


def _merge(store: Store, state, group: list) -> Compaction:
    """One batch holding the live rows of `group`, sorted by run (row-group statistics then let
    a run_id filter skip most of a file)."""
    ids = {b.id for b in group}
    held: dict[str, dict[str, bool]] = {}
    tables: dict[str, list[pa.Table]] = {}
    for batch in group:
        for table, runs in batch.tables.items():
            live = {r: final for r, final in runs.items() if state.latest[table, r] == batch.id}
            held.setdefault(table, {}).update(live)
            with store.fs.open(batch.file(table), "rb") as f:
                data = pq.read_table(f)
            keep = pc.is_in(data["run_id"], pa.array(list(live), pa.string()))
            tables.setdefault(table, []).append(data.filter(keep))
    merged = {
        t: pa.concat_tables(parts, promote_options="permissive").sort_by("run_id")
        for t, parts in tables.items()
    }
    sources = ids | {s for b in group for s in b.sources}
    out = store.catalog.publish(held, merged, sources)
    for batch in group:
        _remove(store, batch.path, is_object=False)
    runs = {r for table_runs in held.values() for r in table_runs}
    rows = sum(t.num_rows for t in merged.values())
    return Compaction(len(group), len(runs), rows, store.location.rel(out.path))
