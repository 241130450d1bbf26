"""Supernode suggestions: kept features that play the same part in a graph, grouped.

Two features play the same part when they read from the same nodes and write to the same
nodes. A feature's input profile is its row of the adjacency matrix restricted to the kept
nodes (what feeds it), its output profile its column (what it feeds); their cosine
similarities, averaged, say how alike two features are in this graph. Features that share a
label (a person's, or the same automatic one) are a little more alike (`label_bonus`).

Groups are made by average-linkage agglomeration: repeatedly join the two most alike groups
(the mean similarity of their members) until no two are alike above `threshold`. Only groups of
two or more are proposed; accepting one is the person's call (the viewer's subgraph panel).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import torch


def profile_similarity(adjacency: torch.Tensor, features: Sequence[int],
                       kept: Sequence[int]) -> torch.Tensor:  # fmt: skip
    """(n, n) mean of input- and output-profile cosine similarities of `features` (indices into
    the (N, N) adjacency, rows targets), over the `kept` nodes."""
    rows = torch.as_tensor(list(features))
    cols = torch.as_tensor(list(kept))
    inputs = adjacency[rows][:, cols].float()  # (n, k) what feeds each feature
    outputs = adjacency[cols][:, rows].T.float()  # (n, k) what each feature feeds

    def cosine(x: torch.Tensor) -> torch.Tensor:
        unit = x / x.norm(dim=1, keepdim=True).clamp(min=1e-12)
        return unit @ unit.T

    return (cosine(inputs) + cosine(outputs)) / 2


def suggest_supernodes(
    adjacency: torch.Tensor,
    features: Sequence[int],
    kept: Sequence[int],
    labels: Sequence[str],
    *,
    threshold: float = 0.6,
    label_bonus: float = 0.2,
) -> list[list[int]]:
    """Groups (lists of indices into `features`, each of two or more, largest first)."""
    n = len(features)
    if n < 2:
        return []
    similar = profile_similarity(adjacency, features, kept)
    same = torch.tensor([[bool(a) and a == b for b in labels] for a in labels])
    similar = similar + label_bonus * same
    groups: list[list[int]] = [[i] for i in range(n)]
    while len(groups) > 1:
        best, pair = threshold, None
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                score = float(similar[groups[a]][:, groups[b]].mean())
                if score > best:
                    best, pair = score, (a, b)
        if pair is None:
            break
        a, b = pair
        groups[a] = groups[a] + groups.pop(b)
    return sorted((sorted(g) for g in groups if len(g) > 1), key=lambda g: (-len(g), g))


def group_name(members: Sequence[int], labels: Sequence[str], fallback: str) -> str:
    """The label most members share, else `fallback`."""
    counts = Counter(labels[m] for m in members if labels[m])
    if counts:
        label, seen = counts.most_common(1)[0]
        if seen > 1:
            return label[:100]
    return fallback


def proposals(
    adjacency: torch.Tensor,
    node_ids: Sequence[str],
    features: Sequence[int],
    kept: Sequence[int],
    labels: Mapping[int, str],
    **settings: float,
) -> list[list[str]]:
    """Supernodes as the viewer and the export write them: [name, member id, ...]."""
    names = [labels.get(f, "") for f in features]
    groups = suggest_supernodes(adjacency, features, kept, names, **settings)
    return [
        [group_name(g, names, f"group {k + 1}"), *(node_ids[features[m]] for m in g)]
        for k, g in enumerate(groups)
    ]
