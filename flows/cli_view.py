"""`circuitflow view`: look at a run's graph in a browser, served from this machine only, or
written as one self-contained HTML file."""

from __future__ import annotations

import sys

import click
from rich.console import Console

from circuitflow.flows.cli_export import cannot_write, recorded_run
from circuitflow.flows.options import STORE_HELP

out = Console(soft_wrap=True)


def _port(ctx, param, value):
    if value is not None and not 0 <= value <= 65535:
        raise click.BadParameter(f"must be 0 (any free port) to 65535, got {value}")
    return value


@click.command()
@click.argument("run_id")
@click.option(
    "--port",
    type=int,
    default=8765,
    show_default=True,
    callback=_port,
    help="Port on 127.0.0.1 (0: any free port).",
)
@click.option(
    "--static",
    "static",
    is_flag=True,
    help="Write one self-contained HTML file (with -o) instead of serving; its sliders step "
    "through thresholds computed into it.",
)
@click.option("-o", "--out", "out_file", type=click.Path(), default=None, help="File for --static.")
@click.option("--store", "store_url", default=None, metavar="URL", help=STORE_HELP)
def view(run_id: str, port: int, static: bool, out_file: str | None, store_url: str | None) -> None:
    """Show a run's attribution graph in your browser, with live re-pruning.

    The page draws the pruned graph (token positions across, layers up), shows each node's
    details on hover, re-prunes when you move the threshold sliders, lets you pin nodes, group
    them into supernodes and save the subgraph (into the catalog table saved_subgraphs), and
    plots the influence trace, the influence distribution and the cumulative influence curve.
    It is served on 127.0.0.1 only; stop it with Ctrl-C.

    \b
    Example:
      circuitflow view 20d56149989e41d4c707
      circuitflow view 20d56149989e41d4c707 --static -o dallas.html
    """
    if out_file and not static:
        raise click.UsageError("-o writes a static page: add --static (or drop -o to serve)")
    if static and not out_file:
        raise click.UsageError("--static needs -o FILE")
    if static:
        from circuitflow.flows.graph_files import check_writable

        try:
            check_writable(out_file)
        except OSError as error:
            raise cannot_write(out_file, error) from None
    from circuitflow.tasks.recorded import UnknownRunError

    run = recorded_run(store_url, run_id)
    from circuitflow.flows.viewer.data import RunView

    try:
        data = RunView(run)
    except UnknownRunError as error:
        raise click.ClickException(str(error)) from None
    if static:
        write_static(data, out_file)
    else:
        serve(data, port)


def write_static(data, out_file: str) -> None:
    from pathlib import Path

    from circuitflow.flows.graph_files import write_atomic
    from circuitflow.flows.viewer.page import static_html
    from circuitflow.tasks.subgraphs import saved_subgraphs

    saved = [s.to_json() for s in saved_subgraphs(data.run.store, data.run.run_id)]
    html = static_html(data, saved).encode()
    try:
        write_atomic(Path(out_file), html)
    except OSError as error:
        raise cannot_write(out_file, error) from None
    out.print(
        f"wrote {out_file} ({len(html) / 1e6:.1f} MB): open it in any browser", highlight=False
    )


def serve(data, port: int) -> None:
    from circuitflow.flows.viewer.server import ViewerServer

    try:
        server = ViewerServer(data, port)
    except OSError as error:
        raise click.ClickException(
            f"cannot serve on 127.0.0.1:{port}: {error.strerror or error} "
            "(pick another with --port, or --port 0 for any free one)"
        ) from None
    out.print(
        f"viewing run {data.run.run_id} at {server.address}  (127.0.0.1 only; Ctrl-C stops)",
        highlight=False,
    )
    sys.stdout.flush()  # the address must reach a pipe (a script, a test) at once
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
