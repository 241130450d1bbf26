"""Viewer benchmark: how long live re-pruning takes, on the server and in the browser.

    python benchmarks/bench_viewer.py                       # the built-in model's seed prompt
    python benchmarks/bench_viewer.py --gpt2-small-dir /tmp/gpt2s --max-feature-nodes 4000

The run is attributed into a fresh store (not timed). Then, with the viewer's server running in
this process:

- server: `GET /api/prune` at node thresholds it has not seen (so nothing is cached), each
  one `attribution.prune` on the run's stored graph plus the JSON reply, over HTTP;
- browser: in headless chromium, one arrow-key step of the node-threshold slider until the
  page has redrawn the new graph (the page waits 120 ms after the last key before it asks).

With `--gpt2-small-dir` the run uses a GPT-2-small-shaped random model (12 layers, d_model 768,
TopK(32) transcoders of 6144 features; written there first if missing), so its graph has a few
thousand nodes.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

SEED = "The capital of the state containing Dallas is"
GPT2_PROMPT = " ".join(f"w{i}" for i in range(1, 16))  # the random model's words; 16 tokens
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip


def record_run(store: str, model: str | None, max_feature_nodes: int | None):
    from circuitflow.attribution import RunParams
    from circuitflow.tasks import RunRequest, Setup
    from circuitflow.tasks.execute import execute_run
    from circuitflow.tasks.recorded import open_run

    setup = Setup.resolve(model, "plt", store)
    prompt = SEED if model is None else GPT2_PROMPT
    params = RunParams(max_feature_nodes=max_feature_nodes)
    start = time.perf_counter()
    outcome = execute_run(setup, RunRequest(prompt, params))
    assert outcome.status == "ok", outcome.error
    print(f"attributed in {time.perf_counter() - start:.1f}s (not part of the figures)")
    return open_run(store, outcome.run_id)


def bench_server(address: str, thresholds: list[float]) -> list[float]:
    seconds = []
    for threshold in thresholds:
        url = f"{address}api/prune?node_threshold={threshold}&edge_threshold=0.98"
        start = time.perf_counter()
        with urllib.request.urlopen(url, timeout=120) as reply:
            reply.read()
        seconds.append(time.perf_counter() - start)
    return seconds


def bench_browser(address: str, steps: int, screenshot: str | None) -> list[float]:
    from playwright.sync_api import sync_playwright

    seconds, parts = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.goto(address)
        page.wait_for_selector("svg#graph .node", timeout=120_000)
        page.focus("#node-threshold")
        for _ in range(steps):
            before = page.get_attribute("svg#graph", "data-node-threshold")
            start = time.perf_counter()
            page.keyboard.press("ArrowLeft")
            page.wait_for_function(
                f"document.querySelector('svg#graph').dataset.nodeThreshold !== '{before}' "
                "&& document.querySelector('#status').dataset.latencyMs !== undefined",
                timeout=120_000,
            )
            seconds.append(time.perf_counter() - start)
            parts.append(
                [int(page.get_attribute("#status", f"data-{k}-ms")) / 1000
                 for k in ("latency", "fetch", "draw")]
            )  # fmt: skip
            page.evaluate("delete document.querySelector('#status').dataset.latencyMs")
        describe("  in the page: slider move to painted frame", [p[0] for p in parts])
        describe("  of which the request (prune + transfer)", [p[1] for p in parts])
        describe("  of which drawing", [p[2] for p in parts])
        if screenshot:
            page.screenshot(path=screenshot, full_page=True)
        browser.close()
    return seconds


def describe(name: str, seconds: list[float]) -> None:
    print(
        f"{name}: median {statistics.median(seconds) * 1000:.0f} ms, "
        f"max {max(seconds) * 1000:.0f} ms over {len(seconds)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gpt2-small-dir", default=None)
    parser.add_argument("--max-feature-nodes", type=int, default=None)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--screenshot", default=None, help="save the page as this PNG at the end")
    parser.add_argument(
        "--store", default=None, help="keep the run in this store (reused when run again)"
    )
    args = parser.parse_args()

    from circuitflow.flows.settings import configure

    configure()
    from circuitflow.flows.viewer.data import RunView
    from circuitflow.flows.viewer.server import ViewerServer

    model = None
    if args.gpt2_small_dir:
        model = args.gpt2_small_dir
        if not (Path(model) / "config.json").exists():
            from bench_workflow import write_gpt2_small  # this script's folder

            write_gpt2_small(Path(model))
    with tempfile.TemporaryDirectory() as tmp:
        run = record_run(args.store or f"{tmp}/store", model, args.max_feature_nodes)
        start = time.perf_counter()
        view = RunView(run)
        view.overview()
        graph = view.graph
        print(
            f"graph: {graph.n_nodes} nodes ({graph.n_features} features, {graph.n_layers} "
            f"layers, {graph.n_pos} positions); viewer data ready in "
            f"{time.perf_counter() - start:.2f}s"
        )
        server = ViewerServer(view, 0)
        server.serve_in_thread()
        try:
            describe("server re-prune", bench_server(server.address, [0.5, 0.6, 0.7, 0.9, 0.95]))
            kept = len(view.pruned(0.8, 0.98)["node_ids"])
            print(f"(kept at 0.8/0.98: {kept} nodes)")
            steps = bench_browser(server.address, args.steps, args.screenshot)
            describe("browser, as the test driver sees it (Playwright round trips included)", steps)
        finally:
            server.shutdown()
            server.server_close()


if __name__ == "__main__":
    main()
