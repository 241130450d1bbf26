"""Supernode suggestions on a hand-built graph whose groups are known."""

import torch

from circuitflow.attribution.supernodes import proposals, suggest_supernodes


def graph() -> torch.Tensor:
    """Nodes 0-3 are features, 4-5 tokens, 6-7 logits (rows: targets, columns: sources).

    Features 0 and 1 both read token 4 and write logit 6; features 2 and 3 both read token 5
    and write logit 7: two pairs, each alike inside and unlike across.
    """
    a = torch.zeros(8, 8)
    a[0, 4], a[1, 4] = 1.0, 2.0
    a[2, 5], a[3, 5] = 1.5, 0.5
    a[6, 0], a[6, 1] = 1.0, 0.7
    a[7, 2], a[7, 3] = 0.3, 0.9
    return a


def test_features_with_the_same_inputs_and_outputs_group():
    groups = suggest_supernodes(graph(), [0, 1, 2, 3], range(8), ["", "", "", ""])
    assert groups == [[0, 1], [2, 3]]


def test_a_shared_label_helps_but_does_not_force():
    a = graph()
    a[6, 1], a[7, 1] = 0.0, 0.7  # feature 1 now writes logit 7: half like 0, half like 2 and 3
    alike = suggest_supernodes(a, [0, 1], range(8), ["Texas", "Texas"], threshold=0.6)
    apart = suggest_supernodes(a, [0, 1], range(8), ["", ""], threshold=0.6)
    assert alike == [[0, 1]] and apart == []
    unlike = suggest_supernodes(graph(), [0, 2], range(8), ["Texas", "Texas"])
    assert unlike == []  # nothing in common but the label


def test_proposals_are_named_supernodes_of_node_ids():
    ids = [f"n{i}" for i in range(8)]
    made = proposals(graph(), ids, [0, 1, 2, 3], range(8), {0: "cities", 1: "cities"})
    assert made == [["cities", "n0", "n1"], ["group 2", "n2", "n3"]]
