"""A GPT-2-small-shaped model end to end through the CLI, on the CPU: the same adjacency as the
Python API and as circuit-tracer in float32, and what bfloat16 changes.

    nice -n 10 .venv/bin/python benchmarks/gpt2_small_cli.py               # ~6 min on 2 cores
    nice -n 10 .venv/bin/python benchmarks/gpt2_small_cli.py --shape tiny  # seconds

1. Writes a GPT-2-small-shaped model (12 x 768, vocab 50257, LayerNorm, learned positions,
   random weights) in the model-directory layout, with TopK(32) x 6144 per-layer transcoders
   as circuit-tracer's `layer_{i}.safetensors` files.
2. `circuitflow attribute PROMPT --device cpu --dtype float32 --json` in a subprocess; its graph
   is read back from the store with `recorded_graph`.
3. The Python API (`attribute` on a `ReplacementModel`) in this process on the same inputs.
4. circuit-tracer 0.5.0 reading the same transcoder files into its ReplacementModel.
5. Compares the three: token, target and feature node sets exactly; the adjacency within
   1e-4 of the largest |A|; the pruned graphs (node and edge masks) exactly.
6. `--dtype bfloat16` through the CLI into a store of its own, measured against float32.

Exits 1 when a float32 comparison fails (the bfloat16 figures are measured, not checked).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_attribution import SHAPES  # noqa: E402
from gpu_check import write_model  # noqa: E402

# float32 through three code paths differs only in summation order: far below this, relative to
# the largest |A| (the parity tests use the same bound).
TOLERANCE = 1e-4


def cli_attribute(model_dir: Path, store: Path, prompt: str, dtype: str, extra: list[str]):
    """`circuitflow attribute` in a subprocess: (its JSON report, its stderr, wall seconds)."""
    command = [str(Path(sys.executable).parent / "circuitflow"), "attribute", prompt, "--json"]
    command += ["--model", str(model_dir), "--device", "cpu", "--dtype", dtype]
    command += ["--store", str(store), *extra]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"circuitflow attribute --dtype {dtype} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout), done.stderr, seconds


def stage_seconds(stderr: str) -> str:
    """The stages' own times from the progress lines ("rows: computed in 41.20 s")."""
    times = {}
    for line in stderr.splitlines():
        name, _, rest = line.partition(": computed in ")
        if rest.endswith(" s"):
            times[name] = float(rest[:-2])
    return ", ".join(f"{name} {t:.1f}s" for name, t in times.items())


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|."""
    return float((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-30))


def check(ok: bool, what: str) -> bool:
    print(f"  {'ok  ' if ok else 'FAIL'} {what}")
    return ok


def compare_float32(cli, cli_kept, api, ref, params) -> bool:
    """The CLI's graph against the Python API's and circuit-tracer's."""
    from circuitflow.attribution import graph_scores, prune
    from tests.attribution.reference import compute_graph_scores, prune_graph

    thresholds = dict(node_threshold=params.node_threshold, edge_threshold=params.edge_threshold)
    api_kept, ref_kept = prune(api, **thresholds), prune_graph(ref, **thresholds)
    ref_features = ref.active_features[ref.selected_features]
    ok = True
    print(f"float32: {cli.n_nodes} nodes ({len(cli.selected_features)} features)")
    for name, other, kept in (("Python API", api, api_kept), ("circuit-tracer", ref, ref_kept)):
        tokens = other.tokens if name == "Python API" else ref.input_tokens
        targets = (
            other.logit_token_ids.tolist()
            if name == "Python API"
            else [t.vocab_idx for t in ref.logit_targets]
        )
        features = (
            other.active_features[other.selected_features] if name == "Python API" else ref_features
        )
        A = other.adjacency if name == "Python API" else ref.adjacency_matrix
        print(f" CLI against {name}:")
        ok &= check(torch.equal(cli.tokens, tokens.to(cli.tokens.dtype)), "same tokens")
        ok &= check(cli.logit_token_ids.tolist() == targets, f"same {len(targets)} logit targets")
        ok &= check(
            torch.equal(cli.active_features[cli.selected_features], features),
            f"same {len(features)} feature nodes (layer, position, feature)",
        )
        if A.shape != cli.adjacency.shape:
            ok &= check(
                False, f"adjacency shapes {tuple(A.shape)} and {tuple(cli.adjacency.shape)}"
            )
            continue
        diff = relative(cli.adjacency, A)
        absolute = float((cli.adjacency - A).abs().max())
        ok &= check(
            diff <= TOLERANCE,
            f"adjacency: max |dA| = {absolute:.2e}, relative to max |A| {diff:.1e} "
            f"(tolerance {TOLERANCE:.0e})",
        )
        ok &= check(
            torch.equal(cli_kept.node_mask, kept.node_mask)
            and torch.equal(cli_kept.edge_mask, kept.edge_mask),
            f"same pruned graph: {int(kept.node_mask.sum())} nodes, "
            f"{int(kept.edge_mask.sum())} edges",
        )
        scores = graph_scores(other) if name == "Python API" else compute_graph_scores(ref)
        mine = graph_scores(cli)
        ok &= check(
            max(abs(a - b) for a, b in zip(mine, scores, strict=True)) <= 1e-5,
            f"replacement/completeness {mine[0]:.4f}/{mine[1]:.4f} against "
            f"{scores[0]:.4f}/{scores[1]:.4f}",
        )
    return ok


