"""Stage 3, rows: the edges into each target node, computed with backward passes.

With the model linearised (see `replacement.py`), the direct effect of source s on target t is

    A[t, s] = < d(target input) / d(site where s writes), output vector of s >

so one backward pass from a target gives its whole row: inject the target's input vector (a
feature's encoder row, a logit's demeaned unembedding column) as the gradient at its input site,
and contract the gradients that arrive at every output site with the source vectors written there:
feature activation x decoder row at its output layer(s), error vectors, token embeddings.

The forward pass runs the prompt once; each backward pass carries up to `batch_size` target
gradients through it at once (vmapped by autograd) and yields that many rows.

Columns are all nodes in the order of DESIGN.md *before* the feature budget is applied: every
active feature, then errors layer-major (n_active + layer * n_pos + pos), then tokens. Rows are
computed first for the logits, then for features. With a feature budget (`max_feature_nodes`),
features are visited in order of their influence on the logits as estimated from the rows so far,
refreshed every `update_interval x batch_size` features; only visited features become nodes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

import circuitflow.attribution.analysis as analysis
from circuitflow.attribution.influence import partial_influence
from circuitflow.attribution.params import DEFAULTS, check
from circuitflow.attribution.precompute import Precompute
from circuitflow.attribution.replacement import ReplacementModel, Sites
from circuitflow.attribution.serialize import Record
from circuitflow.attribution.targets import Targets


class BudgetError(ValueError):
    """Feature budget settings that cannot be used."""


@dataclass
class Rows(Record):
    """Computed rows of the adjacency matrix, in the order they were computed.

    matrix:            (n_logits + n_visited, n_active + (L + 1) * n_pos) float32, one row per
                       target node, in the order computed
    row_nodes:         (n_rows,) int64: the node each row belongs to; a feature's index into
                       active_features, or n_active + (L + 1) * n_pos + i for logit i
    selected_features: (n_visited,) int64 indices into active_features, ascending
    """

    matrix: torch.Tensor
    row_nodes: torch.Tensor
    selected_features: torch.Tensor


def check_budget(max_feature_nodes: int | None, batch_size: int, update_interval: int) -> None:
    check("max_feature_nodes", max_feature_nodes, BudgetError)
    check("batch_size", batch_size, BudgetError)
    check("update_interval", update_interval, BudgetError)


class _SourceVectors:
    """Every source's output vector, arranged for fast contraction with gradients.

    For output layer j, features writing there are grouped by position into a padded block
    (n_pos, d_model, max_per_pos) so that one batched matmul with the gradients (n_pos, batch,
    d_model) gives all their edge weights; `columns` maps each padded slot back to its column.
    """

    def __init__(self, replacement: ReplacementModel, pre: Precompute) -> None:
        tc = replacement.transcoders
        device, dtype = replacement.device, tc.dtype
        n_layers, n_pos, n_active = pre.n_layers, pre.n_pos, pre.n_active
        self.n_pos, self.n_active = n_pos, n_active
        self.errors = pre.error_vectors.to(device, dtype)  # (L, n_pos, d)
        self.tokens = pre.token_vectors.to(device, dtype)  # (n_pos, d)

        # Every feature's output vectors, by the layer they are written at.
        by_layer: list[list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = [
            [] for _ in range(n_layers)
        ]
        active = pre.active_features
        values = pre.activation_values.to(device, dtype)
        for out_layer, index, vectors in tc.decoded_outputs(active, values):
            by_layer[out_layer].append((index, active[index, 1], vectors))

        self.blocks: list[tuple[torch.Tensor, torch.Tensor] | None] = []
        for entries in by_layer:
            if not entries:
                self.blocks.append(None)
                continue
            cols = torch.cat([e[0] for e in entries])
            pos = torch.cat([e[1] for e in entries])
            vecs = torch.cat([e[2] for e in entries])
            self.blocks.append(_pad_by_position(cols, pos, vecs, n_pos))

    def contract(self, grads: dict[int, torch.Tensor], embed_grad: torch.Tensor) -> torch.Tensor:
        """Edge weights of n rows from the gradients at the output sites, each (n, n_pos, d)
        -> (n, n_cols)."""
        n, n_layers = len(embed_grad), len(self.blocks)
        n_pos, n_active = self.n_pos, self.n_active
        out = torch.zeros(n, n_active + (n_layers + 1) * n_pos, device=embed_grad.device)
        for layer, grad in grads.items():
            block = self.blocks[layer]
            if block is not None:
                padded, columns = block  # (n_pos, d, m), (n_pos, m)
                weights = torch.bmm(grad.transpose(0, 1), padded)  # (n_pos, n, m)
                valid = columns >= 0
                out[:, columns[valid]] += weights.permute(1, 0, 2)[:, valid]
            start = n_active + layer * n_pos
            out[:, start : start + n_pos] = torch.einsum("bpd,pd->bp", grad, self.errors[layer])
        start = n_active + n_layers * n_pos
        out[:, start:] = torch.einsum("bpd,pd->bp", embed_grad, self.tokens)
        return out


def _pad_by_position(cols, pos, vecs, n_pos):
    """Group source vectors (m, d) by position into (n_pos, d, max_m) with a column map."""
    order = torch.argsort(pos.to(vecs.device), stable=True)
    cols, pos, vecs = cols[order.cpu()], pos[order.cpu()], vecs[order]
    counts = torch.bincount(pos, minlength=n_pos)
    width = int(counts.max())
    slot = torch.arange(len(pos)) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
    padded = torch.zeros(n_pos, width, vecs.shape[1], device=vecs.device, dtype=vecs.dtype)
    padded[pos.to(vecs.device), slot.to(vecs.device)] = vecs
    columns = torch.full((n_pos, width), -1, dtype=torch.long)
    columns[pos, slot] = cols
    return padded.transpose(1, 2).contiguous(), columns.to(vecs.device)


def _backward_rows(
    sites: Sites,
    sources: _SourceVectors,
    layers: torch.Tensor,  # (n,) layer of each target's input site; n_layers means the logits
    positions: torch.Tensor,  # (n,)
    vectors: torch.Tensor,  # (n, d) injected gradient
) -> torch.Tensor:
    """One backward pass for `n` targets -> their rows (n, n_cols).

    Target i's gradient is its vector at its position of its input site, zero elsewhere; the
    n gradients go through the one forward pass as a batch (`is_grads_batched`).
    """
    n_layers = len(sites.inputs)
    n = len(layers)
    outputs, grad_outputs = [], []
    for layer in layers.unique().tolist():
        site = sites.final if layer == n_layers else sites.inputs[layer]  # (1, n_pos, d)
        grad = site.new_zeros((n, *site.shape))  # (n, 1, n_pos, d)
        pick = torch.nonzero(layers == layer).flatten()
        grad[pick.to(grad.device), 0, positions[pick].to(grad.device)] = vectors[pick].to(grad)
        outputs.append(site)
        grad_outputs.append(grad)
    # Sources write at outputs of layers strictly before the deepest target's input site.
    top = int(layers.max())
    wanted = [layer for layer in range(min(top, n_layers)) if sites.outputs[layer] is not None]
    inputs = [sites.outputs[layer] for layer in wanted] + [sites.embed]
    grads = torch.autograd.grad(
        outputs,
        inputs,
        grad_outputs,
        retain_graph=True,
        allow_unused=True,
        materialize_grads=True,
        is_grads_batched=True,
    )
    grads = [g[:, 0] for g in grads]  # (n, n_pos, d) each
    by_layer = dict(zip(wanted, grads[:-1], strict=True))
    return sources.contract(by_layer, grads[-1])


def compute_rows(
    replacement: ReplacementModel,
    pre: Precompute,
    targets: Targets,
    *,
    max_feature_nodes: int | None = DEFAULTS.max_feature_nodes,
    batch_size: int = DEFAULTS.batch_size,
    update_interval: int = DEFAULTS.update_interval,
    progress: Callable[[int, int], None] | None = None,
) -> Rows:
    """Compute the logit rows, then feature rows (all features, or a budget of the most
    influential ones). `progress(done, total)` is called after each backward pass."""
    check_budget(max_feature_nodes, batch_size, update_interval)
    tc = replacement.transcoders
    n_layers, n_pos, n_active = pre.n_layers, pre.n_pos, pre.n_active
    n_logits = len(targets)
    logit_node0 = n_active + (n_layers + 1) * n_pos
    budget = n_active if max_feature_nodes is None else min(max_feature_nodes, n_active)
    device = replacement.device

    sources = _SourceVectors(replacement, pre)
    feature_layers = pre.active_features[:, 0]
    feature_positions = pre.active_features[:, 1]

    rows = torch.zeros(n_logits + budget, logit_node0)
    row_nodes = torch.zeros(n_logits + budget, dtype=torch.long)
    done = 0

    with replacement.linearized() as sites:
        replacement.linear_forward(pre.tokens, sites)
        if analysis.wants("rows_forward_end"):
            analysis.fire(
                "rows_forward_end",
                batch_size=batch_size,
                feature_inputs=torch.stack([s.detach()[0] for s in sites.inputs]),
                mlp_outputs=torch.stack([s.detach()[0] for s in sites.outputs]),
                embed=sites.embed.detach()[0],
                final_residual=sites.final.detach()[0],
            )

        def run(layers, positions, vectors):
            nonlocal done
            block = _backward_rows(sites, sources, layers, positions, vectors)
            rows[done : done + len(layers)] = block.cpu()
            done += len(layers)
            if progress is not None:
                progress(done, n_logits + budget)

        for start in range(0, n_logits, batch_size):
            vecs = targets.vectors[start : start + batch_size].to(device)
            run(
                torch.full((len(vecs),), n_layers),
                torch.full((len(vecs),), n_pos - 1),
                vecs,
            )
        row_nodes[:n_logits] = logit_node0 + torch.arange(n_logits)
        if analysis.wants("rows_logits_end"):
            analysis.fire(
                "rows_logits_end", logit_rows=rows[:n_logits], logit_vectors=targets.vectors
            )

        visited = torch.zeros(n_active, dtype=torch.bool)
        n_visited = 0
        while n_visited < budget:
            if budget == n_active:
                pending = torch.arange(n_active)
            else:
                estimate = partial_influence(
                    rows[:done], row_nodes[:done], targets.probabilities.float()
                )
                ranking = torch.argsort(estimate[:n_active], descending=True)
                queue = min(update_interval * batch_size, budget - n_visited)
                pending = ranking[~visited[ranking]][:queue]
                if analysis.wants("rows_feature_ranking"):
                    analysis.fire(
                        "rows_feature_ranking",
                        estimate=estimate,
                        queue=pending,
                        n_visited=n_visited,
                    )
            for start in range(0, len(pending), batch_size):
                chunk = pending[start : start + batch_size]
                row_nodes[done : done + len(chunk)] = chunk
                encoders = tc.encoder_rows(pre.active_features[chunk]).to(device)
                run(feature_layers[chunk], feature_positions[chunk], encoders)
                visited[chunk] = True
                n_visited += len(chunk)

    selected = torch.nonzero(visited).flatten()
    if analysis.wants("rows_features_end"):
        analysis.fire(
            "rows_features_end",
            matrix=rows,
            row_nodes=row_nodes,
            selected_features=selected,
            n_visited=n_visited,
        )
    return Rows(matrix=rows, row_nodes=row_nodes, selected_features=selected)
