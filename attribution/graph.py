"""Stage 4, assemble: the attribution graph as one square adjacency matrix.

Node order (rows are targets, columns are sources):

    [ selected features (layer, position, feature order) | errors, layer-major | tokens | logits ]
      0 .. n_sel - 1                                       n_sel + layer * n_pos + pos

Feature rows and logit rows hold the computed edges; error and token rows are zero (nothing is
attributed *into* them), and so are the logit columns (logits feed nothing). Edges from features
left out by a feature budget are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

import torch

import circuitflow.attribution.analysis as analysis
from circuitflow.attribution.precompute import Precompute
from circuitflow.attribution.rows import Rows
from circuitflow.attribution.serialize import Record
from circuitflow.attribution.targets import Targets


class Node(NamedTuple):
    """What one node of a graph stands for.

    kind:       "feature", "error", "token" or "logit"
    layer:      the layer of a feature or error node; n_layers for logits (the output); None
                for tokens (they come before every layer)
    pos:        the token position (logits: the last position, which they are predicted at)
    feature:    the transcoder feature (feature nodes)
    token_id:   the token (token and logit nodes)
    activation: the feature's activation (feature nodes)
    """

    kind: str
    layer: int | None
    pos: int
    feature: int | None = None
    token_id: int | None = None
    activation: float | None = None


@dataclass
class AttributionGraph(Record):
    """A prompt's attribution graph and what is needed to read it.

    tokens:              (n_pos,) int64 prompt tokens, start token first
    active_features:     (n_active, 3) int64 (layer, position, feature), lexicographic
    activation_values:   (n_active,) activations
    selected_features:   (n_sel,) int64 indices into active_features that are nodes
    adjacency:           (N, N) float32, N = n_sel + (n_layers + 1) * n_pos + n_logits
    logit_token_ids:     (k,) int64
    logit_probabilities: (k,) float32
    n_layers:            layers of the model (the graph's error nodes are n_layers x n_pos)
    logit_tokens:        the decoded target tokens
    token_strings:       the decoded prompt tokens
    """

    tokens: torch.Tensor
    active_features: torch.Tensor
    activation_values: torch.Tensor
    selected_features: torch.Tensor
    adjacency: torch.Tensor
    logit_token_ids: torch.Tensor
    logit_probabilities: torch.Tensor
    n_layers: int
    logit_tokens: list[str] = field(default_factory=list)
    token_strings: list[str] = field(default_factory=list)

    @property
    def n_pos(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.selected_features.shape[0])

    @property
    def n_logits(self) -> int:
        return int(self.logit_token_ids.shape[0])

    @property
    def n_nodes(self) -> int:
        return int(self.adjacency.shape[0])

    @property
    def error_start(self) -> int:
        return self.n_features

    @property
    def token_start(self) -> int:
        return self.n_features + self.n_layers * self.n_pos

    @property
    def logit_start(self) -> int:
        return self.token_start + self.n_pos

    def node(self, index: int) -> Node:
        """The node at row/column `index` of the adjacency matrix."""
        if index < self.error_start:
            layer, pos, feature, value = self._feature_nodes[index]
            return Node("feature", layer, pos, feature=feature, activation=value)
        if index < self.token_start:
            layer, pos = divmod(index - self.error_start, self.n_pos)
            return Node("error", layer, pos)
        if index < self.logit_start:
            pos = index - self.token_start
            return Node("token", None, pos, token_id=self._token_ids[pos])
        token_id = self._logit_token_ids[index - self.logit_start]
        return Node("logit", self.n_layers, self.n_pos - 1, token_id=token_id)

    # Python copies of the tensors `node` reads: indexing a tensor per node costs 40 us.
    @cached_property
    def _feature_nodes(self) -> list[tuple[int, int, int, float]]:
        places = self.active_features[self.selected_features].tolist()
        values = self.activation_values[self.selected_features].tolist()
        return [(*place, value) for place, value in zip(places, values, strict=True)]

    @cached_property
    def _token_ids(self) -> list[int]:
        return self.tokens.tolist()

    @cached_property
    def _logit_token_ids(self) -> list[int]:
        return self.logit_token_ids.tolist()

    def nodes(self) -> list[Node]:
        """Every node, in matrix order."""
        return list(self._nodes)

    def node_ids(self) -> list[str]:
        """Stable string ids, in node order, in the field's convention (see `node_id`)."""
        return list(self._node_ids)

    # A run's catalog entries and graph document each walk every node: build them once.
    @cached_property
    def _nodes(self) -> tuple[Node, ...]:
        return tuple(self.node(index) for index in range(self.n_nodes))

    @cached_property
    def _node_ids(self) -> tuple[str, ...]:
        return tuple(node_id(node) for node in self._nodes)

    def token(self, pos: int) -> str | None:
        """The decoded prompt token at `pos` (None when the graph carries no strings)."""
        return self.token_strings[pos] if pos < len(self.token_strings) else None


def node_id(node: Node) -> str:
    """A node's string id, as circuit-tracer and Neuronpedia write them.

    features '{layer}_{feature}_{pos}'; errors '{layer}_-1_{pos}' (feature -1: no feature, and
    no collision with a feature id); tokens 'E_{token id}_{pos}'; logits
    '{n_layers + 1}_{token id}_{pos}' (one layer above the last, where the output sits).
    """
    if node.kind == "feature":
        return f"{node.layer}_{node.feature}_{node.pos}"
    if node.kind == "error":
        return f"{node.layer}_-1_{node.pos}"
    if node.kind == "token":
        return f"E_{node.token_id}_{node.pos}"
    return f"{node.layer + 1}_{node.token_id}_{node.pos}"


def assemble(
    pre: Precompute, targets: Targets, rows: Rows, token_strings: list[str] | None = None
) -> AttributionGraph:
    """Place the computed rows into the square adjacency of the selected nodes."""
    n_active, n_sel, n_logits = pre.n_active, len(rows.selected_features), len(targets)
    n_other = (pre.n_layers + 1) * pre.n_pos
    n_nodes = n_sel + n_other + n_logits
    # Keep the columns of selected features and of every error and token node.
    columns = torch.cat([rows.selected_features, torch.arange(n_active, n_active + n_other)])
    rank = torch.full((n_active,), -1, dtype=torch.long)
    rank[rows.selected_features] = torch.arange(n_sel)

    adjacency = torch.zeros(n_nodes, n_nodes, dtype=torch.float32)
    is_logit = rows.row_nodes >= n_active + n_other
    target_index = torch.where(
        is_logit,
        n_sel + n_other + (rows.row_nodes - n_active - n_other),
        rank[rows.row_nodes.clamp(max=n_active - 1)] if n_active else rows.row_nodes,
    )
    adjacency[target_index, : n_sel + n_other] = rows.matrix[:, columns].float()
    graph = AttributionGraph(
        tokens=pre.tokens,
        active_features=pre.active_features,
        activation_values=pre.activation_values.float().cpu(),
        selected_features=rows.selected_features,
        adjacency=adjacency,
        logit_token_ids=targets.token_ids,
        logit_probabilities=targets.probabilities.float(),
        n_layers=pre.n_layers,
        logit_tokens=list(targets.token_strings),
        token_strings=list(token_strings or []),
    )
    if analysis.wants("graph_assembled"):
        analysis.fire(
            "graph_assembled",
            adjacency=adjacency,
            selected_features=graph.selected_features,
            logit_token_ids=graph.logit_token_ids,
            logit_probabilities=graph.logit_probabilities,
            error_start=graph.error_start,
            token_start=graph.token_start,
            logit_start=graph.logit_start,
        )
    return graph
