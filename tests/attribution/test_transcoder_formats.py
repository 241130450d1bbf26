"""Listed transcoder sets (Gemma Scope .npz, Gemma Scope 2 per-layer and cross-layer, TopK, hub
files) against circuit-tracer's own loaders reading the very same files.

Each test writes one small random set in a published layout, loads it with our loader and with
circuit-tracer's, and requires the same attribution graph on a tiny model (`assert_same_graph`:
adjacency within 1e-4 of its largest entry, same pruning): a transposed encoder, a dropped
threshold or a skip applied the wrong way round would each change it.
"""

import hashlib

import numpy as np
import pytest
import torch
import yaml
from circuit_tracer.transcoder.activation_functions import TopK
from circuit_tracer.transcoder.cross_layer_transcoder import load_gemma_scope_2_clt
from circuit_tracer.transcoder.single_layer_transcoder import load_transcoder_set
from circuit_tracer.utils.hf_utils import load_transcoders as circuit_tracer_load_transcoders
from safetensors.torch import save_file

from circuitflow.attribution import (
    ModelMismatchError,
    ReplacementModel,
    TranscoderError,
    attribute,
    load_transcoders,
)
from circuitflow.attribution.toy import random_model
from circuitflow.attribution.transcoder_formats import cached_file_identity
from circuitflow.tasks.runtime import transcoders_identity
from tests.attribution.reference import assert_same_graph, reference_attribute, reference_from
from tests.attribution.test_hub import hub_repo

PROMPT = "w1 w2 w3 w5 w8 w13"
L, D, F = 3, 16, 32  # layers, d_model, features


@pytest.fixture(scope="module")
def model():
    return random_model("gpt2", n_layers=L, d_model=D, d_head=4, n_heads=4, d_mlp=32)


def random_weights(seed: int = 0, cross_layer: bool = False) -> dict:
    """Our convention: W_enc (L, F, d), W_dec (L, F, d) or [(F, L, d)] (every output layer, as
    Gemma Scope 2 stores it), b_enc (L, F), b_dec (L, d), threshold (L, F), W_skip (L, d, d)."""
    g = torch.Generator().manual_seed(seed)
    shape_dec = (L, F, L, D) if cross_layer else (L, F, D)
    return {
        "W_enc": torch.randn(L, F, D, generator=g) / D**0.5,
        "W_dec": torch.randn(*shape_dec, generator=g) / F**0.5,
        "b_enc": -0.2 * torch.rand(L, F, generator=g),
        "b_dec": 0.1 * torch.randn(L, D, generator=g),
        "threshold": 0.2 * torch.rand(L, F, generator=g),
        "W_skip": 0.3 * torch.randn(L, D, D, generator=g) / D**0.5,
    }


def write_config(directory, files: list[str], hook: str, kind="transcoder_set", **extra):
    config = {
        "model_kind": kind,
        "feature_input_hook": hook,
        "feature_output_hook": "hook_mlp_out",
        "transcoders": files,
        **extra,
    }
    (directory / "config.yaml").write_text(yaml.safe_dump(config))


def write_gemma_scope(directory, w: dict) -> list:
    """Gemma Scope: layer_i/width_16k/params.npz, the encoder stored (d, F)."""
    paths = []
    for layer in range(L):
        path = directory / f"layer_{layer}" / "width_16k" / "params.npz"
        path.parent.mkdir(parents=True)
        np.savez(
            path,
            W_enc=w["W_enc"][layer].T.numpy(),
            W_dec=w["W_dec"][layer].numpy(),
            b_enc=w["b_enc"][layer].numpy(),
            b_dec=w["b_dec"][layer].numpy(),
            threshold=w["threshold"][layer].numpy(),
        )
        paths.append(path)
    return paths


def write_gemma_scope_2(directory, w: dict, skip: bool = True) -> list:
    """Gemma Scope 2: layer_i/params.safetensors with lowercase keys, encoder and skip stored
    transposed (the file's skip maps x to x @ affine_skip_connection)."""
    paths = []
    for layer in range(L):
        tensors = {
            "w_enc": w["W_enc"][layer].T.contiguous(),
            "w_dec": w["W_dec"][layer].contiguous(),
            "b_enc": w["b_enc"][layer],
            "b_dec": w["b_dec"][layer],
            "threshold": w["threshold"][layer],
        }
        if skip:
            tensors["affine_skip_connection"] = w["W_skip"][layer].T.contiguous()
        path = directory / f"layer_{layer}" / "params.safetensors"
        path.parent.mkdir(parents=True)
        save_file(tensors, path)
        paths.append(path)
    return paths


