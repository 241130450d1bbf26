"""The circuitflow command line. Thin: parsing and printing here, the work in the packages."""

from __future__ import annotations

import importlib
import re
import sys
from typing import TYPE_CHECKING

from circuitflow.flows.settings import configure

configure()  # before Prefect is first imported: a quiet, project-local Prefect

import click
from rich.table import Table

from circuitflow.flows.cli_causal import CAUSAL_COMMANDS
from circuitflow.flows.cli_runs import COMMANDS, LAZY_COMMANDS
from circuitflow.flows.options import STORE_HELP
from circuitflow.flows.output import (
    console,
    head,
    human_bytes,
    print_table,
    write_csv,
    write_json,
)

if TYPE_CHECKING:
    from circuitflow.store import Store

store_option = click.option("--store", "store_url", metavar="URL", default=None, help=STORE_HELP)


class LazyGroup(click.Group):
    """A command group that imports some commands' modules only when they are used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *LAZY_COMMANDS])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in LAZY_COMMANDS:
            module, attr, _ = LAZY_COMMANDS[name]
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, cmd.get_short_help_str(70)) for name, cmd in self.commands.items()]
        rows += [(name, short) for name, (_, _, short) in LAZY_COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(sorted(rows))


@click.group(cls=LazyGroup)
def main() -> None:
    """circuitflow: attribution graphs as a cached workflow."""


def open_store(url: str | None) -> Store:
    """The store at `url`, or a one-line error. Its tables are those its writers recorded, so
    these commands import neither torch nor the pipeline."""
    from circuitflow.store import Store

    try:
        store = Store(url)
        found = store.fs.exists(store.root)
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot open store {url or ''}: {exc}") from None
    if not found:
        raise click.ClickException(
            f"no store at {store.location.url} (runs create it; pick another with --store "
            "or $CIRCUITFLOW_STORE)"
        )
    return store


def parse_size(text: str) -> int:
    """Bytes from '500MB', '50GB', '2TB', '1024' (powers of 1024, as `store du` prints)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)B?\s*", text, re.IGNORECASE)
    if not match:
        raise click.BadParameter(f"{text!r} is not a size like 500MB or 50GB")
    return int(float(match[1]) * 1024 ** "_KMGT".index(match[2].upper() or "_"))


