"""Analysis in the pipeline, on the built-in model: only enabled points fire, in the stages that
declare them; keys, stored objects and catalog entries do not change; outputs land in the
catalog and the store apart from the stage objects; failing functions corrupt nothing."""

import json
from pathlib import Path

import pytest
import torch

from circuitflow.flows.analysis_read import analyses, captured_series, read_analysis
from circuitflow.store import maintenance
from circuitflow.tasks import RunRequest, Setup, execute_run, open_store
from circuitflow.tasks.analysis_config import load_analysis, parse_analysis
from circuitflow.tasks.analysis_table import OBJECTS
from circuitflow.tasks.context import forget_records, read_record
from circuitflow.tasks.pipeline import PIPELINE

PROMPT = "The capital of the state containing Dallas is"
WALKTHROUGH = Path(__file__).resolve().parents[2] / "configs" / "analysis" / "seed_walkthrough.yaml"
STAGE_TABLES = ("runs", "nodes", "edges", "logits", "influence_traces")


def setup_at(path) -> Setup:
    return Setup.resolve(None, "plt", str(path))


def keys(outcome) -> dict[str, str]:
    return {s.stage: s.key for s in outcome.stages}


def stored(setup, outcome, stage):
    """A stage's record read from the store itself (nothing from this process's memory)."""
    forget_records()
    store = open_store(setup.store)
    declared = next(s for s in PIPELINE if s.name == stage)
    return read_record(store.open(stage, keys(outcome)[stage]), declared.record)


def object_files(root: Path) -> dict[str, bytes]:
    """Every file of every stage object (analysis objects aside), by path."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted((root / "objects").rglob("*"))
        if p.is_file() and p.relative_to(root).parts[1] != OBJECTS
    }


def test_only_enabled_points_fire_and_their_series_is_the_stored_trace(tmp_path):
    setup = setup_at(tmp_path / "store")
    config = parse_analysis(
        {
            "points": {
                "targets_end": "shapes",
                "influence_iteration": {"functions": [
                    {"function": "trace", "options": {"values": ["term"]}}
                ]},
            }
        }
    )  # fmt: skip
    outcome = execute_run(setup, RunRequest(PROMPT), analysis_config=config)
    assert outcome.status == "ok" and outcome.analysis["failures"] == []
    store = open_store(setup.store)
    rows = read_analysis(store, outcome.run_id)
    assert {r["point"] for r in rows} == {"targets_end", "influence_iteration"}
    stages = {(r["point"], r["labels"].get("phase")): r["stage"] for r in rows}
    assert stages == {
        ("targets_end", None): "targets",
        ("influence_iteration", "node"): "influence",
        ("influence_iteration", "edge"): "prune",
    }
    # The captured terms, read back from the store, are the influence stage's stored trace.
    series = captured_series(store, outcome.run_id, "influence_iteration", "term", phase="node")
    assert torch.equal(torch.from_numpy(series), stored(setup, outcome, "influence").trace)
    edge = captured_series(store, outcome.run_id, "influence_iteration", "term", phase="edge")
    assert len(edge) == len(stored(setup, outcome, "prune").edge_trace)

    # Queryable with SQL beside the run's other tables.
    found = store.query(
        "SELECT a.point, count(*) AS n, any_value(r.status) AS status FROM analysis a "
        "JOIN runs r ON r.run_id = a.analysed_run "
        f"WHERE a.analysed_run = '{outcome.run_id}' AND a.kind = 'tensor' GROUP BY a.point"
    ).to_pylist()
    assert found == [{"point": "influence_iteration", "n": len(series) + len(edge), "status": "ok"}]


def test_keys_objects_and_entries_are_the_same_with_analysis(tmp_path):
    plain_setup = setup_at(tmp_path / "plain")
    plain = execute_run(plain_setup, RunRequest(PROMPT))
    root = Path(plain_setup.store)
    files = object_files(root)
    catalog = open_store(plain_setup.store).catalog
    entries = {t: catalog.read(t, plain.run_id) for t in STAGE_TABLES}

    config = load_analysis(WALKTHROUGH, PIPELINE)
    again = execute_run(plain_setup, RunRequest(PROMPT), analysis_config=config)
    assert again.run_id == plain.run_id and keys(again) == keys(plain)
    assert {s.status for s in again.stages} == {"cached"}  # stored stages ran for analysis only
    assert set(again.analysis["fired"]) == set(config.points) - {"rows_feature_ranking"}
    assert object_files(root) == files  # no stage object written or touched
    assert list((root / "objects" / OBJECTS).rglob("manifest.json"))  # captured tensors: apart
    for table, before in entries.items():
        assert catalog.read(table, plain.run_id).equals(before), table

    # A fresh store with analysis from the start: the same keys and the same graph.
    fresh_setup = setup_at(tmp_path / "fresh")
    fresh = execute_run(fresh_setup, RunRequest(PROMPT), analysis_config=config)
    assert keys(fresh) == keys(plain) and {s.status for s in fresh.stages} == {"computed"}
    for stage in ("rows", "influence", "prune"):
        a, b = stored(plain_setup, plain, stage), stored(fresh_setup, fresh, stage)
        for name, value in vars(a).items():
            other = getattr(b, name)
            assert torch.equal(value, other) if torch.is_tensor(value) else value == other
    assert maintenance.verify(open_store(fresh_setup.store)).ok


FAULTY = """
def explode(event):
    raise RuntimeError("analysis bug")

