"""`circuitflow export`: a recorded run's graph as a file that circuit-tracer and Neuronpedia
read as their own, with the catalog's feature labels and a saved subgraph.

Also `recorded_run`, which turns a run id typed by a person into the run, or one clear line.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from circuitflow.flows.options import STORE_HELP

errors = Console(stderr=True, soft_wrap=True)


def recorded_run(store_url: str | None, rid: str):
    """The recorded run `rid` of the store (a `RunContext`), or a one-line ClickException."""
    from circuitflow.store import default_root
    from circuitflow.tasks.recorded import UnknownRunError, check_run_id, open_run

    root = default_root(store_url)
    try:
        check_run_id(rid)
        from circuitflow.store import Store

        if not Store(root).fs.exists(root):
            raise UnknownRunError(
                f"no store at {root} (runs create it; pick another with --store or "
                "$CIRCUITFLOW_STORE)"
            )
        return open_run(root, rid)
    except (UnknownRunError, OSError) as error:
        raise click.ClickException(str(error)) from None


def cannot_write(where: str | Path, error: Exception) -> click.ClickException:
    reason = getattr(error, "strerror", None) or str(error)
    return click.ClickException(f"cannot write {where}: {reason}")


@click.command()
@click.argument("run_id")
@click.option(
    "-o",
    "--out",
    type=click.Path(),
    default=None,
    help="Write the graph JSON to this file [default: stdout].",
)
@click.option(
    "--graph_file_dir",
    "--graph-file-dir",
    "graph_dir",
    type=click.Path(),
    default=None,
    help="Write RUN_ID.json and the graph-metadata.json index into this directory "
    "(what `circuit-tracer start-server --graph_file_dir DIR` serves).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["neuronpedia"]),
    default="neuronpedia",
    show_default=True,
    help="The graph format: Neuronpedia's JSON Schema, which circuit-tracer's frontend reads.",
)
@click.option(
    "--subgraph",
    default=None,
    metavar="NAME",
    help="The saved subgraph to export as qParams [default: the newest saved, if any].",
)
@click.option(
    "--feature-json-url",
    default=None,
    metavar="URL",
    help="Where the frontends fetch feature details (metadata.feature_details."
    "feature_json_base_url): a place serving `circuitflow features --features-dir` files.",
)
@click.option("--store", "store_url", default=None, metavar="URL", help=STORE_HELP)
def export(
    run_id: str,
    out: str | None,
    graph_dir: str | None,
    fmt: str,
    subgraph: str | None,
    feature_json_url: str | None,
    store_url: str | None,
) -> None:
    """Write a run's pruned graph as Neuronpedia / circuit-tracer graph JSON.

    Feature labels come from the catalog where they exist, and a saved subgraph (pinned nodes
    and supernodes, see `circuitflow view`) goes into qParams.

    \b
    Example:
      circuitflow export 20d56149989e41d4c707 -o dallas.json
      circuitflow export 20d56149989e41d4c707 --graph_file_dir graphs/
      circuit-tracer start-server --graph_file_dir graphs/
    """
    if out and graph_dir:
        raise click.UsageError("give -o FILE or --graph_file_dir DIR, not both")
    from circuitflow.flows.graph_files import document_bytes, write_graph_dir, write_graph_file
    from circuitflow.tasks.graph_document import graph_document
    from circuitflow.tasks.recorded import UnknownRunError
    from circuitflow.tasks.subgraphs import SubgraphError

    run = recorded_run(store_url, run_id)
    try:
        doc, chosen = graph_document(run, subgraph, feature_json_url=feature_json_url)
    except (UnknownRunError, SubgraphError) as error:
        raise click.ClickException(str(error)) from None
    note = f" with saved subgraph {chosen.name!r} as qParams" if chosen else ""
    if graph_dir:
        try:
            path = write_graph_dir(doc, graph_dir)
        except (OSError, ValueError) as error:
            raise cannot_write(graph_dir, error) from None
        errors.print(
            f"wrote {path} and its entry in {Path(graph_dir) / 'graph-metadata.json'}{note}; "
            f"serve them with: circuit-tracer start-server --graph_file_dir {graph_dir}",
            highlight=False,
        )
    elif out:
        try:
            size = write_graph_file(doc, out)
        except OSError as error:
            raise cannot_write(out, error) from None
        errors.print(f"wrote {out} ({size} bytes){note}", highlight=False)
    else:
        click.echo(document_bytes(doc).decode())