def measure_bfloat16(full, full_kept, half, half_kept) -> None:
    """What bfloat16 changes against float32: the node sets, and the edges between the nodes
    both graphs hold."""
    from circuitflow.attribution import graph_scores

    features = lambda g: {tuple(f) for f in g.active_features.tolist()}  # noqa: E731
    same = features(full) & features(half)
    print(
        f"bfloat16 against float32: {len(same)} of {len(full.active_features)} float32 active "
        f"features still active ({len(half.active_features)} active in bfloat16); "
        f"{half.n_nodes} nodes against {full.n_nodes}"
    )
    full_ids, half_ids = full.node_ids(), half.node_ids()
    kept = lambda ids, k: {i for i, m in zip(ids, k.node_mask.tolist(), strict=True) if m}  # noqa: E731
    a, b = kept(full_ids, full_kept), kept(half_ids, half_kept)
    print(
        f"  kept nodes: {len(a)} float32, {len(b)} bfloat16, Jaccard {len(a & b) / len(a | b):.3f}"
    )
    targets = full.logit_token_ids.tolist(), half.logit_token_ids.tolist()
    print(
        f"  logit targets: {len(set(targets[0]) & set(targets[1]))} of {len(targets[0])} float32 "
        f"targets among bfloat16's {len(targets[1])}; same order: {targets[0] == targets[1]}"
    )
    where = {node: index for index, node in enumerate(half_ids)}
    shared = [(i, where[n]) for i, n in enumerate(full_ids) if n in where]
    rows_f = torch.tensor([i for i, _ in shared])
    rows_h = torch.tensor([j for _, j in shared])
    A = full.adjacency[rows_f][:, rows_f].float()
    B = half.adjacency[rows_h][:, rows_h].float()
    frobenius = float((B - A).norm() / A.norm())
    big = A.abs() >= 1e-2 * A.abs().max()  # edges that matter: elementwise error is meaningful
    elementwise = ((B - A).abs()[big] / A.abs()[big]).median()
    print(
        f"  edges among the {len(shared)} shared nodes: max |dA| / max |A| = {relative(B, A):.1e}, "
        f"||dA||_F / ||A||_F = {frobenius:.1e}, median |dA|/|A| over the {int(big.sum())} edges "
        f"above 1% of max |A| = {float(elementwise):.1e}"
    )
    (r32, c32), (r16, c16) = graph_scores(full), graph_scores(half)
    print(f"  replacement {r32:.4f} -> {r16:.4f}, completeness {c32:.4f} -> {c16:.4f}")


