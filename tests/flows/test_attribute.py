"""The attribute_prompt flow: what is recomputed when, through the real Prefect engine."""

import os
import shutil

import pytest
import torch

from circuitflow.attribution import RunParams
from circuitflow.flows.attribute import attribute_prompt
from circuitflow.flows.report import run_report
from circuitflow.tasks import PIPELINE, RunRequest, Setup, open_store
from circuitflow.tasks.context import RunContext, forget_records

PROMPT = "w3 w1 w4 w1 w5 w9"


def graph_of(setup, outcome):
    """The attribution graph of a finished run, read back from the store."""
    outputs = {s.stage: s for s in outcome.stages}
    return RunContext(setup, RunRequest(outcome.prompt), outputs, PIPELINE).graph


def statuses(summary) -> dict[str, str]:
    return {s.stage: s.status for s in summary.stages}


def computed(summary) -> set[str]:
    return {s.stage for s in summary.stages if s.status == "computed"}


ALL = {"tokenize", "precompute", "targets", "rows", "influence", "prune", "export"}


@pytest.fixture
def setup(toy_model_dir, tmp_path):
    return Setup.resolve(str(toy_model_dir), "plt", str(tmp_path / "store"))


def test_rerun_is_all_cached_with_identical_results(prefect_api, setup):
    first = attribute_prompt(setup, RunRequest(PROMPT))
    assert computed(first) == ALL
    catalog = open_store(setup.store).catalog
    rows_before = {
        t: catalog.read(t, first.run_id)
        for t in ("runs", "nodes", "edges", "logits", "influence_traces")
    }

    again = attribute_prompt(setup, RunRequest(PROMPT))
    assert again.run_id == first.run_id
    assert set(statuses(again).values()) == {"cached"}
    # A run is recorded once: the catalog keeps the execution that computed it.
    events = catalog.read("stage_events", again.run_id).to_pylist()
    assert {e["status"] for e in events} == {"computed"} and len(events) == 7
    for table, before in rows_before.items():
        assert catalog.read(table, again.run_id).equals(before), table
    forget_records()
    a, b = graph_of(setup, first), graph_of(setup, again)
    assert torch.equal(a.adjacency, b.adjacency)


def test_what_each_change_recomputes(prefect_api, setup, toy_model_dir):
    attribute_prompt(setup, RunRequest(PROMPT))
    new_thresholds = attribute_prompt(
        setup, RunRequest(PROMPT, RunParams(node_threshold=0.6, edge_threshold=0.9))
    )
    assert computed(new_thresholds) == {"prune", "export"}
    new_budget = attribute_prompt(setup, RunRequest(PROMPT, RunParams(max_feature_nodes=30)))
    assert computed(new_budget) == {"rows", "influence", "prune", "export"}
    clt = Setup.resolve(str(toy_model_dir), "clt", setup.store)
    new_transcoders = attribute_prompt(clt, RunRequest(PROMPT))
    assert computed(new_transcoders) == ALL - {"tokenize"}
    new_prompt = attribute_prompt(setup, RunRequest(PROMPT + " w2"))
    assert computed(new_prompt) == ALL
    runs = (
        open_store(setup.store)
        .query("SELECT count(*) AS n, count(DISTINCT run_id) AS d FROM runs")
        .to_pylist()
    )
    assert runs == [{"n": 5, "d": 5}]


def test_a_corrupted_object_is_recomputed(prefect_api, setup):
    first = attribute_prompt(setup, RunRequest(PROMPT))
    store = open_store(setup.store)
    rows_key = next(s.key for s in first.stages if s.stage == "rows")
    obj = store.open("rows", rows_key)
    packed = os.path.join(obj.path, "zarr.zip")  # a small object: its Zarr files in one zip
    with open(packed, "r+b") as f:
        f.seek(os.path.getsize(packed) // 2)
        f.write(b"\xff\xff\xff\xff")
    precompute_key = next(s.key for s in first.stages if s.stage == "precompute")
    shutil.rmtree(store.open("precompute", precompute_key).path)

    forget_records()  # the next run starts afresh, as a new process would
    again = attribute_prompt(setup, RunRequest(PROMPT, RunParams(node_threshold=0.7)))
    assert again.status == "ok" and "rows" in computed(again)
    assert store.get("precompute", precompute_key) is not None  # recomputed
    assert store.get("rows", rows_key, verify=True) is not None  # recomputed, intact
    graph, original = graph_of(setup, again), graph_of(setup, first)
    assert torch.equal(graph.adjacency, original.adjacency)


def test_bad_prompts_are_recorded_as_failed_runs(prefect_api, setup):
    summary = attribute_prompt(setup, RunRequest("w1 zebra w2"))
    assert summary.status == "failed" and "zebra" in summary.error
    row = open_store(setup.store).catalog.read("runs", summary.run_id).to_pylist()[0]
    assert row["status"] == "failed" and "zebra" in row["error"]


def test_report_numbers_come_from_the_catalog(prefect_api, setup):
    summary = attribute_prompt(setup, RunRequest(PROMPT))
    report = run_report(setup, summary)
    run = (
        open_store(setup.store)
        .query(f"SELECT * FROM runs WHERE run_id = '{summary.run_id}'")
        .to_pylist()[0]
    )
    for key in (
        "n_active_features",
        "n_nodes_kept",
        "n_edges_kept",
        "replacement_score",
        "completeness_score",
    ):
        assert report[key] == run[key]
    kept = (
        open_store(setup.store)
        .query(f"SELECT count(*) AS n FROM nodes WHERE run_id = '{summary.run_id}' AND kept")
        .to_pylist()
    )
    assert kept[0]["n"] == report["n_nodes_kept"]
