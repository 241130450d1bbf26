"""`circuitflow analysis RUN_ID [POINT]`: what analysis functions captured in a run.

A table per analysis point, in the order attribution reaches them (as the seed notebook prints
its analysis points), read from the catalog's `analysis` table; `--plot` draws the influence
series' convergence from the captured terms. The run must have been made with
`circuitflow attribute ... --analysis FILE`.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from circuitflow.flows.options import STORE_HELP
from circuitflow.flows.output import cell, console


def load_config(path: str | None):
    """The analysis config of `attribute --analysis FILE`, checked (its functions imported)
    before anything runs; a bad one is one line."""
    if path is None:
        return None
    from circuitflow.tasks import PIPELINE
    from circuitflow.tasks.analysis_config import AnalysisConfigError, load_analysis

    try:
        return load_analysis(path, PIPELINE)
    except AnalysisConfigError as error:
        raise click.UsageError(str(error)) from None


def print_analysis_summary(outcome) -> None:
    """After `attribute --analysis`: what fired, what failed, where to look."""
    report = outcome.analysis
    if report is None:
        return
    fired = ", ".join(f"{p} x{n}" for p, n in report["fired"].items()) or "nothing"
    console.print(
        f"analysis ({report['config']}): {report['values']} values captured; fired: {fired}",
        highlight=False,
    )
    if report["not_fired"]:
        console.print(f"not fired in this run: {', '.join(report['not_fired'])}", highlight=False)
    for failure in report["failures"]:
        console.print(f"[red]analysis failure:[/red] {failure}", highlight=False)
    console.print(
        f"see them: circuitflow analysis {outcome.run_id} [POINT] [--plot]", highlight=False
    )


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
    from circuitflow.attribution.analysis import POINTS

    declared = POINTS.get(point)
    stages = sorted({r["stage"] or "" for r in rows})
    title = f"{point}  [stage {', '.join(stages)}]"
    caption = declared.when if declared else None
    table = Table(title=title, caption=caption, header_style="bold", title_justify="left")
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
    from circuitflow.attribution.analysis import POINTS
    from circuitflow.flows.cli_store import open_store
    from circuitflow.tasks.analysis_table import read_analysis

    if point is not None and point not in POINTS:
        near = difflib.get_close_matches(point, list(POINTS), n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise click.UsageError(
            f"unknown analysis point {point!r}{hint}; see docs/analysis-points.md"
        )
    store = open_store(store_url)
    if store.catalog.read("runs", run_id).num_rows == 0:
        raise click.ClickException(f"no run {run_id!r} in the catalog at {store.location.url}")
    everything = read_analysis(store, run_id)
    if not everything:
        raise click.ClickException(
            f"run {run_id!r} has no analysis: run `circuitflow attribute PROMPT --analysis FILE` "
            "(e.g. configs/analysis/seed_walkthrough.yaml)"
        )
    rows = [r for r in everything if point is None or r["point"] == point]
    if not rows:
        captured = ", ".join(dict.fromkeys(r["point"] for r in everything))
        raise click.ClickException(
            f"run {run_id!r} captured nothing at {point!r}; it captured: {captured}"
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
    from circuitflow.tasks.analysis_table import captured_series

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
