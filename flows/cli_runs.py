"""The circuitflow commands that run flows: attribute, sweep, reprune, schedule (and, from their
own modules, export and view).

Parsing and printing only; the flows do the work. The run settings' options come from
`RunParams` (see `flows.options`). Prefect is configured before it is first imported, inside
each command.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from circuitflow.flows.cli_server import server
from circuitflow.flows.options import (
    DEVICE_OPTION,
    STORE_HELP,
    checked,
    memory_from,
    memory_options,
    params_from,
    run_options,
)
from circuitflow.flows.output import console
from circuitflow.flows.settings import configure

errors = Console(stderr=True, soft_wrap=True)


def positive(ctx, param, value):
    if value is not None and value < 1:
        raise click.BadParameter(f"must be a positive integer, got {value}")
    return value


def check_sweep_file(file: str, params, transcoders: str | None):
    """(runs, model named by the file) of a sweep file, or a usage error naming what is wrong
    in it, before anything starts."""
    from circuitflow.flows.sweep_files import SweepFileError, expand

    try:
        return expand(file, params, transcoders)
    except SweepFileError as error:
        raise click.UsageError(str(error)) from None


def sweep_models(setup, items: list, model: str | None) -> list:
    """The (setup, dtype) pairs whose models a sweep's runs load."""
    from circuitflow.tasks.runtime import Setup

    setups = {Setup.resolve(model, i.transcoders, setup.store, setup.device) for i in items}
    return sorted({(s, i.request.params.dtype) for s in setups for i in items}, key=str)


@contextlib.contextmanager
def store_errors() -> Iterator[None]:
    """A store that fails mid-run (disk full, say) ends the command with the store's one-line
    error, not a traceback through the flow engine."""
    from circuitflow.store import StoreError

    try:
        yield
    except StoreError as error:
        raise click.ClickException(str(error)) from None


def resolve_setup(model, transcoders, store_url, device=None, memory=None):
    """The run's setup, with the model, transcoders and device checked before any flow starts."""
    from circuitflow.store import StoreError
    from circuitflow.store.fs import check_writable
    from circuitflow.tasks.runtime import Setup, model_identity, transcoders_identity

    try:
        setup = Setup.resolve(model, transcoders, store_url, device, memory)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    try:
        check_writable(setup.store)
        model_identity(setup.model)
        transcoders_identity(setup.transcoders)
    except (ValueError, OSError, StoreError) as error:
        raise click.ClickException(str(error)) from None
    return setup


WORKERS_HELP = (
    "Worker processes: 1 runs in this process, more start a local Dask cluster "
    "[default: one per GPU with --device cuda; on CPU 2 with 4 or more cores, else 1]."
)


def default_workers(device: str, cores: int | None = None) -> int:
    """One worker per GPU on 'cuda' (each takes its own GPU), else `cpu_workers(cores)`."""
    from circuitflow.tasks.runtime import gpu_count

    return gpu_count(device) or cpu_workers(cores)


def cpu_workers(cores: int | None = None) -> int:
    """Workers for a CPU sweep: 2 when there are cores to share (4 or more); with fewer, the
    second process's imports, model and scheduler cost more than it gains (measured on 2 cores:
    benchmarks/RESULTS.md, issue 10). Known without importing torch."""
    if cores is None:
        cores = os.cpu_count() or 1
    return 2 if cores >= 4 else 1


def slug_name(ctx, param, value):
    """A slug names a file: letters, digits, '_', '-' and '.' only."""
    if value is not None and not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", value):
        raise click.BadParameter(f"use letters, digits, '_', '-' and '.', got {value!r}")
    return value


# --------------------------------------------------------------------------------- attribute


