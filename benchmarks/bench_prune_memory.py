"""Peak memory and time of pruning one large graph: circuitflow's `prune` against circuit-tracer's.

    python benchmarks/bench_prune_memory.py --nodes 8000

The graph is random but shaped like a real one: features in 12 layers that receive edges from
earlier layers, error and token nodes that only send, 10 logit nodes. Each implementation runs in
a fresh subprocess; its peak is the growth of the process's maximum resident set size during the
call, over what the loaded graph already holds.
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

import numpy as np
import torch

N_LAYERS, N_POS, N_LOGITS = 12, 32, 10


def build(n_nodes: int, path: Path) -> None:
    n_other = (N_LAYERS + 1) * N_POS + N_LOGITS
    n_features = n_nodes - n_other
    rng = np.random.default_rng(0)
    layer_of = np.sort(rng.integers(0, N_LAYERS, n_features))
    adjacency = np.zeros((n_nodes, n_nodes), dtype=np.float32)
    for t in range(n_features):  # features read from earlier-layer features, errors and tokens
        earlier = int(np.searchsorted(layer_of, layer_of[t]))
        cols = rng.integers(0, earlier, size=min(earlier, 400)) if earlier else np.zeros(0, int)
        adjacency[t, cols] = rng.standard_normal(len(cols)) * rng.random(len(cols)) ** 3
        others = rng.integers(n_features, n_nodes - N_LOGITS, size=50)
        adjacency[t, others] = rng.standard_normal(50) * 0.1
    logit_rows = slice(n_nodes - N_LOGITS, n_nodes)
    adjacency[logit_rows, : n_nodes - N_LOGITS] = rng.standard_normal(
        (N_LOGITS, n_nodes - N_LOGITS)
    ) * (rng.random((N_LOGITS, n_nodes - N_LOGITS)) < 0.05)
    np.save(path, adjacency)


def child(which: str, path: Path, n_features: int) -> None:
    adjacency = torch.from_numpy(np.load(path))
    probs = torch.softmax(torch.randn(N_LOGITS, generator=torch.Generator().manual_seed(0)), 0)
    if which == "circuitflow":
        from circuitflow.attribution import AttributionGraph, prune

        graph = AttributionGraph(
            tokens=torch.arange(N_POS),
            active_features=torch.zeros(n_features, 3, dtype=torch.long),
            activation_values=torch.ones(n_features),
            selected_features=torch.arange(n_features),
            adjacency=adjacency,
            logit_token_ids=torch.arange(N_LOGITS),
            logit_probabilities=probs,
            n_layers=N_LAYERS,
        )
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        result = prune(graph)
    else:
        from circuit_tracer.attribution.targets import LogitTarget
        from circuit_tracer.graph import Graph, prune_graph
        from transformer_lens import HookedTransformerConfig

        cfg = HookedTransformerConfig(
            n_layers=N_LAYERS, d_model=8, n_ctx=N_POS, d_head=8, d_vocab=100, act_fn="relu"
        )
        graph = Graph(
            input_string="",
            input_tokens=torch.arange(N_POS),
            active_features=torch.zeros(n_features, 3, dtype=torch.long),
            adjacency_matrix=adjacency,
            cfg=cfg,
            selected_features=torch.arange(n_features),
            activation_values=torch.ones(n_features),
            logit_targets=[LogitTarget("", i) for i in range(N_LOGITS)],
            logit_probabilities=probs,
            scan="bench",
        )
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        result = prune_graph(graph)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "peak_extra_mb": (after - before) / 1024,
                "seconds": seconds,
                "nodes_kept": int(result.node_mask.sum()),
                "edges_kept": int(result.edge_mask.sum()),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=8000)
    parser.add_argument("--child", choices=["circuitflow", "circuit-tracer"])
    parser.add_argument("--graph")
    args = parser.parse_args()
    n_features = args.nodes - (N_LAYERS + 1) * N_POS - N_LOGITS
    if args.child:
        child(args.child, Path(args.graph), n_features)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "adjacency.npy"
        build(args.nodes, path)
        print(
            f"graph: {args.nodes} nodes ({n_features} features), "
            f"{args.nodes**2 * 4 / 2**20:.0f} MB dense float32"
        )
        results = {}
        for which in ("circuitflow", "circuit-tracer"):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--nodes",
                    str(args.nodes),
                    "--child",
                    which,
                    "--graph",
                    str(path),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            results[which] = json.loads(out.stdout.strip().splitlines()[-1])
            r = results[which]
            print(
                f"{which:15s} peak +{r['peak_extra_mb']:.0f} MB  {r['seconds']:.2f}s  "
                f"nodes {r['nodes_kept']}  edges {r['edges_kept']}"
            )
        ratio = results["circuitflow"]["peak_extra_mb"] / max(
            results["circuit-tracer"]["peak_extra_mb"], 1
        )
        print(f"peak memory ratio (circuitflow / circuit-tracer): {ratio:.2f}")


if __name__ == "__main__":
    main()
