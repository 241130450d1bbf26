"""A hand-worked graph: influence, replacement and completeness worked out on paper.

One layer, two positions, two features, one logit (probability 0.9). Node order:
    0 f0 | 1 f1 | 2 err(0,0) | 3 err(0,1) | 4 tok0 | 5 tok1 | 6 logit
Edges (target <- source: weight):
    logit <- f0: 3, logit <- f1: -1, logit <- err(0,1): 1     normalised: .6 .2 .2
    f0 <- tok0: 2, f0 <- tok1: 2                              normalised: .5 .5
    f1 <- tok0: -3, f1 <- tok1: 1                             normalised: .75 .25
Paths of one edge: f0 .54, f1 .18, err(0,1) .18; of two edges: tok0 .27 + .135 = .405,
tok1 .27 + .045 = .315; none longer.
"""

import pytest
import torch

from circuitflow.attribution import AttributionGraph, graph_scores, node_influence


def hand_graph() -> AttributionGraph:
    A = torch.zeros(7, 7)
    A[6, 0], A[6, 1], A[6, 3] = 3.0, -1.0, 1.0
    A[0, 4], A[0, 5] = 2.0, 2.0
    A[1, 4], A[1, 5] = -3.0, 1.0
    return AttributionGraph(
        tokens=torch.tensor([3, 10]),
        active_features=torch.tensor([[0, 1, 5], [0, 1, 9]]),
        activation_values=torch.tensor([1.0, 2.0]),
        selected_features=torch.tensor([0, 1]),
        adjacency=A,
        logit_token_ids=torch.tensor([11]),
        logit_probabilities=torch.tensor([0.9]),
        n_layers=1,
    )


def test_influence_by_hand():
    influence, trace = node_influence(hand_graph())
    expected = torch.tensor([0.54, 0.18, 0.0, 0.18, 0.405, 0.315, 0.0])
    torch.testing.assert_close(influence, expected)
    assert len(trace) == 2  # paths of one and of two edges
    torch.testing.assert_close(trace[0], torch.tensor([0.54, 0.18, 0, 0.18, 0, 0, 0]))
    torch.testing.assert_close(trace[1], torch.tensor([0, 0, 0, 0, 0.405, 0.315, 0]))


def test_scores_by_hand():
    replacement, completeness = graph_scores(hand_graph())
    assert replacement == pytest.approx(0.72 / (0.72 + 0.18))
    # Only the logit row takes input from an error node (a share of .2); weights are
    # influence + logit weight: .54 .18 0 .18 .405 .315 .9, which sum to 2.52.
    assert completeness == pytest.approx((2.52 - 0.9 * 0.2) / 2.52)


def test_influence_series_detects_a_cycle():
    graph = hand_graph()
    graph.adjacency[2, 3] = 1.0  # two error nodes feeding each other: influence never dies out
    graph.adjacency[3, 2] = 1.0
    with pytest.raises(RuntimeError, match="cycle"):
        node_influence(graph)
