"""`circuitflow attribute --analysis FILE`: the config checked before anything runs, and what the
run's analysis did, printed after its report."""

from __future__ import annotations

import click

from circuitflow.flows.output import console


def load_config(path: str | None):
    """The analysis config of `--analysis FILE`, checked (its functions imported) before
    anything runs; a bad one is one line. None without a file."""
    if path is None:
        return None
    from circuitflow.tasks import PIPELINE
    from circuitflow.tasks.analysis_config import AnalysisConfigError, load_analysis

    try:
        return load_analysis(path, PIPELINE)
    except AnalysisConfigError as error:
        raise click.UsageError(str(error)) from None


def print_analysis_summary(outcome) -> None:
    """What fired, what failed, where to look (nothing for a run without analysis)."""
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
