"""The viewer's page: one HTML file with our own CSS and JavaScript inlined (no CDN, nothing
fetched from anywhere but the server that served it).

Served live, the page asks its server (`flows.viewer.server`) for the run and for each
re-pruning. Written static (`static_html`), it carries the run and the graph pruned at a grid
of thresholds inside itself, and its sliders step through that grid.
"""

from __future__ import annotations

import json
import re
from importlib import resources

from circuitflow.flows.viewer.data import RunView

NODE_GRID = tuple(round(0.1 + 0.05 * i, 2) for i in range(19))  # 0.10, 0.15, ..., 1.00
EDGE_GRID = (0.8, 0.9, 0.95, 0.98, 0.99, 1.0)
STATIC_DIGITS = 6  # significant digits of weights and shares in a static file


def asset(name: str) -> str:
    return (resources.files("circuitflow.flows.viewer") / "assets" / name).read_text()


def _script_json(value: object) -> str:
    """JSON that is safe inside a <script> element (no '</' can close it early)."""
    return json.dumps(value, separators=(",", ":")).replace("</", "<\\/")


def page_html(boot: dict) -> str:
    """The page, with `boot` (mode and, for a static page, the data) for the script to read."""
    parts = {"CSS": asset("viewer.css"), "JS": asset("viewer.js"), "BOOT": _script_json(boot)}
    # One pass, so that nothing inserted (a prompt, say) is searched for placeholders again.
    return re.sub(r"/\*(CSS|JS|BOOT)\*/", lambda m: parts[m[1]], asset("viewer.html"))


def live_html() -> str:
    return page_html({"mode": "live"})


def grid(run_value: float, values: tuple[float, ...]) -> list[float]:
    return sorted({*values, float(run_value)})


def static_html(view: RunView, subgraphs: list[dict]) -> str:
    """A self-contained page: the run, and the graph pruned at every grid point."""
    run = view.overview()
    node_grid = grid(run["run"]["node_threshold"], NODE_GRID)
    edge_grid = grid(run["run"]["edge_threshold"], EDGE_GRID)
    nodes: dict[str, dict] = {}
    views = {}
    for i, node_threshold in enumerate(node_grid):
        for j, edge_threshold in enumerate(edge_grid):
            pruned = view.pruned(node_threshold, edge_threshold, STATIC_DIGITS)
            nodes.update(pruned["nodes"])  # each node once in the file
            views[f"{i}|{j}"] = pruned | {"nodes": {}}  # by grid indices
    data = run | {
        "grid": {"node": node_grid, "edge": edge_grid},
        "nodes": nodes,
        "views": views,
        "subgraphs": subgraphs,
    }
    return page_html({"mode": "static", "data": data})
