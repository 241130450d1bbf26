"""AttributionGraph: node order, and what each node index stands for."""

import torch

from circuitflow.attribution import AttributionGraph, Node


def small_graph() -> AttributionGraph:
    """2 layers, 3 positions, features (0,1,7) (1,2,5) (1,1,9) of which two are nodes, 2 logits."""
    active = torch.tensor([[0, 1, 7], [1, 1, 9], [1, 2, 5]])
    n_nodes = 2 + 2 * 3 + 3 + 2
    return AttributionGraph(
        tokens=torch.tensor([3, 11, 12]),
        active_features=active,
        activation_values=torch.tensor([0.5, 1.5, 2.5]),
        selected_features=torch.tensor([0, 2]),
        adjacency=torch.zeros(n_nodes, n_nodes),
        logit_token_ids=torch.tensor([40, 41]),
        logit_probabilities=torch.tensor([0.7, 0.2]),
        n_layers=2,
    )


def test_every_index_maps_to_its_node_in_design_order():
    graph = small_graph()
    assert graph.nodes() == [
        Node("feature", 0, 1, feature=7, activation=0.5),
        Node("feature", 1, 2, feature=5, activation=2.5),
        *[Node("error", layer, pos) for layer in range(2) for pos in range(3)],
        *[Node("token", None, pos, token_id=t) for pos, t in enumerate([3, 11, 12])],
        Node("logit", 2, 2, token_id=40),
        Node("logit", 2, 2, token_id=41),
    ]
    assert graph.node(graph.error_start + 1 * 3 + 2) == Node("error", 1, 2)
    ids = graph.node_ids()
    assert ids[:4] == ["0_7_1", "1_5_2", "0_-1_0", "0_-1_1"]
    assert ids[graph.token_start : graph.token_start + 2] == ["E_3_0", "E_11_1"]
    assert ids[-2:] == ["3_40_2", "3_41_2"]  # logits sit at layer n_layers + 1
    assert len(set(ids)) == len(ids)
