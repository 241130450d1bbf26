"""Export benchmark: our graph file against circuit-tracer's `create_graph_files`, same graph.

    python benchmarks/bench_export.py --store /tmp/g2store --model /tmp/gpt2s

Takes the first run of a store (e.g. the one `bench_viewer.py --store` left), builds
circuit-tracer's Graph from exactly its adjacency, and times, in this process, each writing a
graph directory at node threshold 0.8 and edge threshold 0.98: ours is `attribution.prune` +
`graph_json` + `write_graph_dir`; theirs is `create_graph_files` (which prunes with its own
`prune_graph`). Both are run `--repeats` times, alternating; medians and their ratio are printed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", required=True)
    parser.add_argument("--model", required=True, help="the run's model directory")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from circuitflow.flows.settings import configure

    configure()
    from circuit_tracer.utils.create_graph_files import create_graph_files

    from circuitflow.attribution import load_model, prune
    from circuitflow.attribution.neuronpedia import Provenance, graph_json
    from circuitflow.flows.graph_files import write_graph_dir
    from circuitflow.tasks import open_store
    from circuitflow.tasks.recorded import open_run
    from tests.attribution.reference import reference_graph

    rid = open_store(args.store).query("SELECT run_id FROM runs LIMIT 1").column(0)[0].as_py()
    graph = open_run(args.store, rid).graph
    cfg = load_model(args.model).cfg
    tokenizer = str(Path(args.model) / "tokenizer")
    print(f"graph: {graph.n_nodes} nodes")

    def ours(out: str) -> None:
        doc = graph_json(graph, prune(graph, 0.8, 0.98), Provenance(rid, "bench", ""),
                         node_threshold=0.8, edge_threshold=0.98)  # fmt: skip
        write_graph_dir(doc, out)

    def theirs(out: str) -> None:
        ref = reference_graph(graph, cfg, tokenizer_dir=tokenizer)
        create_graph_files(ref, "ref", out, scan="bench", node_threshold=0.8, edge_threshold=0.98)

    times: dict[str, list[float]] = {"circuitflow": [], "circuit-tracer": []}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeats):
            for name, write in (("circuitflow", ours), ("circuit-tracer", theirs)):
                start = time.perf_counter()
                write(f"{tmp}/{name}-{k}")
                times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, value in medians.items():
        print(f"{name}: median {value:.2f}s over {args.repeats}")
    ratio = medians["circuitflow"] / medians["circuit-tracer"]
    print(f"ratio circuitflow / circuit-tracer: {ratio:.2f}")


if __name__ == "__main__":
    main()