def measure_bfloat16_cli(model_dir: Path, store: Path, prompt: str, extra: list[str], cli, kept):
    """`--dtype bfloat16` through the CLI into a store of its own, against float32's graph."""
    from circuitflow.tasks.recorded import recorded_graph

    report, stderr, seconds = cli_attribute(model_dir, store, prompt, "bfloat16", extra)
    print(f"CLI attribute --dtype bfloat16: {seconds:.1f}s wall")
    print(f"  stages: {stage_seconds(stderr)}")
    half, half_kept = recorded_graph(str(store), report["run_id"])
    measure_bfloat16(cli, kept, half, half_kept)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", choices=sorted(SHAPES), default="gpt2-small")
    parser.add_argument("--words", type=int, default=5, help="prompt words (tokens: one more)")
    parser.add_argument("--max-feature-nodes", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--no-bfloat16",
        action="store_true",
        help="float32 parity only (bfloat16 on a CPU without bfloat16 units is ~25x slower)",
    )
    args = parser.parse_args()
    from circuitflow.attribution import (
        ReplacementModel,
        RunParams,
        attribute,
        load_model,
        load_transcoders,
    )
    from circuitflow.tasks.recorded import recorded_graph
    from tests.attribution.reference import reference_attribute, reference_model

    params = RunParams(max_feature_nodes=args.max_feature_nodes, batch_size=args.batch_size)
    extra = ["--batch-size", str(args.batch_size)]
    if args.max_feature_nodes is not None:
        extra += ["--max-feature-nodes", str(args.max_feature_nodes)]
    prompt = " ".join(f"w{(i * 7 + 3) % 40}" for i in range(args.words))
    print(f"shape {args.shape}, prompt {prompt!r}, torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory(prefix="gpt2-small-cli-") as tmp:
        work = Path(tmp)
        model_dir = work / "model"
        start = time.perf_counter()
        write_model(model_dir, SHAPES[args.shape])
        print(f"model and transcoders written in {time.perf_counter() - start:.1f}s")

        report, stderr, seconds = cli_attribute(
            model_dir, work / "store-f32", prompt, "float32", extra
        )
        print(f"CLI attribute --dtype float32: {seconds:.1f}s wall (start-up and store included)")
        print(f"  stages: {stage_seconds(stderr)}")
        progress = [line for line in stderr.splitlines() if line.startswith("rows: ")]
        print(f"  stderr progress: {progress}")
        cli, cli_kept = recorded_graph(str(work / "store-f32"), report["run_id"])

        model = load_model(str(model_dir))
        transcoders = load_transcoders(str(model_dir / "transcoders" / "plt"))
        timings = {}
        start = time.perf_counter()
        api = attribute(
            prompt,
            ReplacementModel(model, transcoders),
            max_feature_nodes=params.max_feature_nodes,
            batch_size=params.batch_size,
        )
        timings["Python API"] = time.perf_counter() - start
        ref_model = reference_model(model, transcoders)
        start = time.perf_counter()
        ref = reference_attribute(
            prompt,
            ref_model,
            max_feature_nodes=params.max_feature_nodes,
            batch_size=params.batch_size,
        )
        timings["circuit-tracer"] = time.perf_counter() - start
        print(
            f"in-process attribute: Python API {timings['Python API']:.1f}s, circuit-tracer "
            f"{timings['circuit-tracer']:.1f}s (ratio "
            f"{timings['Python API'] / timings['circuit-tracer']:.2f})"
        )
        del ref_model, model
        ok = compare_float32(cli, cli_kept, api, ref, params)

        if not args.no_bfloat16:
            measure_bfloat16_cli(model_dir, work / "store-bf16", prompt, extra, cli, cli_kept)
    print("gpt2_small_cli: float32 parity ok" if ok else "gpt2_small_cli: FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
