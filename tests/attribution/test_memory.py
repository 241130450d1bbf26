"""The memory estimate against measured peaks, the --max-memory refusal, and sizes."""

import json
import subprocess
import sys

import pytest
import torch

from circuitflow.attribution import ReplacementModel, attribute
from circuitflow.attribution.memory import (
    MemoryLimitError,
    RunShape,
    estimate,
    format_bytes,
    parse_size,
)
from circuitflow.attribution.params import RunParams

# One attribution in a fresh process: the kernel's RSS high-water mark is reset after loading
# (/proc/self/clear_refs), so the figure is the attribution's own peak on top of the weights.
MEASURE = """
import json, sys, torch
from pathlib import Path
from circuitflow.attribution import Activation, ReplacementModel, attribute
from circuitflow.attribution.memory import estimate, run_shape
from circuitflow.attribution.toy import random_model, random_transcoders

spec = json.loads(sys.argv[1])
torch.manual_seed(0)
model = random_model("gpt2", **spec["model"])
tc = random_transcoders(model, d_transcoder=spec["F"], activation=Activation("topk", spec["k"]),
                        directory=sys.argv[2])
replacement = ReplacementModel(model, tc)
tokens = [model.tokenizer.bos_token_id] + [5 + i % 40 for i in range(spec["n_pos"] - 1)]

def status(field):
    lines = Path("/proc/self/status").read_text().splitlines()
    line = next(l for l in lines if l.startswith(field))
    return int(line.split()[1]) * 1024

Path("/proc/self/clear_refs").write_text("5")
before = status("VmRSS")
graph = attribute(tokens, replacement, max_feature_nodes=spec["budget"], batch_size=spec["batch"])
measured = status("VmHWM") - before
shape = run_shape(replacement, spec["n_pos"], len(graph.active_features),
                  n_logits=len(graph.logit_token_ids), max_feature_nodes=spec["budget"],
                  batch_size=spec["batch"])
predicted = estimate(shape)
fixed = ("runtime (python, torch)", "model weights", "transcoder encoders", "transcoder decoders")
print(json.dumps({"measured": measured, "estimated": predicted.total - sum(
    predicted.terms[t] for t in fixed), "dominant": predicted.dominant_in_run}))
"""

SHAPES = {
    # long prompt, large batches (full ones: the budget is two of them): the forward pass's
    # activations and the backward passes' gradients dominate
    "activations for the backward passes": dict(
        model=dict(n_layers=4, d_model=256, d_head=32, n_heads=8, d_mlp=512, d_vocab=64, n_ctx=256),
        F=1024,
        k=16,
        n_pos=256,
        budget=256,
        batch=128,
    ),
    # many active features, a budget that cuts: the edge matrix (rows x columns) and the copies
    # of it that ranking the features by estimated influence makes dominate
    "feature ranking": dict(
        model=dict(n_layers=2, d_model=32, d_head=8, n_heads=4, d_mlp=64, d_vocab=64, n_ctx=64),
        F=4096,
        k=256,
        n_pos=64,
        budget=3000,
        batch=128,
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SHAPES))
def test_estimate_is_within_a_factor_of_two_of_the_measured_peak(name, tmp_path):
    spec = SHAPES[name]
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, json.dumps(spec), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["dominant"] == name
    ratio = result["estimated"] / result["measured"]
    assert result["measured"] > 200 * 2**20  # large enough that the ratio means something
    assert 0.5 <= ratio <= 2, (format_bytes(result["estimated"]), format_bytes(result["measured"]))


def test_a_run_over_max_memory_is_refused_with_what_dominates(builtin):
    replacement: ReplacementModel = builtin()
    prompt = "The capital of the state containing Dallas is"
    with pytest.raises(MemoryLimitError) as refused:
        attribute(prompt, replacement, max_memory="1MB")
    message = str(refused.value)
    assert "\n" not in message and "> --max-memory 1.0 MB" in message
    assert "dominates" in message and "try " in message
    # the same run under a generous limit goes through
    graph = attribute(prompt, replacement, max_memory="64GB")
    assert graph.adjacency.shape[0] > 0


def test_the_estimate_grows_as_its_terms_say():
    base = dict(n_layers=12, d_model=768, d_transcoder=6144, model_params=10**8)
    base |= dict(max_feature_nodes=7500)
    short = estimate(RunShape(n_pos=16, n_active=16 * 12 * 32, **base))
    long = estimate(RunShape(n_pos=256, n_active=256 * 12 * 32, **base))
    # the activations hold heads x P^2 attention values per layer (and per gradient, in one
    # layer of a backward pass): 16 x the positions, so more than 16 x the memory
    activations = "activations for the backward passes"
    assert long.phases["rows"][activations] > 20 * short.phases["rows"][activations]
    small_batch = estimate(RunShape(n_pos=256, n_active=256 * 12 * 32, batch_size=8, **base))
    assert small_batch.total < long.total
    # 'lazy_encoder' holds one layer's encoder instead of all twelve
    lazy = estimate(RunShape(n_pos=16, n_active=100, lazy_encoder=True, **base))
    assert lazy.terms["transcoder encoders"] * 12 == short.terms["transcoder encoders"]


def test_sizes_parse_and_bad_ones_are_refused():
    assert parse_size("8GB") == 8 * 2**30
    assert parse_size("512m") == 512 * 2**20
    assert parse_size("1.5G") == int(1.5 * 2**30)
    assert parse_size("2GiB") == 2 * 2**30
    for bad in ("lots", "-1GB", "0"):
        with pytest.raises(ValueError, match="memory size"):
            parse_size(bad)


def test_the_default_budget_is_the_reference_clis_and_all_lifts_it(builtin):
    assert RunParams().max_feature_nodes == 7500
    # the built-in model has fewer active features: the default changes nothing it computes
    replacement = builtin()
    prompt = "The capital of the state containing Dallas is"
    default, every = (
        attribute(prompt, replacement),
        attribute(prompt, replacement, max_feature_nodes="all"),
    )
    assert len(default.active_features) < 7500
    assert torch.equal(default.selected_features, torch.arange(len(default.active_features)))
    assert torch.equal(default.adjacency, every.adjacency)
    assert RunParams(max_feature_nodes="all").max_feature_nodes is None
    assert RunParams.from_dict({"max_feature_nodes": "all"}) == RunParams(max_feature_nodes=None)
