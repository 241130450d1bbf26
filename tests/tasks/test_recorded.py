"""Opening a recorded run by the id a person typed: its records, or one clear reason why not."""

import shutil

import pytest
import torch

from circuitflow.tasks.recorded import UnknownRunError, check_run_id, open_run, require_stored


@pytest.mark.parametrize(
    "text,reason",
    [
        ('"4fe76bf6dd526fd41db5"', "remove the quotes"),
        ("'4fe76bf6dd526fd41db5'", "remove the quotes"),
        ("runs/4fe76bf6dd526fd41db5", "looks like a path"),
        ("../../etc/passwd", "looks like a path"),
        ("", "it is empty"),
        ("  ", "it is empty"),
        ("run id", "letters, digits"),
    ],
)
def test_malformed_run_ids_are_refused_with_the_reason(text, reason):
    with pytest.raises(UnknownRunError, match=reason):
        check_run_id(text)


def test_a_recorded_run_reads_back_as_it_was_recorded(seed_run):
    run = seed_run.open()
    assert run.run_id == seed_run.run_id
    assert run.prompt == "The capital of the state containing Dallas is"
    kept = (
        run.store.query(
            f"SELECT node_id FROM nodes WHERE run_id = '{run.run_id}' AND kept "
            "ORDER BY matrix_index"
        )
        .column("node_id")
        .to_pylist()
    )
    mask = run.record("prune").node_mask
    ids = run.graph.node_ids()
    assert kept == [ids[i] for i in torch.nonzero(mask).flatten().tolist()]


def test_unknown_runs_and_missing_objects_are_named(seed_run):
    with pytest.raises(UnknownRunError, match="no successful run 'abc123'"):
        open_run(seed_run.store, "abc123")
    run = seed_run.open()
    shutil.rmtree(run.store.object_path("prune", run.outputs["prune"].key))
    with pytest.raises(UnknownRunError, match="stored prune output is gone"):
        require_stored(run, "rows", "prune")


def test_a_recorded_graph_is_what_the_python_api_gives(seed_run, monkeypatch):
    """load_graph (the store's graph, public): the run's graph and prune result equal
    `attribute` + `prune` run anew, bit for bit."""
    from circuitflow.attribution import (
        ReplacementModel,
        attribute,
        load_model,
        load_transcoders,
        prune,
    )
    from circuitflow.models import BUILTIN_MODEL
    from circuitflow.tasks import load_graph
    from tests.conftest import SEED

    monkeypatch.setenv("CIRCUITFLOW_STORE", seed_run.store)  # the default store
    graph, kept = load_graph(seed_run.run_id)
    model = ReplacementModel(
        load_model(BUILTIN_MODEL), load_transcoders(BUILTIN_MODEL / "transcoders" / "plt")
    )
    fresh = attribute(SEED, model)
    assert torch.equal(graph.adjacency, fresh.adjacency)
    assert torch.equal(graph.active_features, fresh.active_features)
    again = prune(fresh, node_threshold=0.8, edge_threshold=0.98)
    assert torch.equal(kept.node_mask, again.node_mask)
    assert torch.equal(kept.edge_mask, again.edge_mask)
    assert torch.equal(kept.cumulative_scores, again.cumulative_scores)
    # As circuit-tracer's Graph, circuit-tracer's own pruning keeps the same.
    from circuitflow.attribution.interop import to_circuit_tracer
    from tests.attribution.reference import prune_graph

    theirs = prune_graph(to_circuit_tracer(graph))
    assert torch.equal(kept.node_mask, theirs.node_mask)
    assert torch.equal(kept.edge_mask, theirs.edge_mask)
