"""One prepared check for a machine with a GPU: `--device cuda` against the CPU, and the time of
circuitflow's `attribute` against circuit-tracer's, on the GPT-2-small shape.

    bash benchmarks/gpu_check.sh            # on the GPU machine (after `make setup`)
    bash benchmarks/gpu_check.sh --dry      # anywhere: the tiny shape, CPU against CPU

1. Writes a GPT-2-small-shaped model (12 x 768, vocab 50257, random weights) with TopK(32) x 6144
   per-layer transcoders in the model-directory layout.
2. Runs `circuitflow attribute --device cpu` and `--device DEVICE` through the CLI, each into a
   store of its own (the device is not in the keys: one store would serve the second from the
   first), and compares the two adjacency matrices and pruned graphs.
3. In one process on DEVICE, times our `attribute` and circuit-tracer's on the same weights and
   compares their adjacencies.

Exits 1 when a comparison is outside its tolerance.
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

# float32 on two devices differs only in summation order: far below this, relative to max |A|.
TOLERANCE = 1e-3


def write_model(directory: Path, shape: dict) -> None:
    from circuitflow.attribution import Activation, save_model
    from circuitflow.attribution.toy import random_model, random_transcoders

    torch.manual_seed(0)
    model = random_model("gpt2", **shape["model"])
    save_model(model, directory)
    random_transcoders(
        model,
        d_transcoder=shape["d_transcoder"],
        activation=Activation("topk", shape["k"]),
        directory=directory / "transcoders" / "plt",
    )


def cli_run(model_dir: Path, store: Path, device: str, prompt: str) -> tuple[dict, float]:
    """`circuitflow attribute` in a subprocess: (its JSON report, wall seconds)."""
    command = [str(Path(sys.executable).parent / "circuitflow"), "attribute", prompt]
    command += ["--model", str(model_dir), "--device", device, "--store", str(store), "--json"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"circuitflow attribute --device {device} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout), seconds


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float().cpu(), b.float().cpu()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def compare_devices(model_dir: Path, work: Path, device: str, prompt: str) -> bool:
    from circuitflow.tasks.recorded import open_run

    runs = {}
    for name in ("cpu", device):
        report, seconds = cli_run(model_dir, work / f"store-{name.replace(':', '-')}", name, prompt)
        runs[name] = open_run(str(work / f"store-{name.replace(':', '-')}"), report["run_id"])
        print(f"CLI attribute --device {name}: {seconds:.1f}s wall (imports and server included)")
    cpu, dev = runs["cpu"].graph, runs[device].graph
    if cpu.adjacency.shape != dev.adjacency.shape:
        print(f"FAIL: {device} has {dev.n_nodes} nodes, cpu {cpu.n_nodes}")
        return False
    diff = relative_difference(dev.adjacency, cpu.adjacency)
    kept = [int(r.record("prune").node_mask.sum()) for r in (runs["cpu"], runs[device])]
    ok = diff <= TOLERANCE
    print(
        f"{'ok' if ok else 'FAIL'}: max |A_{device} - A_cpu| / max |A_cpu| = {diff:.1e} "
        f"(tolerance {TOLERANCE:.0e}); kept nodes cpu {kept[0]}, {device} {kept[1]}"
    )
    measure_bfloat16(model_dir, work / f"store-{device.replace(':', '-')}", device, prompt, cpu)
    return ok


def measure_bfloat16(model_dir: Path, store: Path, device: str, prompt: str, full) -> None:
    """What --dtype bfloat16 changes against float32 (measured, not checked: rounding moves
    features near zero and so can change the node set)."""
    from gpt2_small_cli import measure_bfloat16 as compare

    from circuitflow.attribution import prune
    from circuitflow.tasks.recorded import recorded_graph

    command = [str(Path(sys.executable).parent / "circuitflow"), "attribute", prompt, "--json"]
    command += ["--model", str(model_dir), "--device", device, "--store", str(store)]
    done = subprocess.run([*command, "--dtype", "bfloat16"], capture_output=True, text=True)
    if done.returncode != 0:
        print(f"bfloat16 run failed: {done.stderr[-500:]}")
        return
    half, half_kept = recorded_graph(str(store), json.loads(done.stdout)["run_id"])
    print(f"on {device}:")
    compare(full, prune(full), half, half_kept)  # the run's thresholds are the defaults


def time_against_reference(model_dir: Path, device: str, prompt: str, batch_size: int) -> bool:
    from circuitflow.attribution import ReplacementModel, attribute, load_model, load_transcoders
    from tests.attribution.reference import reference_attribute, reference_model

    model = load_model(str(model_dir), device=device)
    tc = load_transcoders(str(model_dir / "transcoders" / "plt"), device=device)
    ours_model = ReplacementModel(model, tc)
    ref_model = reference_model(model, tc, device=device)
    times = {}
    for name, run in (
        ("circuitflow", lambda: attribute(prompt, ours_model, batch_size=batch_size)),
        ("circuit-tracer", lambda: reference_attribute(prompt, ref_model, batch_size=batch_size)),
    ):
        run()  # warm-up: kernels, allocator
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        graph = run()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times[name] = (time.perf_counter() - start, graph)
    (ours_t, ours), (ref_t, ref) = times["circuitflow"], times["circuit-tracer"]
    diff = relative_difference(ours.adjacency, ref.adjacency_matrix)
    ok = diff <= TOLERANCE
    print(
        f"on {device}: circuitflow {ours_t:.2f}s, circuit-tracer {ref_t:.2f}s, "
        f"ratio {ours_t / ref_t:.2f}; {ours.n_nodes} nodes; "
        f"{'ok' if ok else 'FAIL'}: max |A - A_ref| / max |A_ref| = {diff:.1e}"
    )
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda", help="the device to check [default: cuda]")
    parser.add_argument(
        "--dry", action="store_true", help="tiny shape, CPU against CPU: checks the script only"
    )
    parser.add_argument("--words", type=int, default=15, help="prompt length in words")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    device = "cpu" if args.dry else args.device
    shape = SHAPES["tiny" if args.dry else "gpt2-small"]
    if device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("no CUDA GPU here: run with --dry to check the script on the CPU")
    if device.startswith("cuda"):
        print(f"GPU: {torch.cuda.get_device_name(torch.device(device))}")
    prompt = " ".join(f"w{(i * 7 + 3) % 40}" for i in range(args.words))
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        write_model(work / "model", shape)
        print(f"model written in {time.perf_counter() - start:.1f}s")
        ok = compare_devices(work / "model", work, device, prompt)
        ok = time_against_reference(work / "model", device, prompt, args.batch_size) and ok
    print("gpu_check: all ok" if ok else "gpu_check: FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
