"""The store a command works on: opened with the pipeline's catalog tables, or a one-line error.

Shared by the command modules (`cli`, `cli_analysis`, ...), which cannot import each other.
"""

from __future__ import annotations

import click

from circuitflow.store import Store


def open_store(url: str | None) -> Store:
    """The store at `url` (with the pipeline's tables registered), or a one-line error."""
    from circuitflow.store import default_root
    from circuitflow.tasks import open_store as open_pipeline_store

    try:
        store = open_pipeline_store(default_root(url))
        found = store.fs.exists(store.root)
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot open store {url or ''}: {exc}") from None
    if not found:
        raise click.ClickException(
            f"no store at {store.location.url} (runs create it; pick another with --store "
            "or $CIRCUITFLOW_STORE)"
        )
    return store
