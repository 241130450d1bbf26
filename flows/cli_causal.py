"""The circuitflow commands that check graphs causally: validate (stored) and steer (asked).

Parsing and printing only: `flows.validate` and `flows.steer` do the work. Registered in
`flows.cli` beside `flows.cli_runs.COMMANDS`; heavy imports happen inside the commands.
"""

from __future__ import annotations

import json
import re
import sys

import click
from rich.table import Table

from circuitflow.flows.options import STORE_HELP, setup_options
from circuitflow.flows.output import console
from circuitflow.flows.settings import configure

RUN_ID = re.compile(r"^[0-9a-f]{20}$")


# ------------------------------------------------------------------------------------ validate


@click.command()
@click.argument("run_ids", nargs=-1, required=True)
@click.option("--store", "store_url", default=None, metavar="URL", help=STORE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print every run's curve as JSON.")
def validate(run_ids: tuple[str, ...], store_url: str | None, as_json: bool) -> None:
    """Check recorded runs causally, and store the checks (table `interventions`).

    Zero-ablates each run's top-k kept features (k = 1, 2, 4, ..., all) and as many random
    active features in several draws, and records how the answer moved. The validated run is
    the run with its setting `validate` on: a new run id (as `attribute --validate` gives),
    computing only the checks. Validating again costs nothing.

    \b
    Example:
      circuitflow validate 20d56149989e41d4c707
      circuitflow query "SELECT k, selection, avg(logit_change) FROM interventions GROUP BY ALL"
    """
    configure()
    from circuitflow.flows.reprune import UnknownRunError
    from circuitflow.flows.settings import quiet_flows
    from circuitflow.flows.validate import validate_runs, validation_report
    from circuitflow.store import default_root

    root = default_root(store_url)
    try:
        with quiet_flows():
            outcomes = validate_runs(list(run_ids), root)
    except UnknownRunError as error:
        raise click.UsageError(str(error)) from None
    reports = [
        (validation_report(root, o) if o.status == "ok" else {"run_id": o.run_id, "error": o.error})
        | {"validated": old}
        for old, o in zip(run_ids, outcomes, strict=True)
    ]
    if as_json:
        click.echo(json.dumps(reports, indent=2))
    else:
        for report in reports:
            print_validation(report)
    if any("curve" not in r for r in reports):
        sys.exit(1)


def print_validation(report: dict) -> None:
    if "curve" not in report:
        console.print(f"[red]failed[/red] {report['run_id']}: {report['error']}", highlight=False)
        return
    computed = [s["stage"] for s in report["stages"] if s["status"] == "computed"]
    console.print(
        f"[bold]{report['prompt']}[/bold]  (run {report['validated']} -> validated run "
        f"{report['run_id']}; computed: {', '.join(computed) or 'nothing, all stored'})",
        highlight=False,
    )
    table = Table(
        title=f"ablating features: change of {report['target']!r} "
        f"(clean {report['target_value']:.3f})",
        header_style="bold",
    )
    for name in ("k", "top-k", "random-k (mean)", "random draws"):
        table.add_column(name, justify="left" if name == "random draws" else "right")
    for point in report["curve"]:
        mean = point["random_logit_change_mean"]
        table.add_row(
            str(point["k"]),
            f"{point['top_logit_change']:+.3f}",
            "" if mean is None else f"{mean:+.3f}",
            " ".join(f"{x:+.2f}" for x in point["random_logit_changes"]),
        )
    console.print(table)
    verdict = report["top_drops_more"]
    if verdict is not None:
        console.print(
            f"top {report['audit_k']} drop the answer "
            + ("more" if verdict else "[red]no more[/red]")
            + f" than {report['audit_k']} random features",
            highlight=False,
        )


# ------------------------------------------------------------------------------------- steer


def _settings(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> list:
    from circuitflow.flows.steer import parse_setting

    try:
        return [parse_setting(text) for text in value]
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@click.command()
@click.argument("source", metavar="RUN_ID|PROMPT")
@click.option(
    "--set",
    "settings",
    multiple=True,
    required=True,
    metavar="LAYER:POS:FEATURE=VALUE",
    callback=_settings,
    help="Set a feature to a value (0 ablates); POS+ means every position from POS on, "
    "generated ones too. Repeatable.",
)
@click.option(
    "--generate",
    "n_new",
    type=click.IntRange(min=0),
    default=0,
    help="Also continue the prompt greedily for N tokens, clean and steered.",
)
@click.option("--watch", multiple=True, metavar="TOKEN", help="Show this token too. Repeatable.")
@click.option("--top", "n_top", type=click.IntRange(min=1), default=5, show_default=True)
@click.option(
    "--free-attention",
    is_flag=True,
    help="Let attention patterns change [default: frozen at the clean run's, as in the graph].",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@setup_options
def steer(source, settings, n_new, watch, n_top, free_attention, as_json, **kwargs) -> None:
    """Set features to values and see the prediction move: clean versus steered.

    SOURCE is a recorded run's id (its prompt, model and transcoders) or a prompt.

    \b
    Example:
      circuitflow steer "The capital of the state containing Dallas is" \\
          --set 3:8:128=0 --set 3:8:366=1.97 --watch Olympia --generate 5
    """
    configure(kwargs["verbose"])
    from circuitflow.attribution import TargetError
    from circuitflow.attribution.intervene import InterventionError
    from circuitflow.attribution.tokens import PromptError
    from circuitflow.flows.steer import steer_report
    from circuitflow.tasks.runtime import loaded

    setup, prompt = _source(source, kwargs)
    try:
        report = steer_report(
            loaded(setup).replacement,
            prompt,
            settings,
            freeze_attention=not free_attention,
            watch=watch,
            n_top=n_top,
            n_new=n_new,
        )
    except (InterventionError, PromptError, TargetError) as error:
        raise click.ClickException(str(error)) from None
    report |= {"model": setup.model_label, "transcoders": setup.transcoders_label}
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        print_steering(report)


def _source(source: str, kwargs: dict):
    """(setup, prompt) of a recorded run's id, or of a prompt with the setup options."""
    from circuitflow.flows.cli_runs import resolve_setup
    from circuitflow.flows.reprune import UnknownRunError, stored_request
    from circuitflow.store import default_root

    if RUN_ID.match(source):
        try:
            setup, request = stored_request(default_root(kwargs["store_url"]), source)
        except UnknownRunError as error:
            raise click.UsageError(str(error)) from None
        return setup, request.prompt
    return resolve_setup(kwargs["model"], kwargs["transcoders"], kwargs["store_url"]), source


def print_steering(report: dict) -> None:
    console.print(
        f"[bold]{report['prompt']}[/bold]  (model {report['model']}, transcoders "
        f"{report['transcoders']}, attention "
        f"{'frozen' if report['freeze_attention'] else 'free'})",
        highlight=False,
    )
    for s in report["settings"]:
        where = f"positions {s['pos']}+" if s["onward"] else f"position {s['pos']}"
        was = ", ".join(f"{v + 0.0:.3f}" for v in s["clean"])  # + 0.0: no "-0.000"
        console.print(
            f"set layer {s['layer']} {where} {s['tokens']} feature {s['feature']}: "
            f"{was} -> {s['value']:g}",
            highlight=False,
        )
    table = Table(header_style="bold")
    for name in ("", "clean", "p", "logit", "steered", "p ", "logit "):
        table.add_column(name, justify="right" if name.strip() in ("p", "logit") else "left")
    clean, steered = report["clean"], report["steered"]
    for rank, (a, b) in enumerate(zip(clean["top"], steered["top"], strict=True), 1):
        table.add_row(str(rank), *_cells(a), *_cells(b))
    for a, b in zip(clean["watch"], steered["watch"], strict=True):
        table.add_row("watch", *_cells(a), *_cells(b))
    console.print(table)
    if "generated" in clean:
        console.print(f"clean:   {report['prompt']} [bold]{clean['generated']}[/bold]")
        console.print(f"steered: {report['prompt']} [bold]{steered['generated']}[/bold]")


def _cells(row: dict) -> tuple[str, str, str]:
    return repr(row["token"]), f"{row['prob']:.4f}", f"{row['logit']:.3f}"


CAUSAL_COMMANDS = [validate, steer]
