"""Writing graph documents where people asked: one file, or a graph directory.

A graph directory is what circuit-tracer's local server (`circuit-tracer start-server
--graph_file_dir DIR`) and its frontend read: `{slug}.json` per graph, and `graph-metadata.json`,
an index `{"graphs": [metadata, ...]}` with one entry per slug. Writing a graph there adds or
replaces its entry and keeps the others. Every file is written beside its destination and
renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

INDEX = "graph-metadata.json"


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same directory."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def check_writable(path: str | os.PathLike) -> None:
    """Raise the OSError that writing a file at `path` would raise, before any work is done."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(21, "is a directory")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.unlink(tmp)


def document_bytes(doc: dict) -> bytes:
    return json.dumps(doc, indent=1).encode()


def write_graph_file(doc: dict, path: str | os.PathLike) -> int:
    """Write the document as one JSON file; returns its size in bytes."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(21, "is a directory (use --graph_file_dir for a directory)")
    data = document_bytes(doc)
    write_atomic(path, data)
    return len(data)


def write_graph_dir(doc: dict, directory: str | os.PathLike) -> Path:
    """Write `{slug}.json` into a graph directory and index it in graph-metadata.json."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    metadata = doc["metadata"]
    path = directory / f"{metadata['slug']}.json"
    write_atomic(path, document_bytes(doc))
    index_path = directory / INDEX
    graphs = []
    if index_path.exists():
        try:
            graphs = json.loads(index_path.read_text()).get("graphs", [])
        except (json.JSONDecodeError, AttributeError):
            raise ValueError(f"{index_path} is not a graph index ({{'graphs': [...]}})") from None
    graphs = [g for g in graphs if g.get("slug") != metadata["slug"]] + [metadata]
    write_atomic(index_path, json.dumps({"graphs": graphs}, indent=1).encode())
    return path
