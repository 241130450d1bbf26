"""Pruning on the hand-worked graph of test_influence, and the memory-light edge cut-off."""

import pytest
import torch

from circuitflow.attribution import ThresholdError, prune
from circuitflow.attribution.prune import mass_threshold
from tests.attribution.test_influence import hand_graph


def test_node_threshold_keeps_the_top_share():
    # Influences sorted: f0 .54, tok0 .405, tok1 .315, f1 .18, err .18 (total 1.62); cumulative
    # shares .333 .583 .778 ...: a 0.7 threshold keeps f0 and both tokens (tokens and logits
    # are kept anyway); f1 and err(0,1) go.
    result = prune(hand_graph(), node_threshold=0.7, edge_threshold=0.98)
    assert result.node_mask.tolist() == [True, False, False, False, True, True, True]
    # On the pruned graph: logit <- f0 scores .9, f0 <- tok0 and f0 <- tok1 .45 each; 0.98 of
    # the total needs all three.
    kept = {tuple(e) for e in torch.nonzero(result.edge_mask).tolist()}
    assert kept == {(6, 0), (0, 4), (0, 5)}
    torch.testing.assert_close(
        result.cumulative_scores[[0, 4, 5]], torch.tensor([0.54, 0.945, 1.26]) / 1.62
    )


def test_cleanup_drops_features_that_lose_their_inputs():
    # A 0.5 edge threshold keeps only logit <- f0 (.9 of 1.8); f0 then has no incoming edge,
    # so f0 goes, and with it its edge.
    result = prune(hand_graph(), node_threshold=0.7, edge_threshold=0.5)
    assert result.node_mask.tolist() == [False, False, False, False, True, True, True]
    assert not result.edge_mask.any()


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, float("nan")])
def test_thresholds_outside_unit_interval_are_refused(bad):
    with pytest.raises(ThresholdError, match="node_threshold must be in"):
        prune(hand_graph(), node_threshold=bad)
    with pytest.raises(ThresholdError, match="edge_threshold must be in"):
        prune(hand_graph(), edge_threshold=bad)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.8, 0.98, 1.0])
def test_mass_threshold_equals_the_sorting_definition(fraction):
    torch.manual_seed(0)
    scores = torch.rand(300, 300) ** 4
    scores[scores < 0.05] = 0
    ordered = torch.sort(scores.flatten(), descending=True).values
    shares = torch.cumsum(ordered.double(), 0) / ordered.double().sum()
    index = min(int(torch.searchsorted(shares, fraction)), len(ordered) - 1)
    expected = float(ordered[index])
    if expected == 0:  # a cut at zero keeps every nonzero score
        expected = float(ordered[ordered > 0].min())
    assert mass_threshold(scores, fraction) == expected


def test_details_list_kept_edges_with_their_scores():
    from circuitflow.attribution import prune_with_details

    details = prune_with_details(hand_graph(), node_threshold=0.7, edge_threshold=0.98)
    assert details.kept_edges.tolist() == [[0, 4], [0, 5], [6, 0]]
    torch.testing.assert_close(details.edge_scores, torch.tensor([0.45, 0.45, 0.9]))
    # The pruned graph's influence: f0 .9 through one edge, tokens .45 each through two.
    torch.testing.assert_close(details.edge_trace[0][[0, 4, 5]], torch.tensor([0.9, 0.0, 0.0]))
    torch.testing.assert_close(details.edge_trace[1][[0, 4, 5]], torch.tensor([0.0, 0.45, 0.45]))


@pytest.mark.parametrize("thresholds", [(0.8, 0.98), (0.5, 0.9), (1.0, 1.0)])
def test_a_given_influence_gives_the_same_result(thresholds):
    """Re-pruning may pass the (threshold-free) node influence it already has."""
    from circuitflow.attribution import ReplacementModel, attribute, node_influence
    from circuitflow.attribution.toy import random_model, random_transcoders

    model = random_model("gpt2")
    graph = attribute("w1 w2 w3 w5 w8", ReplacementModel(model, random_transcoders(model)))
    plain = prune(graph, *thresholds)
    given = prune(graph, *thresholds, influence=node_influence(graph)[0])
    for a, b in zip(plain, given, strict=True):
        assert torch.equal(a, b)
    assert int(plain.node_mask.sum()) > 0 and int(plain.edge_mask.sum()) > 0
