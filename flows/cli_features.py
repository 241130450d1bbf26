"""`circuitflow features`, `label` and `circuits`: what features mean, and what graphs share.

Parsing and printing only: the dashboards are `flows.features` and `tasks.features`, labels
`tasks.labels`, the cross-run queries `tasks.circuits`.
"""

from __future__ import annotations

import json
import sys

import click

from circuitflow.flows.cli_runs import resolve_setup
from circuitflow.flows.options import setup_options
from circuitflow.flows.output import console, print_table, write_csv, write_json
from circuitflow.flows.settings import configure


@click.command()
@setup_options
@click.option("--corpus", default=None, metavar="FILE",
              help="Text (a document a line), JSONL ('text') or Parquet ('text') file "
              "[default: the built-in model's training text].")  # fmt: skip
@click.option("--top-k", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="Top activating contexts kept per feature.")  # fmt: skip
@click.option("--chunk-documents", type=click.IntRange(1), default=256, show_default=True,
              help="Documents per chunk (the unit of resuming and of parallel work).")  # fmt: skip
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Dask worker processes (1: in this process).")  # fmt: skip
@click.option("--dask-address", default=None, metavar="ADDR", help="An existing Dask cluster.")
@click.option("--features-dir", default=None, type=click.Path(file_okay=False),
              help="Also write one JSON file per feature in the format circuit-tracer's and "
              "Neuronpedia's frontends fetch (feature_json_base_url).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def features(corpus, top_k, chunk_documents, workers, dask_address, features_dir, as_json,
             **kwargs) -> None:  # fmt: skip
    """Compute feature dashboards: run a corpus through the model and record, for every
    transcoder feature, its top activating contexts, frequency, mean activation, activation
    histogram, and the tokens its decoder promotes and suppresses; list them in the catalog
    table `features` with automatic labels.

    Stored by model, transcoders, corpus and settings: the same command again costs nothing,
    and an interrupted one resumes with the chunks it lacks.

    \b
    Example:
      circuitflow features --transcoders plt
      circuitflow features --corpus docs.jsonl --workers 2 --features-dir feature_json/
    """
    configure(kwargs["verbose"])
    from circuitflow.flows.settings import quiet_flows, start_server_early

    server_up = start_server_early()
    from circuitflow.attribution.dashboards import DashboardParams
    from circuitflow.flows.features import feature_dashboards
    from circuitflow.tasks.corpus import CorpusError, read_corpus

    setup = resolve_setup(kwargs["model"], kwargs["transcoders"], kwargs["store_url"])
    try:
        read_corpus(corpus)  # refuse a bad corpus before anything starts
    except CorpusError as error:
        raise click.UsageError(str(error)) from None
    server_up()
    with quiet_flows():
        dashboards, summary = feature_dashboards(
            setup, corpus, DashboardParams(top_k=top_k), chunk_documents=chunk_documents,
            workers=workers, dask_address=dask_address, show_progress=not as_json,
        )  # fmt: skip
    if features_dir:
        from circuitflow.tasks.feature_files import write_feature_files

        try:
            summary["feature_files"] = write_feature_files(dashboards, features_dir)
        except OSError as error:
            raise click.ClickException(f"cannot write {features_dir}: {error}") from None
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    console.print(
        f"dashboards {summary['id']}: {summary['features']} features over "
        f"{summary['documents']} documents ({summary['tokens']} tokens) in "
        f"{summary['seconds']:.1f} s; chunks computed {summary['chunks_computed']}, "
        f"stored {summary['chunks_cached']}",
        highlight=False,
    )
    console.print(
        'query them: circuitflow query "SELECT layer, feature, frequency, label FROM features '
        'ORDER BY frequency DESC"',
        highlight=False,
    )


