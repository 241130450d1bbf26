"""Hub loading through local directories in the hub cache's exact layout (offline, set here).

A cache holds models--org--name/{blobs/<sha256>, refs/main, snapshots/<commit>/<file> -> blob};
these tests build one from the toy model's transcoders, so nothing is downloaded.
"""

import hashlib
import os
import shutil
from pathlib import Path

import pytest
import torch

from circuitflow.attribution import load_transcoders
from circuitflow.attribution.hub import HubError, cached_snapshot, snapshot_identity
from circuitflow.attribution.transcoders import TranscoderError
from circuitflow.tasks.runtime import model_identity, transcoders_identity


def hub_repo(cache: Path, repo_id: str, commit: str, files: dict[str, Path]) -> Path:
    """Write `files` ({path in repo: source file}) as `repo_id` at `commit` in the cache."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    for name, source in files.items():
        data = source.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return snapshot


@pytest.fixture
def hub_cache(tmp_path, monkeypatch, toy_model_dir):
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    plt = toy_model_dir / "transcoders" / "plt"
    files = {f"plt/{p.name}": p for p in sorted(plt.iterdir())}
    hub_repo(cache, "someone/toy-transcoders", "a" * 40, files)
    model_transcoders_identity_cache_clear()
    return cache


def model_transcoders_identity_cache_clear():
    transcoders_identity.cache_clear()
    model_identity.cache_clear()


def test_a_hub_reference_loads_from_the_cache_offline(hub_cache, toy_model_dir):
    from_hub = load_transcoders("someone/toy-transcoders/plt")
    local = load_transcoders(toy_model_dir / "transcoders" / "plt")
    assert torch.equal(from_hub.W_enc, local.W_enc)
    assert from_hub.n_layers == local.n_layers


def test_identity_is_the_commit_and_blob_hashes(hub_cache, toy_model_dir):
    first = transcoders_identity("someone/toy-transcoders/plt")
    snapshot = snapshot_identity(
        hub_cache / "models--someone--toy-transcoders/snapshots" / ("a" * 40)
    )
    layer0 = toy_model_dir / "transcoders/plt/layer_0.safetensors"
    assert snapshot["commit"] == "a" * 40
    assert (
        snapshot["files"]["plt/layer_0.safetensors"]
        == hashlib.sha256(layer0.read_bytes()).hexdigest()
    )
    # a new commit that changes one file: a new identity
    changed = hub_cache.parent / "changed.safetensors"
    shutil.copy(toy_model_dir / "transcoders/plt/layer_1.safetensors", changed)
    plt = toy_model_dir / "transcoders" / "plt"
    files = {f"plt/{p.name}": p for p in sorted(plt.iterdir())} | {
        "plt/layer_0.safetensors": changed
    }
    repo = hub_cache / "models--someone--toy-transcoders"
    hub_repo(hub_cache, "someone/toy-transcoders", "b" * 40, files)
    assert (repo / "refs/main").read_text() == "b" * 40
    transcoders_identity.cache_clear()
    assert transcoders_identity("someone/toy-transcoders/plt") != first
    assert snapshot_identity(toy_model_dir) is None  # not in a hub cache


def test_nothing_cached_offline_says_how_to_fetch(hub_cache):
    with pytest.raises(HubError, match="HF_HUB_OFFLINE is set.*hf download someone/absent"):
        cached_snapshot("someone/absent")
    with pytest.raises(TranscoderError, match="hf download"):
        load_transcoders("someone/absent/plt")


def test_a_hub_model_is_identified_by_its_revision_without_loading(hub_cache, tmp_path):
    config = tmp_path / "config.json"
    config.write_text('{"model_type": "gpt2"}')
    # TransformerLens's "gpt2" is the hub repository gpt2; the cache holds no weights at
    # all, so an identity that loaded the model could not succeed
    hub_repo(hub_cache, "gpt2", "c" * 40, {"config.json": config})
    first = model_identity("gpt2")
    hub_repo(hub_cache, "gpt2", "d" * 40, {"config.json": config})
    model_identity.cache_clear()
    assert model_identity("gpt2") != first
    with pytest.raises(ValueError, match="nor a TransformerLens model name"):
        model_identity("no-such-model-xyz")
