"""Stage 1, precompute: one forward pass that finds every node of the graph.

Running the prompt once gives, at every layer and position:
- the transcoder's feature activations, read at the feature input hook; the active ones (> 0)
  become feature nodes, kept as a sparse list in (layer, position, feature) order;
- the error: the true MLP output minus the transcoder's reconstruction of it, one error node per
  (layer, position), so that features + errors reproduce the model exactly;
- the token embeddings (token nodes) and the final logits (from which targets are chosen).

Position 0 holds the start token: its features are zeroed before the activations are made sparse
and its errors are zeroed, so nothing at position 0 becomes a node.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import circuitflow.attribution.analysis as analysis
from circuitflow.attribution.replacement import ReplacementModel
from circuitflow.attribution.serialize import Record


@dataclass
class Precompute(Record):
    """What one forward pass tells us about a prompt.

    tokens:            (n_pos,) int64, start token first
    active_features:   (n_active, 3) int64 rows of (layer, position, feature), lexicographic
    activation_values: (n_active,) activations of those features
    error_vectors:     (n_layers, n_pos, d_model) MLP output minus reconstruction
    token_vectors:     (n_pos, d_model) embeddings at hook_embed
    last_logits:       (d_vocab,) logits at the last position
    """

    tokens: torch.Tensor
    active_features: torch.Tensor
    activation_values: torch.Tensor
    error_vectors: torch.Tensor
    token_vectors: torch.Tensor
    last_logits: torch.Tensor

    @property
    def n_pos(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def n_layers(self) -> int:
        return int(self.error_vectors.shape[0])

    @property
    def n_active(self) -> int:
        return int(self.active_features.shape[0])


@torch.no_grad()
def precompute(replacement: ReplacementModel, tokens: torch.Tensor) -> Precompute:
    """Run the prompt (n_pos,) once and collect activations, errors, embeddings and logits."""
    tc = replacement.transcoders
    logits, cache = replacement.run_and_cache(tokens)
    mlp_inputs = torch.stack([cache[f"in.{l}"] for l in range(tc.n_layers)])  # (L, n_pos, d)
    mlp_outputs = torch.stack([cache[f"out.{l}"] for l in range(tc.n_layers)])  # (L, n_pos, d)

    active, values = [], []
    for layer in range(tc.n_layers):
        acts = tc.encode(layer, mlp_inputs[layer])  # (n_pos, F)
        acts[0] = 0
        where = acts.nonzero()  # (n, 2) (position, feature), lexicographic
        layer_col = torch.full_like(where[:, :1], layer)
        active.append(torch.cat([layer_col, where], dim=1))
        values.append(acts[where[:, 0], where[:, 1]])
    active_features = torch.cat(active).to(torch.long)
    activation_values = torch.cat(values)

    reconstruction = tc.reconstruct(active_features, activation_values, mlp_inputs)
    error_vectors = mlp_outputs - reconstruction
    error_vectors[:, 0] = 0
    pre = Precompute(
        tokens=tokens.to(torch.long).cpu(),
        active_features=active_features.cpu(),
        activation_values=activation_values,
        error_vectors=error_vectors,
        token_vectors=cache["embed"],
        last_logits=logits[-1],
    )
    if analysis.wants("precompute_end"):
        _fire_precompute_end(tc, pre, logits, mlp_inputs, mlp_outputs, reconstruction)
    return pre


def _fire_precompute_end(tc, pre, logits, mlp_inputs, mlp_outputs, reconstruction) -> None:
    """The `precompute_end` analysis point, with the vectors the seed notebook shows."""
    active, values = pre.active_features, pre.activation_values
    on_device = active.to(tc.device)
    layers, features, vectors = [torch.zeros(0, dtype=torch.long)], [], []
    for out_layer, index, written in tc.decoded_outputs(active, values):
        layers.append(torch.full((len(index),), out_layer))
        features.append(index.cpu())
        vectors.append(written)
    analysis.fire(
        "precompute_end",
        tokens=pre.tokens,
        logits=logits,
        mlp_inputs=mlp_inputs,
        mlp_outputs=mlp_outputs,
        active_features=active,
        activation_values=values,
        activation_matrix=torch.sparse_coo_tensor(
            on_device.T,
            values,
            (pre.n_layers, pre.n_pos, tc.d_transcoder),
            check_invariants=False,
        ),
        encoder_vectors=tc.encoder_rows(active),
        decoder_vectors=torch.cat(vectors) if vectors else values.new_zeros(0, tc.d_model),
        decoder_layers=torch.cat(layers),
        decoder_features=torch.cat([layers[0], *features]),
        reconstruction=reconstruction,
        error_vectors=pre.error_vectors,
        token_vectors=pre.token_vectors,
        row_size=pre.n_active + (pre.n_layers + 1) * pre.n_pos,
    )
