"""Where a store lives: one fsspec filesystem and a root path, local or remote.

Local paths and ``file://`` URLs go through fsspec's LocalFileSystem exactly like any other URL.
The local filesystem is special in one place only: publishing uses ``os.rename``/``os.link``,
which are atomic there, while fsspec's generic ``mv`` is a copy followed by a delete (and moves a
directory *into* an existing one instead of failing). Remote stores (s3://, gs://, memory://)
fall back to "write everything, then the small commit file last"; see `store.objects`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec
from fsspec import AbstractFileSystem

from circuitflow.store.errors import StoreWriteError

ENV_VAR = "CIRCUITFLOW_STORE"
DEFAULT_ROOT = ".circuitflow/store"


def default_root(root: str | os.PathLike[str] | None = None) -> str:
    """The store root to use: `root`, else $CIRCUITFLOW_STORE, else ./.circuitflow/store.

    The one place the default is decided. Local paths come back absolute (Dask workers may run
    in another directory); URLs (s3://, memory://) come back as given.
    """
    text = os.fspath(root) if root else os.environ.get(ENV_VAR) or DEFAULT_ROOT
    return text if "://" in text else os.path.abspath(os.path.expanduser(text))


def default_cache_dir() -> Path:
    """$CIRCUITFLOW_CACHE_DIR, else $XDG_CACHE_HOME/circuitflow, else ~/.cache/circuitflow."""
    if env := os.environ.get("CIRCUITFLOW_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "circuitflow"


def utc_now() -> datetime:
    return datetime.now(UTC)


def utc_stamp() -> str:
    """A sortable, filename-safe UTC timestamp, e.g. 20251128T035301Z."""
    return utc_now().strftime("%Y%m%dT%H%M%SZ")


def new_tmp_name(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class Location:
    """A store root: the filesystem, the root path inside it, and whether it is local."""

    fs: AbstractFileSystem
    root: str
    protocol: str
    storage_options: dict[str, Any] = field(default_factory=dict)

    @property
    def local(self) -> bool:
        return self.protocol == "file"

    @property
    def url(self) -> str:
        return self.url_of(self.root)

    def url_of(self, path: str) -> str:
        """The fsspec URL of a path inside this store (zarr's FsspecStore takes URLs)."""
        return self.fs.unstrip_protocol(path)

    def join(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def rel(self, path: str) -> str:
        """A path relative to the store root, for messages and reports."""
        return posixpath.relpath(path, self.root)


@contextlib.contextmanager
def writing_to(loc: Location, what: str) -> Iterator[None]:
    """Turn the filesystem refusing a write (disk full, read-only, permissions) into one
    StoreWriteError that names the store: the user's first question is which disk."""
    try:
        yield
    except (FileNotFoundError, FileExistsError, IsADirectoryError):
        raise  # the callers' own logic handles these
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise StoreWriteError(f"cannot write {what} to the store at {loc.url}: {reason}") from exc


def check_writable(url: str) -> None:
    """Fail now, with one StoreWriteError, where a run could not write its results: an URL
    whose filesystem is not installed or cannot be reached or written (a small probe file is
    written and removed), a local root that is (or lies under) a file, or on a read-only disk.
    Called before anything starts, so a bad --store costs seconds, not a run."""
    try:
        loc = resolve(url)
        if not loc.local:
            probe = loc.join("tmp", new_tmp_name("probe"))
            loc.fs.pipe_file(probe, b"")
            loc.fs.rm(probe)
            return
    except Exception as exc:  # any client failure (network, credentials, DNS) means the same
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StoreWriteError(f"cannot write to the store at {url}: {reason}") from None
    path = Path(loc.root)
    while not path.exists():
        path = path.parent
    if not path.is_dir():
        raise StoreWriteError(
            f"cannot use {loc.root} as a store: {path} is a file, not a directory"
        )
    if not os.access(path, os.W_OK):
        raise StoreWriteError(f"cannot write to the store at {loc.root}: {path} is read-only")


def resolve(root: str | os.PathLike[str] | None = None, **storage_options: Any) -> Location:
    """Turn a local path or fsspec URL (None: the default root) into a `Location`."""
    text = default_root(root)
    if "://" not in text:
        text = "file://" + text
    protocol = text.split("://", 1)[0]
    if protocol == "file":
        # Parent directories of every written file are created on demand, as object stores do.
        storage_options = {"auto_mkdir": True, **storage_options}
    fs, path = fsspec.core.url_to_fs(text, **storage_options)
    if protocol == "file":
        path = os.path.abspath(path)
    path = path.rstrip("/") or "/"
    return Location(fs=fs, root=path, protocol=protocol, storage_options=dict(storage_options))


def hash_file(
    path: str | os.PathLike[str],
    fs: AbstractFileSystem | None = None,
    block: int = 8 << 20,
    progress_from: int | None = None,
) -> tuple[str, int]:
    """SHA-256 hex digest and size of a file (local, or in `fs`), read in blocks.

    A local file of at least `progress_from` bytes shows a progress bar on stderr while it is
    read: hashing gigabytes takes a while and should not look like a hang.
    """
    digest = hashlib.sha256()
    size = 0
    bar = None
    if (
        progress_from is not None
        and fs is None
        and (total := os.path.getsize(path)) >= progress_from
    ):
        from tqdm import tqdm

        label = f"hashing {os.path.basename(path)}"
        bar = tqdm(total=total, unit="B", unit_scale=True, desc=label, file=sys.stderr)
    with open(path, "rb") if fs is None else fs.open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
            size += len(chunk)
            if bar is not None:
                bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return digest.hexdigest(), size


def write_bytes_atomic(loc: Location, path: str, data: bytes, *, exclusive: bool = False) -> None:
    """Write a small file so that readers see either nothing or all of it.

    Local: a temporary file under <root>/tmp, then rename (or link, when `exclusive`, which fails
    with FileExistsError if `path` exists). Remote: a single PUT, which object stores make atomic.
    """
    if not loc.local:
        if exclusive and loc.fs.exists(path):
            raise FileExistsError(path)
        loc.fs.pipe_file(path, data)
        return
    tmp = Path(loc.join("tmp", new_tmp_name("file")))
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_bytes(data)
    publish_file(loc, str(tmp), path, exclusive=exclusive)


def publish_file(loc: Location, tmp: str, path: str, *, exclusive: bool = False) -> None:
    """Move a finished local temporary file into place atomically."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        if exclusive:
            os.link(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
