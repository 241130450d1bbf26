"""Reading listed transcoder sets (Gemma Scope .npz, Gemma Scope 2) against circuit-tracer,
and the first-time SHA-256 of their files.

    python benchmarks/bench_transcoder_formats.py [--layers 4] [--d-model 768] [--features 8192]

Writes a random set of the given shape in each layout to a temporary directory, then times, in
one process and the same run: our `load_transcoders` (lazy decoder rows where the format allows)
and circuit-tracer's `load_transcoder_set` (its Gemma Scope loaders, which read everything), each
the best of three; then the SHA-256 of every file through `DigestCache` (what a run's identity
costs the first time, when no hub-cache blob name is there).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import save_file


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def write(directory: Path, layers: int, d: int, n: int, gemma_scope_2: bool) -> list[Path]:
    g = torch.Generator().manual_seed(0)
    paths = []
    for layer in range(layers):
        W_enc, W_dec = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
        b_enc, b_dec, threshold = torch.randn(n), torch.randn(d), torch.rand(n)
        path = directory / f"layer_{layer}" / ("params.safetensors" if gemma_scope_2 else "p.npz")
        path.parent.mkdir(parents=True)
        if gemma_scope_2:
            tensors = {"w_enc": W_enc.T.contiguous(), "w_dec": W_dec, "b_enc": b_enc}
            save_file(tensors | {"b_dec": b_dec, "threshold": threshold}, path)
        else:
            arrays = {"W_enc": W_enc.T.numpy(), "W_dec": W_dec.numpy(), "b_enc": b_enc.numpy()}
            np.savez(path, **arrays, b_dec=b_dec.numpy(), threshold=threshold.numpy())
        paths.append(path)
    config = {
        "model_kind": "transcoder_set",
        "feature_input_hook": "hook_resid_mid",
        "feature_output_hook": "hook_mlp_out",
        "transcoders": [str(p) for p in paths],
    }
    (directory / "config.yaml").write_text(yaml.safe_dump(config))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--d-model", type=int, default=768)
    parser.add_argument("--features", type=int, default=8192)
    args = parser.parse_args()

    from circuit_tracer.transcoder.single_layer_transcoder import load_transcoder_set

    from circuitflow.attribution import load_transcoders
    from circuitflow.store.keys import DigestCache

    torch.set_num_threads(2)
    shape = f"{args.layers} layers, d_model {args.d_model}, {args.features} features"
    print(f"shape: {shape} (float32)")
    with tempfile.TemporaryDirectory() as tmp:
        for label, gs2, special in (("Gemma Scope .npz", False, "gemma-scope"),
                                    ("Gemma Scope 2", True, "gemma-scope-2")):  # fmt: skip
            directory = Path(tmp) / special
            paths = write(directory, args.layers, args.d_model, args.features, gs2)
            size = sum(p.stat().st_size for p in paths) / 1e6
            ours = best_of(lambda d=directory: load_transcoders(d))
            theirs = best_of(
                lambda p=paths, s=special: load_transcoder_set(
                    {i: str(x) for i, x in enumerate(p)},
                    scan="bench",
                    feature_input_hook="hook_resid_mid",
                    feature_output_hook="hook_mlp_out",
                    device=torch.device("cpu"),
                    dtype=torch.float32,
                    special_load_fn=s,
                    lazy_encoder=False,
                    lazy_decoder=False,
                )
            )
            cache = DigestCache(Path(tmp) / f"{special}-digests.json")
            start = time.perf_counter()
            for p in paths:
                cache.digest(p)
            hashing = time.perf_counter() - start
            print(
                f"{label}: {size:.0f} MB; load ours {ours:.2f} s, circuit-tracer {theirs:.2f} s "
                f"(ratio {theirs / ours:.2f}); first SHA-256 {hashing:.2f} s "
                f"({size / hashing:.0f} MB/s)"
            )


if __name__ == "__main__":
    main()
