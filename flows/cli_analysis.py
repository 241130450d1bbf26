"""`circuitflow analysis RUN_ID [POINT]`: what analysis functions captured in a run.

A table per analysis point, in the order attribution reached them (as the seed notebook prints
its analysis points), read from the catalog's `analysis` table (the run's latest analysis);
`--plot` draws the influence series' convergence from the captured terms. The run must have
been made with `circuitflow attribute ... --analysis FILE`. Like `query`, this imports neither
torch nor the pipeline (matplotlib only for --plot).
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from circuitflow.flows.analysis_read import read_analysis
from circuitflow.flows.cli import open_store
from circuitflow.flows.options import STORE_HELP
from circuitflow.flows.output import cell, console


def _labels(labels: dict[str, Any]) -> str:
    return " ".join(f"{k}={cell(v)}" for k, v in labels.items())


def _topk(row: dict[str, Any]) -> str:
    pairs = zip(row["topk_values"] or [], row["topk_indices"] or [], strict=True)
    return "  ".join(f"{cell(v)}@{i}" for v, i in pairs)


def _value(row: dict[str, Any]) -> str:
    if row["kind"] in ("tensor", "summary"):
        shape = "(" + ", ".join(map(str, row["shape"])) + ")"
        stats = ", ".join(cell(row[k]) for k in ("min", "max", "mean"))
        stored = "  [stored]" if row["kind"] == "tensor" else ""
        return f"{shape} {row['dtype']}  min/max/mean {stats}{stored}"
    return json.dumps(row["value"]) if not isinstance(row["value"], str) else row["value"]


def print_point(point: str, rows: list[dict[str, Any]]) -> None:
    """One point's rows as a table (failures listed under it)."""
    stages = sorted({r["stage"] or "" for r in rows})
    title = f"{point}  [stage {', '.join(stages)}]"
    table = Table(title=title, header_style="bold", title_justify="left")
    functions = {r["function"] for r in rows}
    columns = ["firing", "labels", *(["function"] if len(functions) > 1 else []), "key"]
    for name in [*columns, "value", "top-k value@index"]:
        table.add_column(name, justify="right" if name == "firing" else "left", overflow="fold")
    failures = []
    for row in rows:
        if row["kind"] == "error":
            failures.append(row)
            continue
        cells = [str(row["firing"]), _labels(row["labels"])]
        if len(functions) > 1:
            cells.append(row["function"])
        table.add_row(*cells, row["key"], _value(row), _topk(row))
    if table.row_count:
        console.print(table)
    for row in failures:
        console.print(
            f"[red]failed[/red] {row['function']} at {point} (firing {row['firing']}, "
            f"stage {row['stage']}): {row['value']}",
            highlight=False,
        )


@click.command("analysis")
@click.argument("run_id")
@click.argument("point", required=False)
@click.option("--plot", is_flag=True, help="Draw the influence series' convergence as a PNG.")
@click.option(
    "--phase",
    type=click.Choice(["node", "edge"]),
    default="node",
    show_default=True,
    help="With --plot: the series on the whole graph (node) or the node-pruned one (edge).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="With --plot: the PNG to write [default: RUN_ID-convergence-PHASE.png].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON instead.")
@click.option("--store", "store_url", default=None, metavar="URL", help=STORE_HELP)
def analysis_command(
    run_id: str,
    point: str | None,
    plot: bool,
    phase: str,
    out: str | None,
    as_json: bool,
    store_url: str | None,
) -> None:
    """Show what a run's analysis functions captured: a table per analysis point.

    \b
    Example:
      circuitflow attribute "The capital of the state containing Dallas is" \\
          --analysis configs/analysis/seed_walkthrough.yaml
      circuitflow analysis RUN_ID                        # every point
      circuitflow analysis RUN_ID influence_iteration    # one point
      circuitflow analysis RUN_ID --plot                 # RUN_ID-convergence-node.png
    """
    store = open_store(store_url)
    if store.catalog.read("runs", run_id).num_rows == 0:
        raise click.ClickException(f"no run {run_id!r} in the catalog at {store.location.url}")
    everything = read_analysis(store, run_id)
    if not everything:
        raise click.ClickException(
            f"run {run_id!r} has no analysis: run `circuitflow attribute PROMPT --analysis FILE` "
            "(e.g. configs/analysis/seed_walkthrough.yaml)"
        )
    captured = list(dict.fromkeys(r["point"] for r in everything))  # in attribution order
    rows = [r for r in everything if point is None or r["point"] == point]
    if not rows:
        near = difflib.get_close_matches(point, captured, n=1)
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise click.ClickException(
            f"run {run_id!r} captured nothing at {point!r}; {hint}it captured: "
            + ", ".join(captured)
        )
    if plot:
        _plot(store, run_id, phase, out)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    for name in dict.fromkeys(r["point"] for r in rows):
        print_point(name, [r for r in rows if r["point"] == name])


def _plot(store, run_id: str, phase: str, out: str | None) -> None:
    from circuitflow.flows.analysis_plot import ridgeline_png
    from circuitflow.flows.analysis_read import captured_series

    trace = captured_series(store, run_id, "influence_iteration", "term", phase=phase)
    if trace is None:
        raise click.ClickException(
            f"run {run_id!r} kept no influence terms of phase {phase!r}: attach `trace` with "
            "values [term] to influence_iteration (see configs/analysis/seed_walkthrough.yaml)"
        )
    path = Path(out or f"{run_id}-convergence-{phase}.png")
    graph = "whole graph" if phase == "node" else "node-pruned graph"
    ridgeline_png(trace, path, f"Influence series convergence, {graph} (run {run_id})")
    click.echo(f"wrote {path} ({trace.shape[0]} terms over {trace.shape[1]} nodes)", err=True)
