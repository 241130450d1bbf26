"""What the model hub's local cache already knows about a download: its revision and file hashes.

A hub snapshot lives at `<HF_HUB_CACHE>/models--org--name/snapshots/<commit>/<file>`, each file
a link to `../../blobs/<name>`, where a large (LFS) file's blob name is its SHA-256 and a small
file's is its git hash. So a snapshot names its contents without anyone reading gigabytes:
`snapshot_identity` collects the commit and the blob names, and two snapshots with the same
identity hold the same bytes. `cached_snapshot` finds (or, online, downloads) a snapshot.
"""

from __future__ import annotations

import os
from pathlib import Path


class HubError(ValueError):
    """A hub repository that is neither in the local cache nor reachable, with what to do."""


def cached_snapshot(
    repo_id: str, revision: str | None = None, patterns: list[str] | None = None
) -> Path:
    """The local snapshot directory of `repo_id` at `revision` holding `patterns`.

    Online, missing files are downloaded (with huggingface_hub's progress bars). Offline
    (HF_HUB_OFFLINE=1), only what the cache holds resolves; nothing cached is a `HubError` that
    says how to fetch it.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache_dir = os.environ.get("HF_HUB_CACHE")  # read now: huggingface_hub reads it at import
    try:
        return Path(
            snapshot_download(
                repo_id, revision=revision, allow_patterns=patterns, cache_dir=cache_dir
            )
        )
    except LocalEntryNotFoundError:
        if _offline():
            raise HubError(
                f"{repo_id!r} is not in the local hub cache and HF_HUB_OFFLINE is set: fetch it "
                f"once online (`hf download {repo_id}`, or unset HF_HUB_OFFLINE)"
            ) from None
        raise HubError(
            f"{repo_id!r} could not be reached on the model hub and is not cached: check the "
            "name and the network, or pass a local directory"
        ) from None
    except Exception as error:  # missing repos, gated repos, network errors
        raise HubError(f"could not fetch {repo_id!r} from the model hub: {error}") from None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def snapshot_identity(directory: str | os.PathLike) -> dict | None:
    """{"commit": ..., "files": {relative path: blob name}} of a hub-cache snapshot directory
    (or a folder inside one), or None when `directory` is not in a hub cache."""
    directory = Path(directory).absolute()
    for snapshot in (directory, *directory.parents):
        if snapshot.parent.name == "snapshots" and (snapshot.parent.parent / "blobs").is_dir():
            break
    else:
        return None
    files = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file() or p.is_symlink()):
        target = Path(os.readlink(path)) if path.is_symlink() else None
        # A file the cache copied instead of linking (no symlinks on the platform): its name is
        # all there is to go on, so such a snapshot is not identified by the cache.
        if target is None or target.parent.name != "blobs":
            return None
        files[str(path.relative_to(snapshot))] = target.name
    return {"repo": snapshot.parent.parent.name, "commit": snapshot.name, "files": files}


def model_revision(name: str) -> dict:
    """{"repo", "commit"} of a TransformerLens model name, from the hub (or its cache) without
    loading the model: only config.json is fetched. A commit names every file's bytes."""
    from transformer_lens.loading_from_pretrained import get_official_model_name

    try:
        repo = get_official_model_name(name)
    except ValueError:
        raise HubError(
            f"{name!r} is neither a local model directory nor a TransformerLens model name"
        ) from None
    snapshot = cached_snapshot(repo, patterns=["config.json"])
    return {"repo": repo, "commit": snapshot.name}