def relative(directory, paths) -> list[str]:
    return [p.relative_to(directory).as_posix() for p in paths]


def assert_parity(model, ours, ref_tc) -> None:
    mine = attribute(PROMPT, ReplacementModel(model, ours), batch_size=16)
    theirs = reference_attribute(PROMPT, reference_from(model, ref_tc), batch_size=16)
    assert len(mine.active_features) > 10  # the set does something on this prompt
    assert torch.equal(mine.active_features, theirs.active_features.long())
    torch.testing.assert_close(mine.activation_values, theirs.activation_values.float())
    assert_same_graph(mine, theirs)


def circuit_tracer_set(paths, special=None, hook="hook_resid_mid"):
    return load_transcoder_set(
        {i: str(p) for i, p in enumerate(paths)},
        scan="test",
        feature_input_hook=hook,
        feature_output_hook="hook_mlp_out",
        device=torch.device("cpu"),
        dtype=torch.float32,
        special_load_fn=special,
        lazy_encoder=False,
        lazy_decoder=False,
    )


# ------------------------------------------------------------------------------- parity


def circuit_tracer_from_config(directory, repo_id: str):
    """circuit-tracer's own reading of `directory`/config.yaml, as if fetched from `repo_id`
    (which picks its Gemma Scope loaders; it resolves local paths against the working
    directory, so these configs list absolute ones)."""
    config = yaml.safe_load((directory / "config.yaml").read_text())
    return circuit_tracer_load_transcoders(
        config | {"repo_id": repo_id, "scan": "test"},
        device=torch.device("cpu"),
        dtype=torch.float32,
        lazy_encoder=False,
        lazy_decoder=False,
    )


def test_gemma_scope_npz_matches_circuit_tracer(model, tmp_path):
    paths = write_gemma_scope(tmp_path, random_weights(1))
    write_config(tmp_path, [str(p) for p in paths], "ln2.hook_normalized")
    ours = load_transcoders(tmp_path)
    assert ours.activation.kind == "jumprelu" and not ours.has_skip
    ref = circuit_tracer_from_config(tmp_path, "mntss/gemma-scope-transcoders")
    assert_parity(model, ours, ref)
    # paths relative to the config's directory read the same files
    write_config(tmp_path, relative(tmp_path, paths), "ln2.hook_normalized")
    torch.testing.assert_close(load_transcoders(tmp_path).W_enc, ours.W_enc)


def test_gemma_scope_2_per_layer_matches_circuit_tracer(model, tmp_path):
    paths = write_gemma_scope_2(tmp_path, random_weights(2), skip=True)
    write_config(tmp_path, [str(p) for p in paths], "hook_resid_mid")
    ref = circuit_tracer_from_config(tmp_path, "mwhanna/gemma-scope-2-270m-pt")
    # decoder rows read lazily from the files, and (the default for a set this small) read in
    for lazy in (True, None):
        ours = load_transcoders(tmp_path, lazy_decoder=lazy)
        assert ours.lazy_decoder == bool(lazy)
        assert ours.has_skip and ours.activation.kind == "jumprelu"
        assert_parity(model, ours, ref)


def test_gemma_scope_2_cross_layer_matches_circuit_tracer(model, tmp_path):
    w = random_weights(3, cross_layer=True)
    paths = write_gemma_scope_2(tmp_path, w, skip=False)
    kind = "cross_layer_transcoder"
    write_config(tmp_path, relative(tmp_path, paths), "hook_resid_mid", kind=kind)
    ours = load_transcoders(tmp_path)  # held in memory: each file's w_dec is cut to layers i..
    assert ours.cross_layer and ours.decoder_rows(1, torch.tensor([0])).shape == (1, L - 1, D)
    ref = load_gemma_scope_2_clt(
        # circuit-tracer 0.5.0 reads layers range(max(key)): one key past the last makes it
        # read all L files (with keys 0..L-1 alone it drops the last layer and fails)
        {i: str(p) for i, p in enumerate(paths)} | {L: ""},
        feature_input_hook="hook_resid_mid",
        scan="test",
        device=torch.device("cpu"),
        dtype=torch.float32,
    )
    assert ref.n_layers == L
    assert_parity(model, ours, ref)


