"""What the viewer shows of a recorded run, as JSON-ready dicts.

- `overview()`: the run panel (prompt, target logits and their probabilities, replacement and
  completeness scores) and the data of the three plots: the influence trace (how much each
  step of the influence series adds, per node, as one histogram per step: the seed notebook's
  ridgeline), the distribution of node influence, and the cumulative influence curve that the
  node threshold cuts. When an analysis of the run kept the influence series at the
  `influence_iteration` point (`trace` with values [term], as configs/analysis/
  seed_walkthrough.yaml does), a fourth plot draws it from those captured values, for the
  whole graph and for the node-pruned graph that edge pruning runs the series on.
- `pruned(node_threshold, edge_threshold)`: the graph pruned at those thresholds by
  `attribution.prune` itself, so what the page draws is exactly what pruning keeps (it is
  handed the run's stored node influence, which does not depend on the thresholds). Nodes come
  with what the details panel shows, their strongest inputs and outputs in the whole graph
  included; links come as parallel arrays (source and target positions in `node_ids`, weight),
  compact enough for the 10^5 links a dense graph keeps.

The graph is read once from the store (`RunContext.graph`); re-pruning works on it in memory.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from functools import cached_property

import torch

from circuitflow.attribution import prune
from circuitflow.attribution.params import check
from circuitflow.attribution.prune import ThresholdError, cumulative_shares
from circuitflow.attribution.supernodes import proposals
from circuitflow.flows.analysis_read import analyses, captured_series
from circuitflow.tasks.context import RunContext
from circuitflow.tasks.features import find_dashboards
from circuitflow.tasks.labels import feature_labels, set_label
from circuitflow.tasks.recorded import graph_stages, require_stored

TOP_LINKS = 5  # strongest inputs and outputs listed per node
TRACE_BINS = 40
TRACE_DECADES = 8  # contributions below max / 10^8 are left out of the trace plot
CURVE_POINTS = 400
CACHED_VIEWS = 64


def rounded(value: float, digits: int | None) -> float:
    return float(f"{value:.{digits}g}") if digits else value


def histogram(values: torch.Tensor, low: float, high: float, bins: int) -> list[int]:
    """Counts of `values` in `bins` equal bins over [low, high] (values outside are clipped)."""
    if values.numel() == 0:
        return [0] * bins
    width = (high - low) / bins or 1.0
    index = ((values - low) / width).floor().clamp(0, bins - 1).long()
    return torch.bincount(index, minlength=bins).tolist()


def trace_histograms(trace: torch.Tensor, l1: dict[int, float]) -> dict:
    """The ridgeline's data for `trace` (n_steps, M): per step, a histogram of log10 of the
    positive values over the top `TRACE_DECADES` decades, its sum (`l1[step]` when given) and
    its non-zero count."""
    positive = trace[trace > 0]
    if positive.numel() == 0:
        return {"low": 0.0, "high": 1.0, "steps": []}
    high = math.log10(float(positive.max()))
    low = high - TRACE_DECADES
    steps = []
    for step, term in enumerate(trace):
        values = term[term > 0]
        logs = torch.log10(values[values >= 10**low])
        steps.append(
            {
                "iteration": step,
                "l1": l1.get(step, float(term.abs().sum())),
                "nnz": int(values.numel()),
                "counts": histogram(logs, low, high, TRACE_BINS),
            }
        )
    return {"low": low, "high": high, "steps": steps}


class RunView:
    """A recorded run, ready to be drawn and re-pruned."""

    def __init__(self, run: RunContext) -> None:
        require_stored(run, *graph_stages(run), "influence", "prune")
        self.run = run
        self.graph = run.graph
        self.ids = self.graph.node_ids()
        self.index = {node_id: i for i, node_id in enumerate(self.ids)}
        influence = run.record("influence")
        self.influence = influence.influence  # (N,) float32, as `node_influence` gave it
        self.trace = influence.trace  # (n_steps, N)
        self.row = run.store.catalog.read("runs", run.run_id).to_pylist()[0]
        self.labels = feature_labels(run.store, self.row["transcoders_digest"])
        self.dashboards = find_dashboards(run.store, self.row["transcoders_digest"])
        self._lock = threading.Lock()
        self._overview: dict | None = None
        self._details: dict[tuple[int, int | None], dict] = {}
        self._cumulative = cumulative_shares(self.influence)  # what prune reports, per node
        self._views: OrderedDict[tuple[float, float, int | None], dict] = OrderedDict()

    # ----------------------------------------------------------------------------- overview

    @cached_property
    def _sorted_influence(self) -> torch.Tensor:
        """(N,) node influence, largest first."""
        return torch.sort(self.influence, descending=True).values

    @cached_property
    def _sorted_shares(self) -> torch.Tensor:
        """(N,) cumulative share of total influence of the k most influential nodes, k = 1..N."""
        ordered = self._sorted_influence
        return torch.cumsum(ordered, 0) / ordered.sum()

    def overview(self) -> dict:
        if self._overview is None:
            self._overview = self._make_overview()
        return self._overview

    def _make_overview(self) -> dict:
        graph, row = self.graph, self.row
        logits = sorted(
            self.run.store.catalog.read("logits", self.run.run_id).to_pylist(),
            key=lambda r: r["rank"],
        )
        return {
            "run": {
                "run_id": self.run.run_id,
                "prompt": self.run.prompt,
                "model": self.run.setup.model_label,
                "transcoders": self.run.setup.transcoders_label,
                "prompt_tokens": list(graph.token_strings),
                "n_layers": graph.n_layers,
                "n_pos": graph.n_pos,
                "n_nodes": graph.n_nodes,
                "n_features": graph.n_features,
                "n_active_features": int(graph.active_features.shape[0]),
                "node_threshold": row["node_threshold"],
                "edge_threshold": row["edge_threshold"],
                "replacement_score": row["replacement_score"],
                "completeness_score": row["completeness_score"],
                "logits": [
                    {
                        "rank": r["rank"],
                        # A direction target (issue 14) has a name and a weight, no token.
                        "token": r["token"] if r["token"] is not None else r["name"],
                        "token_id": r["token_id"],
                        "prob": r["prob"] if r["prob"] is not None else r["weight"],
                        "kind": r["kind"] or "token",
                        "id": self.ids[graph.logit_start + r["rank"]],
                    }
                    for r in logits
                ],  # fmt: skip
            },
            "plots": {
                "trace": self.trace_plot(),
                "analysis": self.analysis_plot(),
                "influence": self.influence_plot(),
                "cumulative": self.cumulative_plot(),
            },
        }

    def trace_plot(self) -> dict:
        """One histogram per step of the influence series, over log10 of each node's share."""
        l1 = {
            r["iteration"]: r["l1"]
            for r in self.run.store.catalog.read("influence_traces", self.run.run_id).to_pylist()
            if r["phase"] == "node"
        }
        return trace_histograms(self.trace, l1)

    def analysis_plot(self) -> dict | None:
        """The influence series as the run's latest analysis captured it at the
        `influence_iteration` point (the `trace` function keeping `term`), per phase: "node"
        (the whole graph) and "edge" (the node-pruned graph that edge pruning scores); None
        when no analysis of the run kept it."""
        store, run_id = self.run.store, self.run.run_id
        phases = {}
        for phase in ("node", "edge"):
            series = captured_series(store, run_id, "influence_iteration", "term", phase=phase)
            if series is not None:
                phases[phase] = trace_histograms(torch.from_numpy(series), {})
        if not phases:
            return None
        return {"analysis_id": analyses(store, run_id)[-1], "phases": phases}

    def influence_plot(self) -> dict:
        """Histogram of log10 influence of the nodes with any, by node kind."""
        graph = self.graph
        kinds = {
            "feature": slice(0, graph.error_start),
            "error": slice(graph.error_start, graph.token_start),
            "token": slice(graph.token_start, graph.logit_start),
        }
        positive = self.influence[: graph.logit_start]
        positive = positive[positive > 0]
        if positive.numel() == 0:
            return {"low": 0.0, "high": 1.0, "counts": {}}
        logs = torch.log10(positive)
        high = float(logs.max()) + 1e-6
        low = max(float(logs.min()), high - TRACE_DECADES)
        counts = {}
        for kind, where in kinds.items():
            values = self.influence[where]
            counts[kind] = histogram(torch.log10(values[values > 0]), low, high, TRACE_BINS)
        return {
            "low": low,
            "high": high,
            "counts": counts,
            "zero": int((self.influence == 0).sum()),
        }

    def cumulative_plot(self) -> dict:
        """The cumulative share of influence of the k most influential nodes (thinned)."""
        shares = self._sorted_shares
        n = len(shares)
        ranks = sorted({*torch.linspace(1, n, min(n, CURVE_POINTS)).round().long().tolist(), n})
        return {"n": n, "ranks": ranks, "shares": [float(shares[k - 1]) for k in ranks]}

    def cut_rank(self, node_threshold: float) -> int:
        """How many nodes the node threshold keeps before edge pruning cleans up: the rank at
        which the cumulative share first reaches it (ties aside)."""
        index = int(torch.searchsorted(self._sorted_shares, node_threshold))
        return min(index, len(self._sorted_shares) - 1) + 1

    # ------------------------------------------------------------------------------ pruning

    def pruned(self, node_threshold: float, edge_threshold: float, digits: int | None = None):
        """The graph pruned at the thresholds (see the module docs); cached per threshold pair.

        `digits` rounds weights and shares to that many significant digits (for files).
        """
        check("node_threshold", node_threshold, ThresholdError)
        check("edge_threshold", edge_threshold, ThresholdError)
        where = (float(node_threshold), float(edge_threshold), digits)
        with self._lock:
            if where not in self._views:
                start = time.perf_counter()
                view = self._prune(*where)
                view["seconds"] = time.perf_counter() - start
                self._views[where] = view
                while len(self._views) > CACHED_VIEWS:
                    self._views.popitem(last=False)
            self._views.move_to_end(where)
            return self._views[where]

    def _prune(self, node_threshold: float, edge_threshold: float, digits: int | None) -> dict:
        graph = self.graph
        # The stored node influence is what prune would compute first: pass it on.
        result = prune(graph, node_threshold, edge_threshold, influence=self.influence)
        kept = torch.nonzero(result.node_mask).flatten()
        position = torch.full((graph.n_nodes,), -1, dtype=torch.long)
        position[kept] = torch.arange(len(kept))
        targets, sources = torch.nonzero(result.edge_mask, as_tuple=True)
        weights = graph.adjacency[targets, sources].tolist()
        node_ids = [self.ids[i] for i in kept.tolist()]
        cut = self.cut_rank(node_threshold)
        return {
            "node_threshold": node_threshold,
            "edge_threshold": edge_threshold,
            "node_ids": node_ids,
            "nodes": dict(zip(node_ids, self.nodes(kept, digits), strict=True)),
            # Parallel arrays (compact for 10^5 links): positions in node_ids, and weights.
            "links": {
                "source": position[sources].tolist(),
                "target": position[targets].tolist(),
                "weight": [rounded(w, digits) for w in weights] if digits else weights,
            },
            "cut_rank": cut,
            "cut_influence": float(self._sorted_influence[cut - 1]),
        }

    def nodes(self, indices: torch.Tensor, digits: int | None = None) -> list[dict]:
        """What the details panel shows of each node (none of it depends on the thresholds, so
        it is computed once per node)."""
        missing = [i for i in indices.tolist() if (i, digits) not in self._details]
        if missing:
            inputs = self._strongest(self.graph.adjacency[missing], digits)
            outputs = self._strongest(self.graph.adjacency[:, missing].T, digits)
            for i, into, out in zip(missing, inputs, outputs, strict=True):
                self._details[(i, digits)] = self.node(i, digits) | {"inputs": into, "outputs": out}
        return [self._details[(i, digits)] for i in indices.tolist()]

    def node(self, index: int, digits: int | None = None) -> dict:
        """One node's kind, place, token, activation, influence and label."""
        graph = self.graph
        node = graph.node(index)
        token = graph.token(node.pos) or ""
        prob = None
        if node.kind == "logit":
            rank = index - graph.logit_start
            token = graph.logit_tokens[rank] if rank < len(graph.logit_tokens) else ""
            prob = float(graph.logit_probabilities[rank])
        return {
            "id": self.ids[index],
            "kind": node.kind,
            "layer": node.layer,
            "pos": node.pos,
            "feature": node.feature,
            "token": token,
            "token_id": node.token_id,
            "activation": node.activation,
            "influence": rounded(float(self.influence[index]), digits),
            "cumulative": rounded(float(self._cumulative[index]), digits),
            "prob": prob,
            "label": self.label(node, token, prob),
            "dashboard": self.dashboard(node),
        }

    def supernodes(self, node_threshold: float, edge_threshold: float) -> list[list[str]]:
        """Proposed supernodes of the graph pruned at the thresholds (`attribution.supernodes`)."""
        view = self.pruned(node_threshold, edge_threshold)
        kept = [self.index[i] for i in view["node_ids"]]
        features = [i for i in kept if i < self.graph.error_start]
        labels = {}
        for i in features:
            node = self.graph.node(i)
            labels[i] = self.labels.get((node.layer, node.feature), "")
        return proposals(self.graph.adjacency, self.ids, features, kept, labels)

    def dashboard(self, node) -> dict | None:
        """A feature's statistics, top contexts and logits, where dashboards exist."""
        if node.kind != "feature" or self.dashboards is None:
            return None
        return self.dashboards.summary(node.layer, node.feature)

    def set_label(self, layer: int, feature: int, text: str, author: str | None) -> dict:
        """Record a human label for a feature of this run's transcoders; the nodes shown from
        now on carry it."""
        width = None if self.dashboards is None else int(self.dashboards.stats.count.shape[1])
        row = set_label(self.run.store, self.row["transcoders_digest"], layer, feature, text,
                        author, n_layers=self.graph.n_layers, n_features=width)  # fmt: skip
        with self._lock:
            self.labels = feature_labels(self.run.store, self.row["transcoders_digest"])
            self._details.clear()
            self._views.clear()
        return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in row.items()}

    def label(self, node, token: str, prob: float | None) -> str:
        if node.kind == "feature":
            return self.labels.get((node.layer, node.feature), "")
        if node.kind == "error":
            return f"error of layer {node.layer}'s transcoder at {token!r}"
        if node.kind == "token":
            return f"embedding of {token!r}"
        return f'Output "{token}" (p={prob:.3f})'

    def _strongest(self, weights: torch.Tensor, digits: int | None) -> list[list[list]]:
        """Per row of `weights` (n, N): [[node id, weight], ...] of its largest |weight|s,
        strongest first, zeros left out."""
        k = min(TOP_LINKS, weights.shape[1])
        values, columns = torch.topk(weights.abs(), k, dim=1)
        signed = torch.gather(weights, 1, columns)
        out = []
        for magnitudes, where, row in zip(values.tolist(), columns.tolist(), signed.tolist(),
                                          strict=True):  # fmt: skip
            out.append(
                [[self.ids[c], rounded(w, digits)] for m, c, w in zip(magnitudes, where, row,
                                                                     strict=True) if m > 0]
            )  # fmt: skip
        return out
