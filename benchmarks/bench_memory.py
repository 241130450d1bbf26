"""Peak memory of one attribution against prompt length: circuitflow and circuit-tracer.

Same weights (a GPT-2-small-shaped random model saved once in the model-directory format, with
TopK transcoders in circuit-tracer's layout), same prompt tokens, same feature budget and batch.
Each measurement is a fresh subprocess that loads the model, resets the kernel's RSS high-water
mark (/proc/self/clear_refs), runs one attribution and reads it back (VmHWM), so the figure is
the attribution's own peak on top of the loaded weights; `ru_maxrss` (whole process, loading
included) is printed too. Our estimate (`attribution.memory`) of the same run is printed beside.

    python benchmarks/bench_memory.py                       # 16, 64, 256 tokens, budget 64
    python benchmarks/bench_memory.py --lengths 16 --budget 32 --batch-size 8 --shape tiny
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_attribution import SHAPES  # noqa: E402


def rss_status(field: str) -> int:
    """VmRSS or VmHWM of this process in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(args: argparse.Namespace) -> None:
    """One attribution in this (fresh) process; prints a JSON line of its memory."""
    import torch

    from circuitflow.attribution import ReplacementModel, attribute, load_model, load_transcoders
    from circuitflow.attribution.memory import estimate, run_shape

    torch.manual_seed(0)
    model = load_model(args.model_dir)
    tc = load_transcoders(Path(args.model_dir) / "transcoders" / "plt")
    ours = ReplacementModel(model, tc)
    bos = model.tokenizer.bos_token_id
    tokens = [bos] + torch.randint(
        min(100, model.cfg.d_vocab // 2), model.cfg.d_vocab, (args.length - 1,)
    ).tolist()
    if args.impl == "circuit-tracer":
        from tests.attribution.reference import reference_attribute, reference_model

        runner = reference_model(model, tc)
        del ours, model  # only the reference's copy of the weights stays
    Path("/proc/self/clear_refs").write_text("5")  # the high-water mark restarts here
    loaded = rss_status("VmRSS")
    start = time.perf_counter()
    if args.impl == "circuitflow":
        graph = attribute(tokens, ours, max_feature_nodes=args.budget, batch_size=args.batch_size)
        n_active = len(graph.active_features)
    else:
        graph = reference_attribute(
            torch.tensor(tokens),
            runner,
            max_feature_nodes=args.budget,
            batch_size=args.batch_size,
            verbose=False,
        )
        n_active = len(graph.active_features)
    seconds = time.perf_counter() - start
    peak = rss_status("VmHWM")
    print(
        json.dumps(
            {
                "impl": args.impl,
                "length": args.length,
                "n_active": n_active,
                "loaded_rss": loaded,
                "peak_rss": peak,
                "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "seconds": seconds,
            }
        )
    )
    if args.impl == "circuitflow":
        shape = run_shape(
            ours, args.length, n_active, max_feature_nodes=args.budget, batch_size=args.batch_size
        )
        predicted = estimate(shape)
        print(json.dumps({"estimate": predicted.total, "terms": predicted.terms}))


def measure(model_dir: Path, impl: str, length: int, args) -> dict:
    command = [sys.executable, __file__, "--child", "--impl", impl, "--model-dir", str(model_dir)]
    command += ["--length", str(length), "--budget", str(args.budget)]
    command += ["--batch-size", str(args.batch_size)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{impl} at {length} tokens failed:\n{done.stderr[-3000:]}")
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    result = lines[0]
    if len(lines) > 1:
        result |= lines[1]
    return result


def mb(size: float) -> str:
    return f"{size / 2**20:,.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", choices=sorted(SHAPES), default="gpt2-small")
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--budget", type=int, default=64, help="max_feature_nodes of both")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--impl", default="circuitflow", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--length", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from benchmarks.gpu_check import write_model

    print(f"shape {args.shape}, budget {args.budget}, batch {args.batch_size}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        write_model(model_dir, SHAPES[args.shape])
        print(
            "| tokens | active features | impl | peak during attribution | loaded | "
            "ru_maxrss | seconds | our estimate (attribution part) |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for length in args.lengths:
            for impl in ("circuitflow", "circuit-tracer"):
                r = measure(model_dir, impl, length, args)
                extra = ""
                if "estimate" in r:
                    fixed = r["terms"]["runtime (python, torch)"] + r["terms"]["model weights"]
                    fixed += r["terms"]["transcoder encoders"] + r["terms"]["transcoder decoders"]
                    extra = f"{mb(r['estimate'] - fixed)}: " + ", ".join(
                        f"{k} {mb(v)}"
                        for k, v in sorted(r["terms"].items(), key=lambda kv: -kv[1])
                        if v > 2**20
                    )
                print(
                    f"| {length} | {r['n_active']} | {impl} | "
                    f"{mb(r['peak_rss'] - r['loaded_rss'])} | {mb(r['loaded_rss'])} | "
                    f"{mb(r['ru_maxrss'])} | {r['seconds']:.0f} | {extra} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