def parse_duration(text: str) -> float:
    """Seconds from '90', '30s', '15m', '2h' or '7d'."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise click.BadParameter(f"{text!r} is not a duration like 30s, 15m, 2h or 7d")
    return float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]


@main.command()
@click.argument("sql")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
@click.option("--limit", type=int, default=None, help="At most this many rows [table: 50].")
@store_option
def query(sql: str, fmt: str, limit: int | None, store_url: str | None) -> None:
    """Run a read-only SQL query over the catalog tables.

    Tables: runs, nodes, edges, logits, influence_traces, stage_events, interventions (see the
    README).

    \b
    Example:
      circuitflow query "SELECT prompt, n_nodes_kept, replacement_score FROM runs"
    """
    from circuitflow.store import QuerySession, StoreError

    store = open_store(store_url)
    try:
        with QuerySession(store.catalog) as session:
            reader = session.batches(sql)
            if fmt == "csv":
                write_csv(reader, sys.stdout.buffer, limit)
            elif fmt == "json":
                write_json(reader, sys.stdout, limit)
            else:
                rows, total = head(reader, 50 if limit is None else limit)
                print_table(rows)
                if total > rows.num_rows:
                    console.print(
                        f"... {total - rows.num_rows} more rows ({total} in all); "
                        "raise --limit, or use --format csv/json for everything"
                    )
                else:
                    console.print(f"{total} row{'s' if total != 1 else ''}")
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None


@main.group("store")
def store_cmd() -> None:
    """Inspect and maintain the store (ls, du, verify, gc, compact)."""


@store_cmd.command("ls")
@click.option("--limit", type=int, default=50, show_default=True, help="Newest runs to show.")
@store_option
def ls_cmd(limit: int, store_url: str | None) -> None:
    """List runs, newest first."""
    store = open_store(store_url)
    sql = (
        "SELECT run_id, created_at, status, model, left(prompt, 40) AS prompt, n_tokens, "
        "n_nodes_kept, n_edges_kept, replacement_score, completeness_score FROM runs "
        f"ORDER BY created_at DESC, run_id LIMIT {int(limit)}"
    )
    print_table(store.query(sql), title=f"runs in {store.location.url}")


@store_cmd.command("du")
@store_option
def du_cmd(store_url: str | None) -> None:
    """Sizes by stage, table, quarantine and tmp."""
    from circuitflow.store import maintenance

    store = open_store(store_url)
    rows = maintenance.du(store)
    out = Table(title=f"usage of {store.location.url}", header_style="bold")
    for name, justify in (
        ("area", "left"),
        ("name", "left"),
        ("count", "right"),
        ("size", "right"),
    ):
        out.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        out.add_row(r.area, r.name, str(r.count), human_bytes(r.bytes))
    out.add_row("total", "", "", human_bytes(sum(r.bytes for r in rows)), style="bold")
    console.print(out)


@store_cmd.command("verify")
@click.option("--quarantine", is_flag=True, help="Move damaged objects to quarantine/.")
@store_option
def verify_cmd(quarantine: bool, store_url: str | None) -> None:
    """Re-hash every object file against its manifest; check every table file."""
    from circuitflow.store import maintenance

    store = open_store(store_url)
    report = maintenance.verify(store, quarantine=quarantine)
    for problem in report.problems:
        console.print(f"[red]BAD[/red] {problem}", highlight=False)
    for dest in report.quarantined:
        console.print(f"moved to {dest}", highlight=False)
    console.print(
        f"checked {report.objects} objects ({report.files} files) and "
        f"{report.table_files} table files: "
        + ("all intact" if report.ok else f"{len(report.problems)} problem(s)")
    )
    if not report.ok:
        if not quarantine:
            console.print("damaged objects are recomputed when read; --quarantine moves them now")
        sys.exit(1)


@store_cmd.command("gc")
@click.option("--apply", is_flag=True, help="Delete; without it, only show what would go.")
@click.option(
    "--older-than",
    default="24h",
    show_default=True,
    help="Grace period: spare anything younger (runs in progress).",
)
@click.option(
    "--max-size",
    default=None,
    metavar="SIZE",
    help="Also evict recomputable objects (edge matrices first, least recently used first) "
    "until the store fits, e.g. 50GB. The catalog and pruned graphs stay; an evicted stage "
    "recomputes when a run needs it.",
)
@store_option
def gc_cmd(apply: bool, older_than: str, max_size: str | None, store_url: str | None) -> None:
    """Remove objects no run references, unfinished writes and quarantined objects.

    \b
    Example:
      circuitflow store gc --older-than 7d --apply
      circuitflow store gc --max-size 50GB --apply
    """
    from circuitflow.store import maintenance

    store = open_store(store_url)
    limit = parse_size(max_size) if max_size else None
    report = maintenance.gc(
        store, apply=apply, older_than=parse_duration(older_than), max_size=limit
    )
    for item in report.items:
        console.print(f"{item.kind:10} {human_bytes(item.bytes):>10}  {item.path}  ({item.reason})")
    verb = "removed" if apply else "would remove"
    console.print(f"{verb} {len(report.items)} entries, {human_bytes(report.bytes)}")
    if report.items and not apply:
        console.print("dry run: pass --apply to delete")


@store_cmd.command("compact")
@store_option
def compact_cmd(store_url: str | None) -> None:
    """Merge small catalog batches into few (fewer files for every query to open)."""
    from circuitflow.store import StoreError, maintenance

    store = open_store(store_url)
    try:
        done = maintenance.compact(store)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    for c in done:
        console.print(f"{c.batches_in} batches, {c.runs} runs, {c.rows} rows -> {c.output}")
    console.print(f"compacted {sum(c.batches_in for c in done)} batches into {len(done)}")


for _command in [*COMMANDS, *CAUSAL_COMMANDS]:
    main.add_command(_command)


if __name__ == "__main__":
    main()
