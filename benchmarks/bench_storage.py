"""Storage at GPT-2-small size: what publishing a run costs next to computing it, how many
bytes it writes, and what a lower edge precision changes in the pruned graph.

    python benchmarks/bench_storage.py --dir /tmp/gpt2-small [--words 15]

The model is GPT-2-small-shaped (12 x 768, vocab 50257) with random weights and TopK(32) x 6144
per-layer transcoders, written once to --dir in the model-directory layout. One prompt runs
through every stage on the CPU; each stage's compute and publish (encode, hash, write, atomic
rename) are timed apart, with the same code the pipeline runs (`tasks.execute`). Then the edge
matrix is stored at bfloat16 and float16 (what `--edge-precision` does: the float32 rows, rounded)
and influence and pruning rerun on the rounded weights.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from circuitflow.attribution import RunParams
from circuitflow.flows.settings import configure


def write_gpt2_small(directory: Path) -> None:
    """The GPT-2-small benchmark shape as a model directory (plt preset included)."""
    from circuitflow.attribution import Activation, save_model
    from circuitflow.attribution.toy import random_model, random_transcoders

    shape = dict(n_layers=12, d_model=768, d_head=64, n_heads=12, d_mlp=3072, d_vocab=50257)
    model = random_model("gpt2", n_ctx=1024, **shape)
    save_model(model, directory)
    random_transcoders(
        model,
        d_transcoder=6144,
        activation=Activation("topk", 32),
        directory=directory / "transcoders" / "plt",
    )


def run_stages(setup, request, precision: str | None = None) -> tuple[dict, object]:
    """Every stage of one run, compute and publish timed apart: {stage: (s, s, bytes)}."""
    from circuitflow.tasks import PIPELINE, RunContext
    from circuitflow.tasks.context import StageOutput
    from circuitflow.tasks.execute import publish_record, stage_key_of

    run = RunContext(setup, request, {}, PIPELINE)
    figures = {}
    for stage in PIPELINE:
        key, params, inputs = stage_key_of(stage, run)
        stored = run.store.get(stage.name, key)
        if stored is None:
            start = time.perf_counter()
            record = stage.compute(run)
            computed = time.perf_counter()
            meta = publish_record(stage, run, record, key, params, inputs)
            published = time.perf_counter()
            stored = run.store.get(stage.name, key)
            size = sum(f["size"] for f in stored.files.values())
            figures[stage.name] = (computed - start, published - computed, size)
        else:
            meta = stored.attrs["record"]
        identity = meta[stage.identity] if stage.identity else key
        run.outputs[stage.name] = StageOutput(stage.name, key, "computed", 0.0, identity)
    return figures, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", required=True, help="model directory (written if missing)")
    parser.add_argument("--words", type=int, default=15, help="prompt words (+1 start token)")
    args = parser.parse_args()
    configure()
    torch.set_num_threads(2)
    directory = Path(args.dir)
    if not (directory / "model.safetensors").exists():
        write_gpt2_small(directory)
    from circuitflow.tasks import RunRequest, Setup

    store = tempfile.mkdtemp(prefix="bench-storage-")
    setup = Setup.resolve(str(directory), "plt", store)
    prompt = " ".join(f"w{(i * 7 + 3) % 40}" for i in range(args.words))

    figures, base = run_stages(setup, RunRequest(prompt))
    compute = sum(c for c, _, _ in figures.values())
    publish = sum(p for _, p, _ in figures.values())
    size = sum(b for _, _, b in figures.values())
    graph = base.graph
    print(
        f"{graph.n_pos} tokens, {len(graph.active_features)} active features, N = {graph.n_nodes}"
    )
    for name, (c, p, b) in figures.items():
        print(f"  {name:10s} compute {c:7.2f} s  publish {p:5.2f} s  {b / 2**20:8.1f} MB")
    print(
        f"run: compute {compute:.1f} s, publish {publish:.2f} s ({publish / compute:.1%} of "
        f"compute), {size / 2**20:.1f} MB stored"
    )

    reference = summary(base)
    for precision in ("bfloat16", "float16"):
        figures, run = run_stages(setup, RunRequest(prompt, RunParams(edge_precision=precision)))
        rows = figures["rows"]
        other = summary(run)
        same_nodes = jaccard(reference["nodes"], other["nodes"])
        same_edges = jaccard(reference["edges"], other["edges"])
        print(
            f"{precision}: rows {rows[2] / 2**20:.1f} MB (publish {rows[1]:.2f} s); kept nodes "
            f"{len(other['nodes'])} vs {len(reference['nodes'])} (Jaccard {same_nodes:.4f}), "
            f"kept edges {len(other['edges'])} vs {len(reference['edges'])} (Jaccard "
            f"{same_edges:.4f}); replacement {other['replacement']:.5f} vs "
            f"{reference['replacement']:.5f}, completeness {other['completeness']:.5f} vs "
            f"{reference['completeness']:.5f}"
        )


def jaccard(a: set, b: set) -> float:
    return len(a & b) / max(len(a | b), 1)


def summary(run) -> dict:
    """Kept nodes and edges (as index pairs) and the two scores of a run's pruned graph."""
    pruned, influence = run.record("prune"), run.record("influence")
    return {
        "nodes": set(torch.nonzero(pruned.node_mask).flatten().tolist()),
        "edges": set(map(tuple, pruned.kept_edges.tolist())),
        "replacement": influence.replacement_score,
        "completeness": influence.completeness_score,
    }


if __name__ == "__main__":
    main()
