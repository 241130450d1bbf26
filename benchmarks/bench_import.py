"""Import benchmark: `circuitflow import` of a circuit-tracer graph file against circuit-tracer
reading and pruning the same file.

    python benchmarks/bench_import.py --features 2000 --layers 12 --tokens 32

Writes one synthetic graph file with circuit-tracer's `Graph.to_pt` (a GPT-2-small-shaped node
set: `--layers` layers, `--tokens` positions, `--features` selected features, 10 logits; random
weights on the edges that go up the layers, so the graph is acyclic like a real one), then
times, in this process, alternating `--repeats` times:

- ours: `read_graph_file` + `import_graph` into a fresh store (publish the graph, influence,
  prune, export, catalog rows): everything `circuitflow import` does after Python starts;
- ours, again: the same file into the same store (every stage cached);
- theirs: `Graph.from_pt` + `prune_graph` + `compute_graph_scores` (what a circuit-tracer user
  runs to get the same pruned graph and scores, without storing anything).

One import into a store of its own runs first and is not timed (lazy imports, first-use
costs). Medians and the ratio are printed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def synthetic_graph(n_features: int, n_layers: int, n_pos: int, n_logits: int, seed: int = 0):
    """A circuit-tracer Graph of the given shape with random upward edges (about 5% dense)."""
    import torch
    from circuit_tracer.attribution.targets import LogitTarget
    from circuit_tracer.graph import Graph
    from circuit_tracer.utils.tl_nnsight_mapping import UnifiedConfig

    gen = torch.Generator().manual_seed(seed)
    layers = torch.randint(0, n_layers, (n_features,), generator=gen).sort().values
    positions = torch.randint(1, n_pos, (n_features,), generator=gen)
    features = torch.randint(0, 24576, (n_features,), generator=gen)
    active = torch.stack([layers, positions, features], dim=1)
    # Each node's level: features and errors their layer, tokens -1, logits n_layers.
    levels = torch.cat([
        layers.float(),
        torch.arange(n_layers).repeat_interleave(n_pos).float(),
        torch.full((n_pos,), -1.0),
        torch.full((n_logits,), float(n_layers)),
    ])  # fmt: skip
    n = len(levels)
    upward = levels[:, None] > levels[None, :]  # target above source
    weights = torch.randn(n, n, generator=gen) * (torch.rand(n, n, generator=gen) < 0.05)
    adjacency = weights * upward
    adjacency[:, n - n_logits :] = 0  # logits feed nothing
    adjacency[n_features : n - n_logits] = 0  # nothing is attributed into errors and tokens
    probabilities = torch.rand(n_logits, generator=gen)
    cfg = UnifiedConfig(
        n_layers=n_layers, d_model=768, d_head=64, n_heads=12, d_mlp=3072, d_vocab=50257,
        tokenizer_name="gpt2", model_name="gpt2", original_architecture="GPT2LMHeadModel",
    )  # fmt: skip
    return Graph(
        input_string="synthetic",
        input_tokens=torch.randint(0, 50257, (n_pos,), generator=gen),
        active_features=active,
        adjacency_matrix=adjacency,
        cfg=cfg,
        selected_features=torch.arange(n_features),
        activation_values=torch.rand(n_features, generator=gen),
        logit_targets=[LogitTarget(f"t{i}", i) for i in range(n_logits)],
        logit_probabilities=probabilities / probabilities.sum(),
        scan="synthetic-transcoders",
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--features", type=int, default=2000)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from circuitflow.flows.settings import configure

    configure()
    from circuit_tracer.graph import Graph, compute_graph_scores, prune_graph

    from circuitflow.attribution import RunParams
    from circuitflow.tasks.context import forget_records
    from circuitflow.tasks.imports import import_graph, read_graph_file

    work = Path(tempfile.mkdtemp(prefix="bench-import-"))
    path = work / "graph.pt"
    graph = synthetic_graph(args.features, args.layers, args.tokens, 10)
    graph.to_pt(str(path))
    n = graph.adjacency_matrix.shape[0]
    print(f"graph: {n} nodes, file {path.stat().st_size / 1e6:.1f} MB", flush=True)

    import_graph(read_graph_file(path), str(work / "warm-up"), RunParams())  # first-use costs
    Graph.from_pt(str(path))
    ours, again, theirs = [], [], []
    for repeat in range(args.repeats):
        store = str(work / f"store-{repeat}")
        forget_records()
        start = time.perf_counter()
        outcome = import_graph(read_graph_file(path), store, RunParams())
        ours.append(time.perf_counter() - start)
        forget_records()
        start = time.perf_counter()
        cached = import_graph(read_graph_file(path), store, RunParams())
        again.append(time.perf_counter() - start)
        assert cached.cached and cached.run_id == outcome.run_id

        start = time.perf_counter()
        loaded = Graph.from_pt(str(path))
        prune_graph(loaded, 0.8, 0.98)
        compute_graph_scores(loaded)
        theirs.append(time.perf_counter() - start)

    mine, cached_s, ref = (statistics.median(x) for x in (ours, again, theirs))
    print(f"circuitflow import (new store): {mine:.2f} s median of {args.repeats}")
    print(f"circuitflow import (cached):    {cached_s:.2f} s")
    print(f"circuit-tracer from_pt + prune_graph + compute_graph_scores: {ref:.2f} s")
    print(f"ratio import / circuit-tracer: {mine / ref:.2f}")


if __name__ == "__main__":
    main()