def vandal(event):
    event["adjacency"].mul_(3.0)
    return {"nodes": event["adjacency"].shape[0]}
"""


@pytest.fixture
def faulty_config(tmp_path):
    (tmp_path / "faulty.py").write_text(FAULTY)
    path = tmp_path / "faulty.yaml"
    path.write_text(
        "points:\n"
        "  graph_assembled: faulty.py:vandal\n"
        "  prune_nodes_end: [faulty.py:explode, shapes]\n"
    )
    return load_analysis(path, PIPELINE)


def test_failing_functions_corrupt_nothing(tmp_path, faulty_config):
    clean_setup = setup_at(tmp_path / "clean")
    clean = execute_run(clean_setup, RunRequest(PROMPT))
    setup = setup_at(tmp_path / "store")
    outcome = execute_run(setup, RunRequest(PROMPT), analysis_config=faulty_config)
    assert outcome.status == "ok" and keys(outcome) == keys(clean)
    failures = outcome.analysis["failures"]
    assert len(failures) == 2
    assert "faulty.py:vandal at point 'graph_assembled'" in failures[0]
    assert "modified adjacency in place" in failures[0]
    assert "faulty.py:explode at point 'prune_nodes_end'" in failures[1]
    assert "raised RuntimeError: analysis bug" in failures[1]

    # The stage that saw its graph modified was computed again before publishing.
    for stage in ("influence", "prune"):
        a, b = stored(clean_setup, clean, stage), stored(setup, outcome, stage)
        assert all(
            torch.equal(v, getattr(b, k)) if torch.is_tensor(v) else v == getattr(b, k)
            for k, v in vars(a).items()
        ), stage
    store = open_store(setup.store)
    for table in STAGE_TABLES[1:]:
        assert store.catalog.read(table, outcome.run_id).equals(
            open_store(clean_setup.store).catalog.read(table, clean.run_id)
        ), table
    assert maintenance.verify(store).ok
    errors = store.query(
        f"SELECT point, function, value FROM analysis WHERE analysed_run = '{outcome.run_id}' "
        "AND kind = 'error' ORDER BY point"
    ).to_pylist()
    assert [(e["point"], e["function"]) for e in errors] == [
        ("graph_assembled", "faulty.py:vandal"),
        ("prune_nodes_end", "faulty.py:explode"),
    ]
    shapes_rows = [r for r in read_analysis(store, outcome.run_id, "prune_nodes_end")
                   if r["kind"] != "error"]  # fmt: skip
    assert shapes_rows  # the other function at the same point still ran


def test_a_run_analysed_again_keeps_both_and_reads_the_latest(tmp_path):
    setup = setup_at(tmp_path / "store")
    first = parse_analysis({"points": {"influence_end": "trace"}})
    outcome = execute_run(setup, RunRequest(PROMPT), analysis_config=first)
    second = parse_analysis({"points": {"influence_end": {"functions": [
        {"function": "trace", "options": {"values": ["influence"]}}]}}})  # fmt: skip
    again = execute_run(setup, RunRequest(PROMPT), analysis_config=second)
    store = open_store(setup.store)
    ids = analyses(store, outcome.run_id)
    assert ids == [outcome.analysis["analysis_id"], again.analysis["analysis_id"]]
    assert all(i.startswith(f"{outcome.run_id}.analysis-") for i in ids)
    assert {r["key"] for r in read_analysis(store, outcome.run_id)} == {"influence"}  # latest
    older = read_analysis(store, outcome.run_id, analysis_id=ids[0])
    assert {r["key"] for r in older} == {"influence", "trace"}  # `trace` keeps every tensor
    # The runs table still holds the run once; gc keeps both analyses' tensors.
    assert store.catalog.read("runs", outcome.run_id).num_rows == 1
    report = maintenance.gc(store, older_than=0)
    assert not [i for i in report.items if i.path.startswith(f"objects/{OBJECTS}/")]
    found = (Path(setup.store) / "objects" / OBJECTS).rglob("manifest.json")
    manifests = [json.loads(p.read_text()) for p in found]
    assert sorted(m["params"]["analysis_id"] for m in manifests) == ids
    assert {m["params"]["run_id"] for m in manifests} == {outcome.run_id}
