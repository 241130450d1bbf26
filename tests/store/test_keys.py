"""Keys are stable across processes and change with every input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from circuitflow.store.keys import (
    DigestCache,
    canonical_json,
    model_digest,
    prompt_digest,
    stage_key,
    transcoder_digest,
)
from tests.store.procs import run_python

PARAMS = {"node_threshold": 0.8, "edge_threshold": 0.98, "targets": {"mode": "salient", "k": 10}}
INPUTS = {"precompute": "a" * 64, "model": "b" * 64}

KEY_IN_CHILD = """
import json, sys
from circuitflow.store.keys import stage_key, prompt_digest
params = json.loads(sys.argv[1])
inputs = json.loads(sys.argv[2])
print(stage_key("prune", 3, params, inputs))
print(prompt_digest([3, 17, 42, 9]))
"""


def test_same_key_in_two_separate_processes() -> None:
    here = stage_key("prune", 3, PARAMS, INPUTS)
    # Children get other hash seeds and other dict insertion orders.
    reordered = dict(reversed(list(PARAMS.items())))
    outputs = {
        tuple(
            run_python(KEY_IN_CHILD, json.dumps(p), json.dumps(INPUTS), PYTHONHASHSEED=seed).split()
        )
        for p, seed in ((PARAMS, "1"), (reordered, "2"))
    }
    assert outputs == {(here, prompt_digest([3, 17, 42, 9]))}


@pytest.mark.parametrize(
    "change",
    [
        {"stage": "influence"},
        {"version": 4},
        {"params": {**PARAMS, "node_threshold": 0.81}},
        {"params": {**PARAMS, "targets": {"mode": "salient", "k": 11}}},
        {"params": {**PARAMS, "extra": None}},
        {"inputs": {**INPUTS, "precompute": "c" * 64}},
        {"inputs": {"precompute": INPUTS["model"], "model": INPUTS["precompute"]}},
    ],
)
def test_key_changes_with_any_input(change: dict) -> None:
    base = {"stage": "prune", "version": 3, "params": PARAMS, "inputs": INPUTS}
    assert stage_key(**base) != stage_key(**{**base, **change})


def test_canonical_json_normalizes_equivalent_values() -> None:
    assert canonical_json({"b": 1, "a": (1.0, np.float32(0.5))}) == '{"a":[1,0.5],"b":1}'
    assert stage_key("s", 1, {"t": 1}) == stage_key("s", 1, {"t": 1.0})
    assert canonical_json({"p": Path("/x/y"), "s": {3, 1}}) == '{"p":"/x/y","s":[1,3]}'
    with pytest.raises(TypeError, match="non-finite"):
        canonical_json({"x": float("nan")})
    with pytest.raises(TypeError, match="prompt_digest"):
        canonical_json({"x": np.zeros(3)})
    with pytest.raises(TypeError, match="strings"):
        canonical_json({1: "a"})


def test_prompt_digest_accepts_lists_arrays_and_tensors() -> None:
    ids = [3, 17, 42]
    assert prompt_digest(ids) == prompt_digest(np.array(ids)) == prompt_digest(torch.tensor(ids))
    assert prompt_digest(ids) != prompt_digest([3, 17, 43])
    assert prompt_digest(ids) != prompt_digest([17, 3, 42])


def test_model_digest_covers_weights_config_and_dtype() -> None:
    state = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(3)}
    config = {"n_layers": 4, "d_model": 128}
    base = model_digest(config, state)
    assert base == model_digest(config, {k: v.numpy() for k, v in state.items()})
    assert base != model_digest({**config, "d_model": 129}, state)
    changed = {**state, "b": state["b"].clone()}
    changed["b"][0] = 1.0000001
    assert base != model_digest(config, changed)
    assert base != model_digest(config, {**state, "w": state["w"].reshape(3, 2)})
    assert base != model_digest(config, {k: v.to(torch.bfloat16) for k, v in state.items()})


def test_transcoder_digest_is_cached_by_path_size_and_mtime(tmp_path: Path) -> None:
    tc = tmp_path / "tc"
    tc.mkdir()
    for i in range(3):
        (tc / f"layer_{i}.safetensors").write_bytes(os.urandom(1000))
    (tc / "config.yaml").write_text("model_kind: transcoder_set\n")
    (tc / ".cache").mkdir()
    (tc / ".cache" / "junk").write_text("ignored")
    cache_file = tmp_path / "digests.json"

    first = DigestCache(cache_file)
    digest = transcoder_digest(tc, cache=first)
    assert first.hashed == 4

    again = DigestCache(cache_file)  # a new process would start like this
    assert transcoder_digest(tc, cache=again) == digest
    assert again.hashed == 0

    target = tc / "layer_1.safetensors"
    target.write_bytes(os.urandom(1000))
    os.utime(target, ns=(1, 1))  # a different mtime even on coarse clocks
    changed = DigestCache(cache_file)
    assert transcoder_digest(tc, cache=changed) != digest
    assert changed.hashed == 1


def test_model_digest_from_weight_files(tmp_path: Path) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"weights")
    cache = DigestCache(tmp_path / "d.json")
    a = model_digest({"n": 1}, weights, cache=cache)
    weights.write_bytes(b"weight2")
    os.utime(weights, ns=(2, 2))
    assert model_digest({"n": 1}, weights, cache=cache) != a


HASH_IN_CHILD = """
import sys
from circuitflow.store.keys import DigestCache
cache = DigestCache(sys.argv[1], progress_from=int(sys.argv[2]))
for path in sys.argv[3:]:
    print(cache.digest(path))
"""


@pytest.mark.slow  # two child interpreters
def test_hashing_a_large_file_shows_progress_on_stderr(tmp_path: Path) -> None:
    import hashlib
    import subprocess
    import sys

    from tests.store.procs import REPO, child_env

    big, small = tmp_path / "big.safetensors", tmp_path / "small.safetensors"
    big.write_bytes(os.urandom(300_000))
    small.write_bytes(os.urandom(1000))

    def hash_in_child(*paths: Path) -> subprocess.CompletedProcess[str]:
        args = [str(tmp_path / "d.json"), "100000", *map(str, paths)]
        return subprocess.run(
            [sys.executable, "-c", HASH_IN_CHILD, *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=child_env(TQDM_DISABLE=""),  # the test session silences bars; a user's does not
            cwd=REPO,
        )

    done = hash_in_child(small, big)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        hashlib.sha256(small.read_bytes()).hexdigest(),
        hashlib.sha256(big.read_bytes()).hexdigest(),
    ]
    assert "hashing big.safetensors" in done.stderr and "100%" in done.stderr
    assert "small.safetensors" not in done.stderr  # below the threshold: no bar
    again = hash_in_child(big)  # remembered: nothing is read, no bar
    assert again.returncode == 0 and again.stderr == ""