@click.command()
@click.argument("layer", type=int)
@click.argument("feature", type=int)
@click.argument("text")
@click.option("--author", default=None, help="Who labels [default: your user name].")
@click.option("--model", default=None, metavar="NAME|DIR", help="Model [default: built-in].")
@click.option("--transcoders", default=None, metavar="plt|clt|DIR",
              help="The transcoder set the feature belongs to [default: plt].")  # fmt: skip
@click.option("--store", "store_url", default=None, metavar="URL", help="The store.")
def label(layer, feature, text, author, model, transcoders, store_url) -> None:
    """Label a feature: the label goes to the catalog table `labels` with your name and the
    time, wins over the automatic label, and shows in exports (clerp) and the viewer.

    \b
    Example:
      circuitflow label 1 13 "Texas cities"
    """
    from circuitflow.tasks.labels import LabelError, set_label
    from circuitflow.tasks.pipeline import open_store
    from circuitflow.tasks.runtime import transcoders_identity

    setup = resolve_setup(model, transcoders, store_url)
    n_layers, n_features = _transcoder_shape(setup.transcoders)
    try:
        digest = transcoders_identity(setup.transcoders)
        row = set_label(open_store(setup.store), digest, layer, feature, text, author,
                        n_layers=n_layers, n_features=n_features)  # fmt: skip
    except LabelError as error:
        raise click.UsageError(str(error)) from None
    console.print(
        f"layer {layer} feature {feature}: {row['label']!r} (by {row['author']})", highlight=False
    )


def _transcoder_shape(directory: str) -> tuple[int | None, int | None]:
    """(layers, features per layer) from the set's files, without loading them."""
    from circuitflow.attribution.transcoders import TranscoderError, load_transcoders

    try:
        tc = load_transcoders(directory)
    except (TranscoderError, OSError):
        return None, None
    return tc.n_layers, tc.d_transcoder


@click.command()
@click.option("--where", default=None, metavar="SQL",
              help="Condition on the runs table choosing the runs (e.g. \"prompt LIKE "
              "'%Texas%'\") [default: every successful run].")  # fmt: skip
@click.option("--edges", "what", flag_value="edges", help="Rank edges instead of features.")
@click.option("--similar", "similar", default=None, metavar="RUN_ID",
              help="The runs whose kept features overlap this run's most (weighted by "
              "influence).")  # fmt: skip
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True)  # fmt: skip
@click.option("--sql", "show_sql", is_flag=True, help="Print the SQL instead of running it.")
@click.option("--store", "store_url", default=None, metavar="URL", help="The store.")
def circuits(where, what, similar, limit, fmt, show_sql, store_url) -> None:
    """Rank the features (or edges) that lie on kept paths in the most graphs, with their mean
    influence and the prompts they appear in; or find the runs most like one run.

    \b
    Example:
      circuitflow circuits --where "prompt LIKE '%capital%'"
      circuitflow circuits --edges --limit 50 --format csv
      circuitflow circuits --similar 20d56149989e41d4c707
    """
    from circuitflow.store import QueryError, Store, default_root
    from circuitflow.tasks.circuits import (
        circuit_edges_sql,
        circuit_features_sql,
        similar_runs_sql,
    )

    store = Store(default_root(store_url))
    if not store.fs.exists(store.root):
        raise click.ClickException(f"no store at {store.root} (runs create it; see --store)")
    try:
        if similar:
            sql = similar_runs_sql(similar, where, limit)
        elif what == "edges":
            sql = circuit_edges_sql(where, limit)
        else:
            sql = circuit_features_sql(where, limit, set(store.catalog.table_names()))
        if show_sql:
            click.echo(sql)
            return
        table = store.query(sql)
    except QueryError as error:
        raise click.ClickException(f"query failed: {error}") from None
    if fmt == "csv":
        write_csv(table.to_reader(), sys.stdout.buffer)
    elif fmt == "json":
        write_json(table.to_reader(), sys.stdout)
    else:
        print_table(table.drop_columns([c for c in ("transcoders_digest",)
                                        if c in table.column_names]))  # fmt: skip
