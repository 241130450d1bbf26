"""The generic stage runner and the run driver: keyed by inputs, served from the store."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from circuitflow.tasks import PIPELINE, RunRequest, Setup
from circuitflow.tasks.context import RunContext, forget_records
from circuitflow.tasks.execute import execute_run, run_stage

TWO = PIPELINE[:2]  # tokenize, precompute


@pytest.fixture
def setup(toy_model_dir, tmp_path):
    return Setup.resolve(str(toy_model_dir), "plt", str(tmp_path / "store"))


def test_manifest_records_stage_version_and_inputs(setup):
    run = RunContext(setup, RunRequest("w4 w5"), {}, PIPELINE)
    for stage in TWO:
        run.outputs[stage.name] = run_stage(stage, run)
    obj = run.object("precompute")
    assert obj.manifest["version"] == PIPELINE[1].version
    assert set(obj.inputs) == {"model", "transcoders", "tokenize"}
    # precompute names the prompt by its token digest, not by the tokenize object's key
    assert obj.inputs["tokenize"] == run.record("tokenize").prompt_hash
    assert obj.tensors["error_vectors"].shape[0] == 3  # layers of the toy model


def test_texts_with_the_same_tokens_share_every_stage_after_tokenize(setup):
    first = execute_run(setup, RunRequest("w1 w2"))
    second = execute_run(setup, RunRequest(" w1   w2 "))
    assert first.run_id != second.run_id  # different prompt text: different runs
    status = {s.stage: s.status for s in second.stages}
    assert status.pop("tokenize") == "computed" and status.pop("export") == "computed"
    assert set(status.values()) == {"cached"}


def test_an_evicted_stage_recomputes_when_a_run_needs_it(setup):
    from circuitflow.attribution import RunParams
    from circuitflow.store.maintenance import gc
    from circuitflow.tasks import open_store

    first = execute_run(setup, RunRequest("w3 w1 w4 w1"))
    store = open_store(setup.store)
    graph = RunContext(setup, RunRequest("w3 w1 w4 w1"), {s.stage: s for s in first.stages},
                       PIPELINE).graph  # fmt: skip
    report = gc(store, max_size=0, apply=True)
    evicted = {i.path.split("/")[1] for i in report.items if i.kind == "evict"}
    assert evicted == {"tokenize", "precompute", "targets", "rows", "influence"}
    assert {s for s, _, _ in store.iter_objects()} == {"prune", "export"}
    assert store.catalog.read("runs", first.run_id).num_rows == 1

    forget_records()  # a new process: nothing in memory
    again = execute_run(setup, RunRequest("w3 w1 w4 w1", RunParams(node_threshold=0.5)))
    assert again.status == "ok"
    assert {s.stage for s in again.stages if s.status == "computed"} >= {"rows", "prune"}
    outputs = {s.stage: s for s in again.stages}
    regraph = RunContext(setup, RunRequest("w3 w1 w4 w1"), outputs, PIPELINE).graph
    assert torch.equal(regraph.adjacency, graph.adjacency)


@pytest.mark.slow
def test_a_cached_threshold_change_loads_no_model(setup):
    """Only prune and export compute: neither TransformerLens nor the model is loaded."""
    import subprocess
    import sys

    execute_run(setup, RunRequest("w3 w1 w4"))
    code = f"""
import sys
from circuitflow.attribution import RunParams
from circuitflow.tasks import RunRequest, Setup
from circuitflow.tasks.execute import execute_run
from circuitflow.tasks import runtime
setup = Setup.resolve({setup.model!r}, "plt", {setup.store!r})
out = execute_run(setup, RunRequest("w3 w1 w4", RunParams(node_threshold=0.55)))
computed = sorted(s.stage for s in out.stages if s.status == "computed")
print(computed, "transformer_lens" in sys.modules, len(runtime._loaded))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["['export',", "'prune']", "False", "0"]


def test_every_stored_tensor_of_a_run_opens_in_xarray_with_its_named_dims(seed_run):
    """Each object of a run opens with `xarray.open_zarr` alone, lazily, with the dimensions
    its stage declares (and no `_dim<i>` names), holding what the store's reader returns.
    A built-in model's objects are small: each is packed in one zip (`store.packed`)."""
    import xarray
    import zarr

    from circuitflow.tasks.pipeline import open_store

    store = open_store(seed_run.store)
    stages = {stage.name: stage for stage in PIPELINE}
    events = store.catalog.read("stage_events", seed_run.run_id).to_pylist()
    seen = set()
    for event in events:
        obj = store.open(event["stage"], event["key"])
        if not obj.tensors:
            continue  # export: a file, no tensors
        dims = dict(stages[event["stage"]].dims)
        assert set(obj.files) == {"zarr.zip"}, event["stage"]
        packed = zarr.storage.ZipStore(f"{obj.path}/zarr.zip", mode="r")
        dataset = xarray.open_zarr(packed, group="tensors", consolidated=False)
        assert set(dataset.data_vars) == set(obj.tensors)
        for name, variable in dataset.data_vars.items():
            assert variable.dims == dims[name], (event["stage"], name)
            assert variable.chunks is not None  # lazy
            np.testing.assert_array_equal(variable.values, obj.tensor(name))
            seen.update(variable.dims)
    assert {"pos", "layer", "active", "row", "source", "node", "step", "target"} <= seen
    assert not [d for d in seen if "_dim" in d]


def test_the_pipeline_runs_without_importing_prefect():
    # A sweep's compute process imports the pipeline on its own core while the command imports
    # Prefect: that only pays while the pipeline leaves Prefect out.
    code = (
        "import sys, circuitflow.tasks.execute, circuitflow.tasks.publishing; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('prefect', 'distributed')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


class _Unstorable:
    """A record whose parts cannot be made (a bug in a record type)."""

    def to_parts(self):
        raise RuntimeError("no parts")


def test_a_record_that_cannot_be_stored_releases_its_keys_lock(setup):
    import contextlib
    import fcntl

    from circuitflow.tasks.execute import publish_record
    from circuitflow.tasks.pipeline import open_store

    store = open_store(setup.store)
    stage, key = PIPELINE[0], "ab" * 32
    run = RunContext(setup, RunRequest("w1 w2"), {}, PIPELINE, "r")
    held = contextlib.ExitStack()
    held.enter_context(store.computing(stage.name, key))
    with pytest.raises(RuntimeError, match="no parts"):
        publish_record(stage, run, _Unstorable(), key, {}, {}, held)
    lock_file = f"{store.root}/tmp/locks/{key[:2]}.lock"
    with open(lock_file) as other:  # another holder gets the lock at once
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