def test_topk_set_of_listed_files_matches_circuit_tracer(model, tmp_path):
    w = random_weights(4)
    w["b_enc"] = 0.5 + w["b_enc"]  # TopK keeps k pre-activations; here all k are positive
    paths = []
    for layer in range(L):
        path = tmp_path / "files" / f"tc_{layer}.safetensors"
        path.parent.mkdir(exist_ok=True)
        save_file({k: w[k][layer].contiguous() for k in ("W_enc", "W_dec", "b_enc", "b_dec")}, path)
        paths.append(path)
    write_config(tmp_path, [str(p) for p in paths], "ln2.hook_normalized", activation="topk", k=5)
    ours = load_transcoders(tmp_path)
    assert ours.activation.kind == "topk" and ours.activation.k == 5
    ref = circuit_tracer_set(paths, hook="ln2.hook_normalized")
    for layer_tc in ref:
        layer_tc.activation_function = TopK(5)
    assert_parity(model, ours, ref)


# ------------------------------------------------------------------------------- the hub


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    transcoders_identity.cache_clear()
    yield cache
    transcoders_identity.cache_clear()


def publish_gemma_scope(cache, tmp_path, w, commit: str) -> list[str]:
    """Gemma Scope's weights in one hub repo and, in another, a config listing them."""
    local = tmp_path / f"weights-{commit[:4]}"
    paths = write_gemma_scope(local, w)
    hub_repo(
        cache,
        "google/gemma-scope-2b-pt-transcoders",
        commit,
        dict(zip(relative(local, paths), paths, strict=True)),
    )
    return [f"hf://google/gemma-scope-2b-pt-transcoders/{p}" for p in relative(local, paths)]


def test_hub_files_listed_in_a_hub_config_load_offline(model, hub_cache, tmp_path):
    w = random_weights(5)
    uris = publish_gemma_scope(hub_cache, tmp_path, w, "a" * 40)
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    write_config(config_dir, uris, "ln2.hook_normalized")
    hub_repo(
        hub_cache,
        "mntss/gemma-scope-transcoders",
        "c" * 40,
        {"config.yaml": config_dir / "config.yaml"},
    )

    ours = load_transcoders("mntss/gemma-scope-transcoders")
    torch.testing.assert_close(ours.W_enc, w["W_enc"])
    torch.testing.assert_close(ours.threshold, w["threshold"])
    snapshot = hub_cache / "models--google--gemma-scope-2b-pt-transcoders/snapshots" / ("a" * 40)
    files = sorted(snapshot.rglob("params.npz"))
    assert_parity(model, ours, circuit_tracer_set(files, "gemma-scope", "ln2.hook_normalized"))

    # the identity names each file by the cache's blob (its SHA-256), not by reading it
    layer0 = snapshot / "layer_0/width_16k/params.npz"
    assert cached_file_identity(layer0) == {
        "repo": "models--google--gemma-scope-2b-pt-transcoders",
        "commit": "a" * 40,
        "file": "layer_0/width_16k/params.npz",
        "blob": hashlib.sha256(layer0.read_bytes()).hexdigest(),
    }
    first = transcoders_identity("mntss/gemma-scope-transcoders")
    transcoders_identity.cache_clear()
    assert transcoders_identity("mntss/gemma-scope-transcoders") == first
    # the weights repo moves on (main now names other bytes): a new identity
    w["b_dec"][2] += 1.0
    publish_gemma_scope(hub_cache, tmp_path, w, "b" * 40)
    transcoders_identity.cache_clear()
    assert transcoders_identity("mntss/gemma-scope-transcoders") != first


