"""Saved subgraphs: the nodes a person pinned in a run's graph and the supernodes they grouped.

A subgraph is what circuit-tracer's frontend keeps in a graph's `qParams`: pinned node ids, and
supernodes written as [name, member id, member id, ...]. Here each has a name and lives in the
catalog table `saved_subgraphs` (one row per run and name), so that it can be queried beside the
run's nodes and edges:

    SELECT s.name, n.node_id, n.influence FROM saved_subgraphs s, unnest(s.pinned_ids) AS p(id)
    JOIN nodes n ON n.run_id = s.run_id AND n.node_id = p.id

A run's subgraphs are written as its non-final rows of that table: each save reads the run's
rows, merges the new subgraph in (a name saved again replaces its row) and writes them all as a
new batch, which supersedes the run's earlier rows of this table (see `store.catalog`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa

from circuitflow.store import Store
from circuitflow.tasks.declare import CatalogTable

MAX_NAME = 100


class SubgraphError(ValueError):
    """A subgraph that cannot be saved, and why."""


@dataclass(frozen=True)
class Subgraph:
    """name; pinned_ids: node ids; supernodes: each (name, *member ids); clicked_id: the node
    in focus when it was saved ("" for none)."""

    name: str
    pinned_ids: tuple[str, ...] = ()
    supernodes: tuple[tuple[str, ...], ...] = ()
    clicked_id: str = ""

    def qparams(self) -> dict:
        """As circuit-tracer's and Neuronpedia's `qParams` fields."""
        return {
            "pinnedIds": list(self.pinned_ids),
            "supernodes": [list(group) for group in self.supernodes],
            "clickedId": self.clicked_id,
        }

    def to_json(self) -> dict:
        return {"name": self.name} | self.qparams()

    def check(self, node_ids: Collection[str] | None = None) -> Subgraph:
        """Itself if it can be saved: a name, supernodes with a name and members, and (when
        `node_ids` is given) only ids of the run's nodes; else SubgraphError."""
        if not self.name.strip() or len(self.name) > MAX_NAME:
            raise SubgraphError(f"a subgraph needs a name of 1-{MAX_NAME} characters")
        for group in self.supernodes:
            if len(group) < 2 or not group[0].strip():
                raise SubgraphError("a supernode is [name, member id, ...] with a name and members")
        if node_ids is not None:
            used = {*self.pinned_ids, *(i for g in self.supernodes for i in g[1:])}
            unknown = sorted(used - set(node_ids) - {""})
            if unknown:
                raise SubgraphError(f"not nodes of this run's graph: {', '.join(unknown[:5])}")
        return self


def _row(subgraph: Subgraph) -> dict:
    return {
        "name": subgraph.name,
        "pinned_ids": list(subgraph.pinned_ids),
        "supernodes": [list(group) for group in subgraph.supernodes],
        "clicked_id": subgraph.clicked_id,
        "created_at": dt.datetime.now(dt.UTC),
    }


SAVED_SUBGRAPHS = CatalogTable(
    "saved_subgraphs",
    (
        ("name", pa.string()),
        ("pinned_ids", pa.list_(pa.string())),
        ("supernodes", pa.list_(pa.list_(pa.string()))),  # each [name, member id, ...]
        ("clicked_id", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
    ),
)

_saving = threading.Lock()


@contextlib.contextmanager
def exclusive(store: Store) -> Iterator[None]:
    """One read-merge-write of people's catalog rows (subgraphs, labels) at a time: across
    threads, and across processes on a local store."""
    with _saving, store.catalog.lock("_annotations_lock"):
        yield


def saved_subgraphs(store: Store, rid: str) -> list[Subgraph]:
    """A run's saved subgraphs, oldest first."""
    rows = store.catalog.read(SAVED_SUBGRAPHS.name, rid).to_pylist()
    rows.sort(key=lambda r: r["created_at"])
    return [
        Subgraph(
            r["name"],
            tuple(r["pinned_ids"] or ()),
            tuple(tuple(g) for g in r["supernodes"] or ()),
            r["clicked_id"] or "",
        )
        for r in rows
    ]


def save_subgraph(store: Store, rid: str, subgraph: Subgraph) -> list[Subgraph]:
    """Add (or replace, by name) one of a run's saved subgraphs; returns them all."""
    subgraph.check()
    with exclusive(store):
        rows = store.catalog.read(SAVED_SUBGRAPHS.name, rid).to_pylist()
        rows = [r | {"run_id": rid} for r in rows if r["name"] != subgraph.name]
        rows.append(_row(subgraph) | {"run_id": rid})
        store.catalog.write(SAVED_SUBGRAPHS.name, rid, rows, final=False)
    return saved_subgraphs(store, rid)


def pick(subgraphs: Sequence[Subgraph], name: str | None) -> Subgraph | None:
    """The subgraph called `name`, or the newest when `name` is None; SubgraphError if absent."""
    if name is None:
        return subgraphs[-1] if subgraphs else None
    for subgraph in subgraphs:
        if subgraph.name == name:
            return subgraph
    known = ", ".join(repr(s.name) for s in subgraphs) or "none saved"
    raise SubgraphError(f"no saved subgraph {name!r} for this run (saved: {known})")
