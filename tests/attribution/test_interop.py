"""circuit-tracer's graph files read into ours: same edges, and our pruning of the imported
graph equals circuit-tracer's own `prune_graph` on the file."""

import pytest
import torch
from circuit_tracer.graph import Graph

from circuitflow.attribution import load_model, load_transcoders, prune
from circuitflow.attribution.interop import load_circuit_tracer_graph
from tests.attribution.reference import prune_graph, reference_attribute, reference_model


def test_a_circuit_tracer_file_reads_back_and_prunes_like_circuit_tracer(toy_model_dir, tmp_path):
    model = load_model(toy_model_dir)
    tc = load_transcoders(toy_model_dir / "transcoders" / "plt")
    ref_graph = reference_attribute("w5 w3 w8 w1 w2", reference_model(model, tc), batch_size=16)
    ref_graph.to_pt(str(tmp_path / "graph.pt"))

    ours = load_circuit_tracer_graph(tmp_path / "graph.pt")
    on_disk = Graph.from_pt(str(tmp_path / "graph.pt"))
    assert torch.equal(ours.adjacency, on_disk.adjacency_matrix.float())
    assert ours.n_nodes == on_disk.adjacency_matrix.shape[0]
    assert ours.logit_token_ids.tolist() == [t.vocab_idx for t in on_disk.logit_targets]

    theirs = prune_graph(on_disk, node_threshold=0.8, edge_threshold=0.98)
    kept = prune(ours, node_threshold=0.8, edge_threshold=0.98)
    assert torch.equal(kept.node_mask, theirs.node_mask)
    assert torch.equal(kept.edge_mask, theirs.edge_mask)


def test_not_a_graph_file_is_one_clear_error(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="not a circuit-tracer graph file"):
        load_circuit_tracer_graph(tmp_path / "x.pt")
