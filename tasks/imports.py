"""Graphs computed by circuit-tracer, brought into the store and the catalog as runs.

    import -> influence -> prune -> export

`IMPORT_PIPELINE` is the attribution pipeline with its first four stages (tokenize, precompute,
targets, rows) replaced by one: `import` (`tasks/stages/imported.py`), whose record is the graph
read from the file. influence, prune and export are the same stages as in every run, so an
imported run fills the same catalog tables (runs, nodes, edges, logits, influence_traces,
stage_events) and its pruned graph comes from the same code at the run's thresholds.

An imported run is a real run: a run id (a digest of the file's content key and the
thresholds), a `runs` row, stage events, objects. What it cannot do, because the model is not
here: recompute anything before influence (a changed feature budget, targets or prompt), or run
the causal checks (`validate`), steering or feature dashboards. Its identities come from the
file: the model digest is a digest of its config (`cfg`), the transcoders digest a digest of
its `scan`, so two graphs of one model and set share them, but they are not digests of weights
and never equal an `attribute` run's. Run settings the file does not know (feature budget,
batch size, ...) are left empty in its `runs` row; only the thresholds are set.

The catalog is written through the attribution pipeline's registration (`PIPELINE`'s tables),
so an imported run's rows have exactly the columns of every other run's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from circuitflow.attribution import RunParams
from circuitflow.attribution.interop import (
    config_values,
    from_circuit_tracer,
    read_circuit_tracer_file,
)
from circuitflow.store import canonical_json, stage_key
from circuitflow.store.keys import sha256_hex
from circuitflow.tasks.catalog import check_pipeline
from circuitflow.tasks.context import RunContext, RunRequest, StageOutput
from circuitflow.tasks.declare import Stage
from circuitflow.tasks.execute import (
    Recorder,
    RunOutcome,
    catalog_entries,
    publish_record,
    run_stage,
)
from circuitflow.tasks.pipeline import PIPELINE
from circuitflow.tasks.runtime import Setup
from circuitflow.tasks.stages import export, imported, influence, prune
from circuitflow.tasks.stages.imported import ImportedGraph

IMPORT_PIPELINE: list[Stage] = [
    imported.STAGE,
    dataclasses.replace(influence.STAGE, inputs=(imported.NAME,)),
    prune.STAGE,
    export.STAGE,
]
check_pipeline(IMPORT_PIPELINE)
# The settings an imported graph's run has: the thresholds (prune). The others made the graph
# in circuit-tracer, and the file does not record them.
IMPORT_SETTINGS = ("node_threshold", "edge_threshold")


@dataclass(frozen=True)
class GraphFile:
    """A circuit-tracer graph file, read and checked.

    sha256: the file's digest (the import stage's key is made from it)
    graph:  the graph with its provenance (prompt, scan, model config)
    """

    path: str
    sha256: str
    graph: ImportedGraph

    @property
    def model(self) -> str:
        """The model's name, as the file's config gives it."""
        config = self.graph.model_config
        return str(config.get("model_name") or config.get("tokenizer_name") or "unknown")

    @property
    def transcoders(self) -> str:
        """The transcoder set, as the file's `scan` names it ('' when it names none)."""
        scan = self.graph.scan
        return ",".join(scan) if isinstance(scan, list) else str(scan or "")

    def setup(self, store: str) -> Setup:
        """A setup whose identities come from the file (the model is not here to hash)."""
        graph = self.graph
        return Setup(
            model=self.model,
            transcoders=self.transcoders,
            store=store,
            model_digest=sha256_hex(canonical_json({"circuit-tracer cfg": graph.model_config})),
            transcoders_digest=sha256_hex(canonical_json({"circuit-tracer scan": graph.scan})),
        )


def read_graph_file(path: str | os.PathLike) -> GraphFile:
    """A circuit-tracer `.pt` graph file, read and checked; a ValueError in one line if it is
    not one (see `attribution.interop.read_circuit_tracer_file`)."""
    path = os.fspath(path)
    if not Path(path).is_file():
        raise ValueError(f"{path!r}: no such file")
    source = read_circuit_tracer_file(path)
    graph = from_circuit_tracer(source)
    fields = {f.name: getattr(graph, f.name) for f in dataclasses.fields(graph)}
    scan = source.scan
    graph = ImportedGraph(
        **fields,
        prompt=str(source.input_string),
        scan=list(scan) if isinstance(scan, (list, tuple)) else scan,
        model_config=config_values(source.cfg),
    )
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return GraphFile(path, digest, graph)


def import_key(file: GraphFile) -> str:
    """The import stage's key: the same file imported twice is one object."""
    stage = imported.STAGE
    return stage_key(stage.name, stage.version, {}, {"file": file.sha256})


def import_run_id(file: GraphFile, params: RunParams) -> str:
    """The run id of a file imported at `params`' thresholds."""
    settings = {name: getattr(params, name) for name in IMPORT_SETTINGS}
    return sha256_hex(canonical_json({"import": import_key(file), **settings}))[:20]


def import_graph(
    file: GraphFile,
    store: str,
    params: RunParams | None = None,
) -> RunOutcome:
    """Import one graph file as a run: publish its graph (unless stored), run influence, prune
    and export at `params`' thresholds, and record the run in the catalog (once)."""
    start = time.perf_counter()
    params = params or RunParams()
    setup = file.setup(store)
    request = RunRequest(file.graph.prompt, params)
    rid = import_run_id(file, params)
    run = RunContext(setup, request, {}, IMPORT_PIPELINE, rid)
    stage, key = IMPORT_PIPELINE[0], import_key(file)
    status = "cached"
    if not run.store.exists(stage.name, key):
        with run.store.computing(stage.name, key):
            if not run.store.exists(stage.name, key):
                inputs = {"file": file.sha256}
                publish_record(stage, run, file.graph, key, {}, inputs)
                status = "computed"
    seconds = time.perf_counter() - start
    run.outputs[stage.name] = StageOutput(stage.name, key, status, seconds, key)
    for later in IMPORT_PIPELINE[1:]:  # the usual stages, looked up or computed (no model)
        run.outputs[later.name] = run_stage(later, run)
    stages = list(run.outputs.values())
    if not run.store.catalog.recorded(rid):
        entries = catalog_entries(run, time.perf_counter() - start)
        row = entries["runs"][0]
        for name in RunParams.names():
            if name not in IMPORT_SETTINGS:
                row[name] = None
        recorder = Recorder()
        recorder.add(run, entries, final=True)
        recorder.flush(PIPELINE)  # PIPELINE's registration: the same columns as every run
    cached = all(s.status == "cached" for s in stages)
    return RunOutcome(rid, request.prompt, "ok", cached, stages=stages)
