"""Time circuitflow's `attribute` against circuit-tracer's: same model, transcoders and prompt.

Both run in this one process, one after the other, on the CPU:

    python benchmarks/bench_attribution.py --shape gpt2-small  # 12x768, TopK(32) x 6144
    python benchmarks/bench_attribution.py --shape tiny

Prints each time, the ratio (ours / reference) and whether the two adjacencies agree.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from circuitflow.attribution import Activation, ReplacementModel, attribute  # noqa: E402
from circuitflow.attribution.toy import random_model, random_transcoders  # noqa: E402
from tests.attribution.reference import reference_attribute, reference_model  # noqa: E402

SHAPES = {
    "gpt2-small": dict(
        model=dict(
            n_layers=12, d_model=768, d_head=64, n_heads=12, d_mlp=3072, d_vocab=50257, n_ctx=1024
        ),
        d_transcoder=6144,
        k=32,
        n_words=15,
    ),
    "tiny": dict(
        model=dict(n_layers=3, d_model=32, d_head=8, n_heads=4, d_mlp=64, d_vocab=50, n_ctx=64),
        d_transcoder=48,
        k=6,
        n_words=15,
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    shape = SHAPES[args.shape]
    torch.manual_seed(0)

    start = time.perf_counter()
    model = random_model("gpt2", **shape["model"])
    with tempfile.TemporaryDirectory() as tmp:
        tc = random_transcoders(
            model,
            d_transcoder=shape["d_transcoder"],
            activation=Activation("topk", shape["k"]),
            directory=tmp,
        )
        prompt = " ".join(f"w{(i * 7 + 3) % 40}" for i in range(shape["n_words"]))
        ours_model = ReplacementModel(model, tc)
        ref_model = reference_model(model, tc)
        print(f"setup {time.perf_counter() - start:.1f}s; torch threads {torch.get_num_threads()}")

        ours_times, ref_times = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            ours = attribute(prompt, ours_model, batch_size=args.batch_size)
            ours_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            ref = reference_attribute(prompt, ref_model, batch_size=args.batch_size)
            ref_times.append(time.perf_counter() - start)

    ours_t, ref_t = min(ours_times), min(ref_times)
    diff = (ours.adjacency - ref.adjacency_matrix).abs().max() / ref.adjacency_matrix.abs().max()
    print(
        f"shape {args.shape}: {len(ours.tokens)} tokens, "
        f"{len(ours.active_features)} active features, {ours.n_nodes} nodes"
    )
    print(f"circuitflow {ours_t:.2f}s  circuit-tracer {ref_t:.2f}s  ratio {ours_t / ref_t:.2f}")
    print(f"max |A_ours - A_ref| / max |A_ref| = {diff:.1e}")


if __name__ == "__main__":
    main()
