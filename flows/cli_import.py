"""`circuitflow import`: circuit-tracer graph files (`Graph.to_pt`) brought into the store and
the catalog as runs, so that graphs made before circuitflow join the SQL.

Every file is read and checked before anything is written: one bad file (not a `.pt`, not a
circuit-tracer graph, truncated, inconsistent) ends the command with one line naming it, and
the store is left as it was. The runs are driven by `tasks.imports` (no model, no Prefect
server: nothing here is scheduled or recomputed upstream).
"""

from __future__ import annotations

import json

import click
from rich.console import Console

from circuitflow.flows.options import STORE_HELP, param_option
from circuitflow.flows.output import console

errors = Console(stderr=True, soft_wrap=True)


@click.command("import")
@click.argument("graph_files", nargs=-1, required=True, metavar="GRAPH.pt...")
@param_option("node_threshold")
@param_option("edge_threshold")
@click.option("--store", "store_url", default=None, metavar="URL", help=STORE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the imported runs as JSON.")
def import_command(graph_files, node_threshold, edge_threshold, store_url, as_json) -> None:
    """Import circuit-tracer graph files (.pt, from Graph.to_pt) as runs.

    Each file becomes a run with its catalog rows (runs, nodes, edges, logits,
    influence_traces, stage_events) and its exported graph, pruned here at the thresholds
    given (those of `attribute`). Importing the same file at other thresholds re-prunes it
    (so does `circuitflow reprune`). An imported run cannot recompute anything before
    influence, validate, steer or build feature dashboards: its model is not here. The files
    are read with torch's weights-only unpickler: a file that would run code is refused.

    \b
    Example:
      circuitflow import graphs/dallas.pt graphs/austin.pt --json
    """
    from circuitflow.attribution import RunParams
    from circuitflow.flows.report import run_report
    from circuitflow.store import StoreError, default_root
    from circuitflow.tasks.imports import import_graph, read_graph_file

    root = default_root(store_url)
    files = []
    for path in graph_files:
        try:
            files.append(read_graph_file(path))
        except ValueError as error:
            raise click.ClickException(f"{error} (nothing imported)") from None
    params = RunParams(node_threshold=node_threshold, edge_threshold=edge_threshold)
    reports = []
    for file in files:
        try:
            outcome = import_graph(file, root, params)
        except StoreError as error:
            raise click.ClickException(str(error)) from None
        reports.append(run_report(file.setup(root), outcome) | {"source": file.path})
    if as_json:
        click.echo(json.dumps(reports, indent=2))
        return
    for report in reports:
        console.print(
            f"{report['source']} -> run {report['run_id']}: {report['model']}, "
            f"kept {report['n_nodes_kept']} nodes, {report['n_edges_kept']} edges",
            highlight=False,
        )
