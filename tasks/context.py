"""A run as its stages see it: its settings, its setup, and the records of its earlier stages.

`RunContext` is what a stage's compute function and a table's row builder receive. They ask it
for what they need by name (`run.record("precompute")`, `run.param("batch_size")`,
`run.graph`, `run.model`) and it reads from the store, or from this process's memory when an
earlier stage of the same run has just computed or read it. Stored objects never change under
a key, so the memory can always be trusted; the store stays the source of truth.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import circuitflow.tasks.publishing as publishing
from circuitflow.attribution import AttributionGraph, RunParams, assemble
from circuitflow.store import Store, StoredObject, canonical_json
from circuitflow.store.keys import sha256_hex
from circuitflow.tasks.catalog import catalog_tables
from circuitflow.tasks.declare import Stage
from circuitflow.tasks.runtime import Loaded, Setup, identity, loaded


@dataclass(frozen=True)
class RunRequest:
    """What to attribute: a prompt, with its settings."""

    prompt: str
    params: RunParams = field(default_factory=RunParams)


def run_id(setup: Setup, request: RunRequest) -> str:
    """Stable id of a run: a digest of everything that determines its result.

    The same run done twice, or resumed after a crash, lands on the same id, so the catalog
    holds exactly one row per run.
    """
    doc = {
        "model": identity(setup, "model"),
        "transcoders": identity(setup, "transcoders"),
        "prompt": request.prompt,
        "params": request.params.to_dict(),
    }
    return sha256_hex(canonical_json(doc))[:20]


@dataclass(frozen=True)
class StageOutput:
    """What running a stage returns: where its output is stored and how it got there.

    identity: what later stages' keys use for this output (its key, unless the stage names a
    narrower identity; see `Stage.identity`).
    """

    stage: str
    key: str
    status: str  # "computed" or "cached"
    seconds: float
    identity: str


# Records by (store root, stage, key): recently computed or read in this process. A sweep's
# publishing thread reads them too (the catalog entries), hence the lock.
_recent: OrderedDict[tuple[str, str, str], Any] = OrderedDict()
_recent_lock = threading.Lock()
RECENT_RECORDS = 12


def forget_records() -> None:
    """Drop the in-memory records (as a new process would start)."""
    with _recent_lock:
        _recent.clear()


def forget_graph(run: RunContext) -> None:
    """Drop the run's assembled graph from memory (the next `run.graph` assembles it again)."""
    with _recent_lock:
        _recent.pop((run.store.root, "graph", run.outputs["rows"].key), None)


def remember(where: tuple[str, str, str], record: Any) -> Any:
    with _recent_lock:
        _recent[where] = record
        _recent.move_to_end(where)
        while len(_recent) > RECENT_RECORDS:
            _recent.popitem(last=False)
    return record


def recall(where: tuple[str, str, str]) -> Any | None:
    with _recent_lock:
        if where in _recent:
            _recent.move_to_end(where)
            return _recent[where]
    return None


def read_record(obj: StoredObject, record_type: type) -> Any:
    """The record stored in `obj`, as `record_type` (tensors, JSON metadata and files)."""
    tensors = {name: obj.torch(name) for name in obj.tensors}
    files = {name: obj.blob(name) for name in obj.blobs}
    return record_type.from_parts(tensors, obj.attrs.get("record", {}), files)


_stores: dict[tuple[str, tuple[str, ...]], Store] = {}


def store_for(root: str, pipeline: Sequence[Stage]) -> Store:
    """The store at `root` with a pipeline's catalog tables registered (one per process)."""
    where = (root, tuple(stage.name for stage in pipeline))
    if where not in _stores:
        _stores[where] = Store(root, tables=catalog_tables(pipeline))
    return _stores[where]


class RunContext:
    """One run: setup, request, run id, and the outputs of the stages run so far."""

    def __init__(
        self,
        setup: Setup,
        request: RunRequest,
        outputs: dict[str, StageOutput],
        pipeline: Sequence[Stage],
        rid: str | None = None,
    ) -> None:
        self.setup = setup
        self.request = request
        self.outputs = outputs
        self.pipeline = pipeline
        self.stages = {stage.name: stage for stage in pipeline}
        self.run_id = rid or run_id(setup, request)
        self.store = store_for(setup.store, pipeline)

    @property
    def prompt(self) -> str:
        return self.request.prompt

    @property
    def params(self) -> RunParams:
        return self.request.params

    def param(self, name: str) -> Any:
        """A setting a stage key may depend on: a RunParams field, "prompt" or "run_id"."""
        if name == "prompt":
            return self.prompt
        if name == "run_id":
            return self.run_id
        return getattr(self.params, name)

    def object(self, stage: str) -> StoredObject:
        key = self.outputs[stage].key
        publishing.settle((self.store.root, stage, key))  # still being written in a sweep?
        return self.store.open(stage, key)

    def record(self, stage: str) -> Any:
        """The record a stage of this run stored."""
        where = (self.store.root, stage, self.outputs[stage].key)
        found = recall(where)
        if found is not None:
            return found
        return remember(where, read_record(self.object(stage), self.stages[stage].record))

    @property
    def graph(self) -> AttributionGraph:
        """The attribution graph, assembled from the precompute, targets and rows records (an
        imported run's is the record of its `import` stage: `tasks/stages/imported.py`)."""
        if "import" in self.outputs:
            return self.record("import")
        where = (self.store.root, "graph", self.outputs["rows"].key)
        found = recall(where)
        if found is not None:
            return found
        graph = assemble(
            self.record("precompute"),
            self.record("targets"),
            self.record("rows"),
            self.record("tokenize").token_strings,
        )
        return remember(where, graph)

    @property
    def model(self) -> Loaded:
        """The model and transcoders, loaded in this process on first use."""
        return loaded(self.setup, self.params.dtype)