@click.command()
@click.argument("prompt", required=False)
@click.option("-p", "--prompt", "prompt_option", default=None, help="The prompt (or give PROMPT).")
@run_options
@memory_options
@click.option(
    "--graph_file_dir",
    "--graph-file-dir",
    "graph_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Also write the graph JSON and graph-metadata.json into this directory.",
)
@click.option(
    "--slug",
    default=None,
    callback=slug_name,
    help="The graph's name in --graph_file_dir [default: the run id].",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@click.option(
    "--analysis",
    "analysis_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    metavar="FILE",
    help="Analysis config (configs/analysis/*.yaml): functions attached to analysis points, captured into the catalog. Its module:function entries run code.",
)
def attribute(
    prompt: str | None,
    prompt_option: str | None,
    graph_dir: str | None,
    slug: str | None,
    as_json: bool,
    analysis_file: str | None,
    **kwargs,
) -> None:
    """Compute PROMPT's attribution graph, prune it, and record it in the catalog.

    Every stage is cached in the store: the same command again costs nothing, and a new
    threshold recomputes only pruning and export.

    \b
    Example:
      circuitflow attribute "The capital of the state containing Dallas is"
      circuitflow attribute "The capital of the state containing Dallas is" --node-threshold 0.6 --json
      circuitflow attribute "The capital of the state containing Dallas is" --analysis configs/analysis/seed_walkthrough.yaml
    """
    if (prompt is None) == (prompt_option is None):
        raise click.UsageError("give the prompt once: as PROMPT or as -p/--prompt")
    prompt = prompt if prompt is not None else prompt_option
    configure(kwargs["verbose"])
    from circuitflow.flows.settings import quiet_flows, start_server_early

    server_up = start_server_early()
    from circuitflow.flows.analysis_report import load_config, print_analysis_summary
    from circuitflow.flows.attribute import attribute_prompt
    from circuitflow.flows.report import run_report
    from circuitflow.tasks import RunRequest

    request = RunRequest(prompt, params_from(kwargs))
    config = load_config(analysis_file)
    memory = memory_from(kwargs)
    setup = resolve_setup(
        kwargs["model"], kwargs["transcoders"], kwargs["store_url"], kwargs["device"], memory
    )
    server_up()
    from circuitflow.flows.progress import StageProgress
    from circuitflow.tasks.progress import reporting

    with quiet_flows(), store_errors(), StageProgress() as shown, reporting(shown):
        outcome = attribute_prompt(setup, request, config)
    if outcome.status != "ok":
        if as_json:
            click.echo(
                json.dumps({"run_id": outcome.run_id, "status": "failed", "error": outcome.error})
            )
        else:
            errors.print(f"[red]error:[/red] {outcome.error}", highlight=False)
        sys.exit(1)
    report = run_report(setup, outcome) | ({"analysis": outcome.analysis} if config else {})
    if graph_dir:
        report["graph_file"] = str(write_to_graph_dir(setup, outcome.run_id, graph_dir, slug))
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        print_report(report)
        print_analysis_summary(outcome)


def write_to_graph_dir(setup, rid: str, graph_dir: str, slug: str | None) -> Path:
    """circuit-tracer's --graph_file_dir/--slug: the run's graph JSON, indexed in the directory."""
    from circuitflow.flows.cli_export import cannot_write
    from circuitflow.flows.graph_files import write_graph_dir
    from circuitflow.tasks.graph_document import graph_document
    from circuitflow.tasks.recorded import open_run

    doc, _ = graph_document(open_run(setup.store, rid), None)
    if slug:
        doc["metadata"]["slug"] = slug
    try:
        return write_graph_dir(doc, graph_dir)
    except (OSError, ValueError) as error:
        raise cannot_write(graph_dir, error) from None


def print_report(report: dict) -> None:
    console.print(f"[bold]{report['prompt']}[/bold]  (run {report['run_id']})", highlight=False)
    console.print(f"model {report['model']}, transcoders {report['transcoders']}", highlight=False)
    logits = Table(title="targets", header_style="bold")
    for name in ("target", "kind", "p or weight", "value"):
        logits.add_column(name, justify="left" if name in ("target", "kind") else "right")
    for row in report["top_logits"]:
        name = row["name"] if row["name"] is not None else row["token"]  # older catalogs
        weight = row["weight"] if row["weight"] is not None else row["prob"]
        value = "" if row["value"] is None else f"{row['value']:.3f}"
        logits.add_row(repr(name), row["kind"] or "token", f"{weight:.3f}", value)
    console.print(logits)
    console.print(
        f"{report['n_active_features']} active features, {report['n_selected_features']} feature "
        f"nodes{' (the feature budget cut)' if report.get('feature_budget_cut') else ''} -> kept {report['n_nodes_kept']} nodes and {report['n_edges_kept']} edges "
        f"(node threshold {report['node_threshold']}, edge threshold {report['edge_threshold']})",
        highlight=False,
    )
    console.print(
        f"replacement score {report['replacement_score']:.3f}, "
        f"completeness score {report['completeness_score']:.3f}",
        highlight=False,
    )
    features = Table(title="most influential features", header_style="bold")
    for name in ("layer", "pos", "token", "feature", "activation", "influence"):
        features.add_column(name, justify="left" if name == "token" else "right")
    for f in report["top_features"]:
        features.add_row(
            str(f["layer"]),
            str(f["pos"]),
            repr(f["token"]),
            str(f["feature"]),
            f"{f['activation']:.3f}",
            f"{f['influence']:.4f}",
        )
    console.print(features)
    stages = Table(title="stages", header_style="bold")
    for name in ("stage", "status", "seconds"):
        stages.add_column(name, justify="right" if name == "seconds" else "left")
    for s in report["stages"]:
        stages.add_row(s["stage"], s["status"], f"{s['seconds']:.3f}")
    console.print(stages)
    console.print(f"graph JSON (Neuronpedia format): {report['graph_json']}", highlight=False)
    console.print(f"see it: circuitflow view {report['run_id']}", highlight=False)
    console.print(
        f'query it: circuitflow query "SELECT layer, pos, token, feature, influence FROM nodes '
        f"WHERE run_id = '{report['run_id']}' AND kept ORDER BY influence DESC LIMIT 10\"",
        highlight=False,
    )


# ------------------------------------------------------------------------------------- sweep


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@run_options
@click.option(
    "--workers",
    type=int,
    default=None,
    callback=positive,
    help=WORKERS_HELP,
)
@click.option(
    "--dask-address", default=None, metavar="ADDR", help="Use an existing Dask cluster instead."
)
@click.option("--json", "as_json", is_flag=True, help="Print the outcome of every run as JSON.")
def sweep(
    file: str, workers: int | None, dask_address: str | None, as_json: bool, **kwargs
) -> None:
    """Attribute every prompt of FILE with every combination of its grid.

    FILE is a text file (one prompt a line), JSONL or CSV with a `prompt` column, or a sweep
    YAML (see configs/sweeps/). Interrupted, the same command resumes: stored stages are not
    recomputed. A failing prompt is recorded with its error and the sweep goes on.

    \b
    Example:
      circuitflow sweep configs/sweeps/capitals.yaml --workers 2
    """
    configure(kwargs["verbose"])
    from circuitflow.flows.cluster import WarmCluster
    from circuitflow.flows.compute_process import ComputeProcess, using
    from circuitflow.flows.settings import start_server_early

    server_up = start_server_early()
    with contextlib.ExitStack() as stack:
        # A local cluster, or one worker's compute process, starts now, while the Prefect
        # server starts and this process imports. (Without --workers, how many depends on the
        # GPUs: known once torch is imported; a guess of one worker is undone then.)
        cluster = compute = None
        if not dask_address and workers and workers > 1:
            cluster = stack.enter_context(WarmCluster(workers))
        elif not dask_address and (workers or cpu_workers()) == 1:
            compute = stack.enter_context(ComputeProcess())
        from circuitflow.flows.sweep import dask_runner
        from circuitflow.flows.sweep import sweep as sweep_flow

        params = params_from(kwargs)
        setup = resolve_setup(
            kwargs["model"], kwargs["transcoders"], kwargs["store_url"], kwargs["device"]
        )
        items, file_model = check_sweep_file(file, params, kwargs["transcoders"])
        workers = workers or default_workers(setup.device)
        in_process = workers == 1 and not dask_address
        models = sweep_models(setup, items, kwargs["model"] and setup.model or file_model)
        if in_process:  # the model loads in the compute process while Prefect starts
            compute = compute or stack.enter_context(ComputeProcess())
            compute.warm(models)
            stack.enter_context(using(compute))
            flow = sweep_flow
        else:
            if compute is not None:
                compute.close()
            if cluster is None and not dask_address:
                cluster = stack.enter_context(WarmCluster(workers))
            if cluster is not None:
                cluster.warm(models)
            address = dask_address or cluster.address
            flow = sweep_flow.with_options(task_runner=dask_runner(workers, address))
        server_up()
        outcomes = run_sweep(flow, file, setup, kwargs, params, as_json, workers, in_process)
    if as_json:
        click.echo(json.dumps(outcomes, indent=2))
        return
    ok = [o for o in outcomes if o["status"] == "ok"]
    failed = [o for o in outcomes if o["status"] != "ok"]
    console.print(
        f"{len(outcomes)} runs: {len(ok)} ok ({sum(o['cached'] for o in ok)} entirely cached), "
        f"{len(failed)} failed; store {setup.store}",
        highlight=False,
    )
    for o in failed:
        prompt = o["prompt"] if len(o["prompt"]) <= 60 else o["prompt"][:60] + "..."
        console.print(f"[red]failed[/red] {prompt!r}: {o['error']}", highlight=False)


def run_sweep(flow, file, setup, kwargs, params, as_json, workers, in_process) -> list[dict]:
    """The sweep flow's outcomes (one dict a run)."""
    from circuitflow.flows.settings import quiet_flows

    with quiet_flows(), store_errors():
        return flow(
            **sweep_parameters(file, setup, kwargs, params, workers, in_process, not as_json)
        )


def sweep_parameters(file, setup, kwargs, params, workers, in_process, show_progress) -> dict:
    """The sweep flow's parameters, for a run now (`sweep`) or a deployment (`schedule`)."""
    return {
        "file": str(Path(file).resolve()),
        "model": kwargs["model"] and setup.model,
        "transcoders": kwargs["transcoders"],
        "store": setup.store,
        "params": params.to_dict(),
        "device": setup.device,
        "show_progress": show_progress,
        "workers": workers,
        "in_process": in_process,
    }


# ------------------------------------------------------------------------------------ reprune


@click.command()
@click.argument("run_ids", nargs=-1, required=True)
@click.option(
    "--node-threshold",
    type=float,
    callback=checked("node_threshold"),
    help="New node threshold [default: the run's].",
)
@click.option(
    "--edge-threshold",
    type=float,
    callback=checked("edge_threshold"),
    help="New edge threshold [default: the run's].",
)
@click.option("--store", "store_url", default=None, metavar="URL", help=STORE_HELP)
@DEVICE_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the new runs as JSON.")
def reprune(run_ids, node_threshold, edge_threshold, store_url, device, as_json) -> None:
    """Prune recorded runs again at new thresholds (only prune and export recompute).

    \b
    Example:
      circuitflow reprune 20d56149989e41d4c707 --node-threshold 0.6
    """
    configure()
    from circuitflow.attribution.params import ParamError
    from circuitflow.flows.report import run_report
    from circuitflow.flows.reprune import UnknownRunError, stored_request
    from circuitflow.flows.reprune import reprune as reprune_flow
    from circuitflow.flows.settings import quiet_flows
    from circuitflow.store import default_root

    if node_threshold is None and edge_threshold is None:
        raise click.UsageError("give --node-threshold, --edge-threshold or both")
    from circuitflow.tasks.runtime import resolve_device

    root = default_root(store_url)
    try:
        device = resolve_device(device)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    try:
        with quiet_flows():
            outcomes = reprune_flow(list(run_ids), root, node_threshold, edge_threshold, device)
    except (UnknownRunError, ParamError) as error:
        raise click.UsageError(str(error)) from None
    reports = [run_report(stored_request(root, o.run_id, imported_ok=True)[0], o) for o in outcomes]
    if as_json:
        click.echo(json.dumps(reports, indent=2))
        return
    for old, report in zip(run_ids, reports, strict=True):
        console.print(
            f"{old} -> {report['run_id']}: kept {report['n_nodes_kept']} nodes, "
            f"{report['n_edges_kept']} edges; stages computed: "
            + ", ".join(s["stage"] for s in report["stages"] if s["status"] == "computed"),
            highlight=False,
        )


# ----------------------------------------------------------------------------------- schedule


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--cron", required=True, metavar="EXPR", help='Cron schedule, e.g. "0 3 * * *".')
@click.option("--name", default=None, help="Deployment name [default: sweep-<file stem>].")
@click.option("--workers", type=int, default=None, callback=positive, help=WORKERS_HELP)
@click.option("--dask-address", default=None, metavar="ADDR")
@run_options
def schedule(
    file: str, cron: str, name: str | None, workers: int, dask_address: str | None, **kwargs
) -> None:
    """Serve FILE's sweep as a Prefect deployment on a cron schedule.

    Needs a running Prefect server (runs, schedules and deployments live there).

    \b
    Example:
      prefect server start                                   # in one terminal
      export PREFECT_API_URL=http://127.0.0.1:4200/api
      circuitflow schedule configs/sweeps/capitals.yaml --cron "0 3 * * *"

    The command keeps running and starts each scheduled sweep; stop it with Ctrl-C.
    """
    if not os.environ.get("PREFECT_API_URL"):
        raise click.UsageError(
            "schedules need a running Prefect server: start one with `prefect server start` "
            "and set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api)"
        )
    configure(kwargs["verbose"])
    from prefect.schedules import Cron

    from circuitflow.flows.sweep import dask_runner
    from circuitflow.flows.sweep import sweep as sweep_flow

    params = params_from(kwargs)
    setup = resolve_setup(
        kwargs["model"], kwargs["transcoders"], kwargs["store_url"], kwargs["device"]
    )
    check_sweep_file(file, params, kwargs["transcoders"])
    workers = workers or default_workers(setup.device)
    name = name or f"sweep-{Path(file).stem}"
    try:
        Cron(cron)
    except ValueError as error:
        raise click.BadParameter(f"{cron!r} is not a cron expression ({error})") from None
    console.print(
        f"serving deployment 'sweep/{name}' on cron {cron!r}; Ctrl-C to stop", highlight=False
    )
    in_process = workers == 1 and not dask_address
    flow = (
        sweep_flow
        if in_process
        else sweep_flow.with_options(task_runner=dask_runner(workers, dask_address))
    )
    flow.serve(
        name=name,
        cron=cron,
        parameters=sweep_parameters(file, setup, kwargs, params, workers, in_process, False),
        print_starting_message=False,
    )


from circuitflow.flows.cli_export import export  # noqa: E402
from circuitflow.flows.cli_view import view  # noqa: E402

COMMANDS = [attribute, sweep, reprune, export, schedule, view, server]
# Commands whose module is heavy to import, loaded only when they run (or show their help).
FEATURE_COMMANDS = {  # what features mean, what graphs share (flows/cli_features.py)
    name: ("circuitflow.flows.cli_features", name, short)
    for name, short in (
        ("features", "Compute feature dashboards (contexts, statistics, logits, labels)."),
        ("label", "Label a feature (stored with author and time; wins over automatic labels)."),
        ("circuits", "Rank features and edges on kept paths across runs; similar runs."),
    )
}
LAZY_COMMANDS = {
    "train-demo": (
        "circuitflow.flows.train_demo",
        "train_demo_command",
        "Train the built-in model and its transcoders; write MODEL_CARD.md.",
    ),
    "analysis": (
        "circuitflow.flows.cli_analysis",
        "analysis_command",
        "Show what a run's analysis functions captured: a table per point, --plot.",
    ),
    "import": (
        "circuitflow.flows.cli_import",
        "import_command",
        "Import circuit-tracer graph files (.pt) as runs.",
    ),
    **FEATURE_COMMANDS,
}