def test_a_listed_hub_file_missing_offline_says_how_to_fetch(hub_cache, tmp_path):
    uris = publish_gemma_scope(hub_cache, tmp_path, random_weights(6), "a" * 40)
    write_config(
        tmp_path, [*uris[:2], "hf://google/absent-repo/layer_2/params.npz"], "hook_resid_mid"
    )
    with pytest.raises(
        TranscoderError, match="HF_HUB_OFFLINE is set.*hf download google/absent-repo"
    ):
        load_transcoders(tmp_path)
    with pytest.raises(TranscoderError, match="hf download google/absent-repo"):
        transcoders_identity(str(tmp_path))
    missing = "hf://google/gemma-scope-2b-pt-transcoders/layer_9/params.npz"
    write_config(tmp_path, [*uris[:2], missing], "hook_resid_mid")
    with pytest.raises(
        TranscoderError,
        match="hf download google/gemma-scope-2b-pt-transcoders layer_9/params.npz",
    ):
        load_transcoders(tmp_path)


def test_a_local_listed_set_is_identified_by_its_files(tmp_path):
    paths = write_gemma_scope(tmp_path, random_weights(7))
    write_config(tmp_path, relative(tmp_path, paths), "hook_resid_mid")
    first = transcoders_identity(str(tmp_path))
    np.savez(paths[1], **(dict(np.load(paths[1])) | {"b_dec": np.ones(D, np.float32)}))
    transcoders_identity.cache_clear()
    assert transcoders_identity(str(tmp_path)) != first


# ------------------------------------------------------------------------------- bad sets


def test_wrong_layouts_give_one_clear_line(model, tmp_path):
    w = random_weights(8)
    paths = write_gemma_scope(tmp_path / "gs", w)
    write_config(tmp_path / "gs", relative(tmp_path / "gs", paths) + ["nowhere.npz"], "x")
    with pytest.raises(TranscoderError, match="lists 'nowhere.npz', which is not a file"):
        load_transcoders(tmp_path / "gs")

    np.savez(paths[0], **{k: v for k, v in np.load(paths[0]).items() if k != "threshold"})
    write_config(tmp_path / "gs", relative(tmp_path / "gs", paths), "x")
    with pytest.raises(TranscoderError, match="params.npz lacks the tensor.s. threshold"):
        load_transcoders(tmp_path / "gs")

    odd = tmp_path / "odd"
    odd.mkdir()
    save_file({"encoder.weight": torch.zeros(2, 2)}, odd / "a.safetensors")
    write_config(odd, ["a.safetensors"], "x")
    with pytest.raises(TranscoderError, match="not a transcoder file we read"):
        load_transcoders(odd)

    clt = tmp_path / "clt"
    bad = random_weights(9, cross_layer=True)
    bad["W_dec"] = bad["W_dec"][:, :, :2]  # two output layers for a three-layer set
    files = write_gemma_scope_2(clt, bad, skip=False)
    write_config(clt, relative(clt, files), "x", kind="cross_layer_transcoder")
    with pytest.raises(
        TranscoderError, match=r"w_dec has shape \[32, 2, 16\], expected \[32, 3, 16\]"
    ):
        load_transcoders(clt)

    narrow = tmp_path / "narrow"
    narrow_w = random_weights(10)
    narrow_w["b_dec"] = narrow_w["b_dec"][:, :8]
    write_config(narrow, relative(narrow, write_gemma_scope(narrow, narrow_w)), "x")
    with pytest.raises(TranscoderError, match=r"b_dec has shape \[8\], expected \[16\]"):
        load_transcoders(narrow)


def test_a_set_for_another_model_or_hook_is_refused(model, tmp_path):
    wide = random_model("gpt2", n_layers=L, d_model=24, d_head=4, n_heads=6, d_mlp=32)
    paths = write_gemma_scope_2(tmp_path / "a", random_weights(11))
    write_config(tmp_path / "a", relative(tmp_path / "a", paths), "hook_resid_mid")
    with pytest.raises(ModelMismatchError, match="d_model=16"):
        ReplacementModel(wide, load_transcoders(tmp_path / "a"))
    write_config(tmp_path / "a", relative(tmp_path / "a", paths), "hook_resid_middle")
    with pytest.raises(ModelMismatchError, match="no hook 'blocks.0.hook_resid_middle'"):
        ReplacementModel(model, load_transcoders(tmp_path / "a"))
