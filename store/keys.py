"""Content keys: the identity of every stored object, and of the inputs they derive from.

A stage key is the SHA-256 of a canonical JSON document holding the stage name, the stage version,
the parameters and the keys of the inputs. Canonical means: keys sorted, no whitespace, UTF-8,
floats in Python's shortest round-trip form (integral floats written as integers, so ``1`` and
``1.0`` give one key), tuples as lists. The same inputs therefore give the same key in every
process, on every machine and in every Python version we support.

Identities of the things a stage starts from:

- model: the config plus every weight tensor (name, dtype, shape, little-endian bytes), or the
  weight files' digests;
- transcoder set: the digests of its files, each computed once and then cached by
  path + size + mtime (`DigestCache`), because real sets are tens of GB;
- prompt: the token ids.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from circuitflow.store.fs import default_cache_dir, hash_file
from circuitflow.store.tensors import to_storage

KEY_LENGTH = 64
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_KEY = re.compile(r"^[0-9a-f]{16,128}$")


def check_name(kind: str, name: str) -> str:
    """A stage, table, tensor or run name: safe as one path component, or ValueError."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"invalid {kind} {name!r}: use 1-128 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit"
        )
    return name


def check_key(key: str) -> str:
    if not isinstance(key, str) or not _KEY.match(key):
        raise ValueError(f"invalid key {key!r}: expected lowercase hex (a stage_key digest)")
    return key


def normalize(value: Any) -> Any:
    """Reduce a parameter value to plain JSON types in a deterministic form.

    Raises TypeError for values that have no stable JSON form (arrays, tensors, arbitrary
    objects): put those through `prompt_digest`/`model_digest` and pass the digest instead.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, enum.Enum):
        return normalize(value.value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        f = float(value)
        if not math.isfinite(f):
            raise TypeError(f"non-finite float {f!r} has no canonical JSON form")
        # 1 and 1.0 mean the same threshold; one key for both avoids needless recomputation.
        return int(f) if f.is_integer() and abs(f) < 2**53 else f
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, PurePath):
        return value.as_posix()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return normalize(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"mapping keys must be strings, got {k!r} ({type(k).__name__})")
            out[k] = normalize(v)
        return out
    if isinstance(value, set | frozenset):
        items = [normalize(v) for v in value]
        return sorted(items, key=canonical_json)
    if isinstance(value, list | tuple):
        return [normalize(v) for v in value]
    if type(value).__module__ == "torch" and type(value).__name__ == "dtype":
        return str(value)
    raise TypeError(
        f"cannot build a key from a value of type {type(value).__name__}; "
        "pass plain JSON values (digest arrays with prompt_digest/model_digest first)"
    )


def canonical_json(value: Any) -> str:
    """The canonical JSON text of a value (see the module docstring)."""
    return json.dumps(
        normalize(value),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )


def sha256_hex(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def stage_key(
    stage: str,
    version: int | str,
    params: Mapping[str, Any] | None = None,
    inputs: Mapping[str, str] | None = None,
) -> str:
    """The key of a stage's output: SHA-256 over stage, version, parameters and input keys.

    `inputs` maps an input's role (e.g. ``"model"``, ``"precompute"``) to its key, so that two
    inputs swapping roles give a different key.
    """
    for role, key in (inputs or {}).items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"input {role!r} must be a key string, got {key!r}")
    doc = {
        "stage": stage,
        "version": version,
        "params": params or {},
        "inputs": inputs or {},
    }
    return sha256_hex(canonical_json(doc))


def prompt_digest(token_ids: Iterable[int] | Any) -> str:
    """Identity of a prompt: its token ids (a list, numpy array or torch tensor)."""
    if hasattr(token_ids, "tolist"):
        token_ids = token_ids.tolist()
    ids = [int(t) for t in token_ids]
    return sha256_hex(canonical_json({"kind": "prompt", "token_ids": ids}))


def _is_pathlike(value: Any) -> bool:
    return isinstance(value, str | os.PathLike)


def model_digest(
    config: Mapping[str, Any] | Any,
    weights: Mapping[str, Any] | str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    cache: DigestCache | None = None,
) -> str:
    """Identity of a model: its config and its weights.

    `weights` is either a mapping of parameter name to tensor (numpy or torch; a state dict) or
    the path(s) of weight files, whose digests are cached like transcoder files. `config` is a
    mapping or dataclass of plain values; leave out what does not change the outputs (device).
    """
    digest = hashlib.sha256()
    digest.update(b"circuitflow-model\0")
    digest.update(canonical_json(config).encode())
    if isinstance(weights, Mapping):
        for name in sorted(weights):
            array, logical = to_storage(weights[name])
            header = {"name": name, "dtype": logical, "shape": list(array.shape)}
            digest.update(b"\0" + canonical_json(header).encode() + b"\0")
            digest.update(memoryview(np.ascontiguousarray(array)).cast("B"))
    else:
        paths = [weights] if _is_pathlike(weights) else list(weights)
        files = {Path(p).name: (cache or DigestCache()).digest(p) for p in paths}
        digest.update(b"\0" + canonical_json({"files": files}).encode())
    return digest.hexdigest()


def transcoder_digest(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    cache: DigestCache | None = None,
) -> str:
    """Identity of a transcoder set: the digests of its files.

    `source` is the set's directory (every file below it, hidden ones excluded, keyed by relative
    path) or a list of files (keyed by file name). File digests come from `cache`, so a 20 GB
    set is read once per change, not once per run.
    """
    cache = cache or DigestCache()
    if _is_pathlike(source) and Path(source).is_dir():
        base = Path(source)
        files = {
            p.relative_to(base).as_posix(): cache.digest(p)
            for p in sorted(base.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(base).parts)
        }
    else:
        paths = [source] if _is_pathlike(source) else list(source)
        files = {Path(p).name: cache.digest(p) for p in paths}
    if not files:
        raise ValueError(f"no transcoder files found in {source}")
    return sha256_hex(canonical_json({"kind": "transcoders", "files": files}))


class DigestCache:
    """File digests remembered by (real path, size, mtime): a file is hashed once per change.

    Kept as one JSON file (default: `default_cache_dir()/file-digests.json`) replaced atomically;
    concurrent processes may each drop the other's newest entries, which only costs a re-hash.
    """

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, progress_from: int = 100 << 20
    ) -> None:
        self.path = Path(path) if path is not None else default_cache_dir() / "file-digests.json"
        self.progress_from = progress_from  # files this large show a hashing bar on stderr
        self._entries: dict[str, list[Any]] | None = None
        self.hashed = 0  # files actually read by this instance; tests and logs use it

    def _load(self) -> dict[str, list[Any]]:
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def digest(self, file: str | os.PathLike[str]) -> str:
        real = os.path.realpath(file)
        st = os.stat(real)
        if self._entries is None:
            self._entries = self._load()
        entry = self._entries.get(real)
        if entry and entry[0] == st.st_size and entry[1] == st.st_mtime_ns:
            return str(entry[2])
        value, _ = hash_file(real, progress_from=self.progress_from)
        self.hashed += 1
        self._entries[real] = [st.st_size, st.st_mtime_ns, value]
        self._save(real)
        return value

    def _save(self, updated: str) -> None:
        assert self._entries is not None
        merged = {**self._load(), updated: self._entries[updated]}
        self._entries = {**merged, **self._entries}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self._entries))
            os.replace(tmp, self.path)
        except OSError:
            pass  # a read-only cache only costs re-hashing next time
