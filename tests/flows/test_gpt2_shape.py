"""A GPT-2-architecture model end to end through the `circuitflow attribute` command line.

The model is written in the model-directory layout (config.json, model.safetensors, tokenizer/)
and its TopK transcoders as circuit-tracer's `layer_{i}.safetensors` files. The graph the
command stores must equal the Python API's, and circuit-tracer's reading the same files; and
the command must show its progress on stderr while keeping stdout for the JSON report.
`benchmarks/gpt2_small_cli.py` does the same at GPT-2-small's real size.
"""

import json
import os
import subprocess
import sys

import pytest
import torch

from circuitflow.attribution import (
    Activation,
    ReplacementModel,
    attribute,
    load_model,
    load_transcoders,
    prune,
    save_model,
)
from circuitflow.attribution.toy import random_model, random_transcoders
from circuitflow.tasks.recorded import recorded_graph
from tests.attribution.reference import assert_same_graph, reference_attribute, reference_model

pytestmark = pytest.mark.slow  # a subprocess

PROMPT = "w3 w10 w17 w24 w31 w38"
# GPT-2's architecture (LayerNorm, learned positions, GELU), small; a vocabulary large enough
# that the word tokenizer and unembedding are not toy-sized.
SHAPE = dict(n_layers=3, d_model=48, d_head=12, n_heads=4, d_mlp=96, d_vocab=2000, n_ctx=128)


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("gpt2-shape")
    model = random_model("gpt2", **SHAPE)
    save_model(model, directory)
    random_transcoders(
        model, d_transcoder=64, activation=Activation("topk", 6), directory=directory / "tc"
    )
    return directory


def test_cli_graph_equals_python_api_and_circuit_tracer(prefect_api, gpt2_dir, tmp_path):
    store = tmp_path / "store"
    command = [sys.executable, "-m", "circuitflow.flows.cli", "attribute", PROMPT, "--json"]
    command += ["--model", str(gpt2_dir), "--transcoders", str(gpt2_dir / "tc")]
    command += ["--device", "cpu", "--dtype", "float32", "--batch-size", "16"]
    command += ["--store", str(store)]
    env = os.environ | {"PREFECT_API_URL": prefect_api}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]

    report = json.loads(done.stdout)  # stdout holds the report alone
    lines = done.stderr.splitlines()
    for stage in ("tokenize", "precompute", "rows", "prune"):
        assert f"{stage}: computing" in lines
        assert any(line.startswith(f"{stage}: computed in ") for line in lines), stage
    # stderr is a pipe, not a terminal: the backward passes show as plain lines, ending full.
    steps = [line for line in lines if line.endswith(" edge-matrix rows")]
    assert len(steps) >= 2, lines
    done_rows, total_rows = steps[-1].removeprefix("rows: ").split()[0].split("/")
    assert done_rows == total_rows
    assert lines.index(steps[0]) > lines.index("rows: computing")

    cli, cli_kept = recorded_graph(str(store), report["run_id"])
    assert int(total_rows) == cli.n_logits + len(cli.selected_features)

    model = load_model(gpt2_dir)
    transcoders = load_transcoders(gpt2_dir / "tc")
    api = attribute(PROMPT, ReplacementModel(model, transcoders), batch_size=16)
    assert torch.equal(cli.tokens, api.tokens)
    assert torch.equal(cli.active_features, api.active_features)
    assert torch.equal(cli.selected_features, api.selected_features)
    assert torch.equal(cli.logit_token_ids, api.logit_token_ids)
    assert (cli.adjacency - api.adjacency).abs().max() <= 1e-6 * api.adjacency.abs().max()
    api_kept = prune(api)
    assert torch.equal(cli_kept.node_mask, api_kept.node_mask)
    assert torch.equal(cli_kept.edge_mask, api_kept.edge_mask)

    ref = reference_attribute(PROMPT, reference_model(model, transcoders), batch_size=16)
    assert torch.equal(cli.tokens, ref.input_tokens.to(cli.tokens.dtype))
    assert torch.equal(cli.active_features, ref.active_features)
    assert_same_graph(cli, ref)  # adjacency, pruned node and edge masks, scores
