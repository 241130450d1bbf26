"""Feature interventions: set features to chosen values and watch the prediction move.

This is how a graph is checked: if it says a feature matters, ablating it (setting it to 0)
should move the logits it points at. `intervene` runs the real model, and at every layer:

1. encodes the MLP input with the transcoder (the features' current activations);
2. for each intervened feature at this layer, adds (new value - current value) x its decoder
   row(s) to the MLP output (for a cross-layer transcoder, to every output layer it writes to);
3. lets the change flow on: later layers see the changed residual, re-encode it and compute
   their own MLP outputs, so indirect effects are included.

With `freeze_attention` (the default) attention patterns keep their values from the clean run,
as in the attribution graph's local replacement model, so effects travel through value paths
only; without it, attention may move too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from circuitflow.attribution.attribute import tokenize
from circuitflow.attribution.replacement import ReplacementModel, bind_layer


class InterventionError(ValueError):
    """An intervention that names a layer, position or feature that does not exist."""


@dataclass
class InterventionResult:
    """logits: (n_pos, d_vocab) after the intervention; activations: (L, n_pos, F) as the
    transcoders read them during the intervened run, intervened values included."""

    logits: torch.Tensor
    activations: torch.Tensor
    tokens: torch.Tensor


Intervention = tuple[int, int, int, float]  # (layer, position, feature, value)


@torch.no_grad()
def intervene(
    model: ReplacementModel,
    prompt: str | Sequence[int] | torch.Tensor,
    interventions: Sequence[Intervention],
    *,
    freeze_attention: bool = True,
) -> InterventionResult:
    """Run `prompt` with each (layer, position, feature) set to its value; see module docs."""
    tc, hf = model.transcoders, model.model
    tokens = tokenize(model, prompt)
    n_pos, n_layers = len(tokens), model.n_layers
    by_layer = _group(interventions, n_layers, n_pos, tc.d_transcoder)

    patterns: dict[str, torch.Tensor] = {}
    pattern_hooks = [n for n in hf.hook_dict if n.endswith("attn.hook_pattern")]
    if freeze_attention:

        def keep_pattern(acts, hook):
            patterns[hook.name] = acts

        with hf.hooks(fwd_hooks=[(n, keep_pattern) for n in pattern_hooks]):
            hf(tokens[None].to(model.device))

    deltas = torch.zeros(n_layers, n_pos, tc.d_model, device=model.device, dtype=tc.dtype)
    activations = torch.zeros(n_layers, n_pos, tc.d_transcoder, device=model.device, dtype=tc.dtype)

    def read_features(acts, hook, layer):
        current = tc.encode(layer, acts[0])  # (n_pos, F)
        for pos, feature, value in by_layer.get(layer, []):
            change = value - current[pos, feature]
            where = torch.tensor([[layer, pos, feature]])
            for out_layer, _, vectors in tc.decoded_outputs(where, change[None]):
                deltas[out_layer, pos] += vectors[0]
            current[pos, feature] = value
        activations[layer] = current
        return acts

    def write_changes(acts, hook, layer):
        return acts + deltas[layer]

    hooks = [(n, lambda acts, hook: patterns[hook.name]) for n in pattern_hooks if freeze_attention]
    for layer in range(n_layers):
        hooks.append((tc.input_hook(layer), bind_layer(read_features, layer)))
        hooks.append((tc.output_hook(layer), bind_layer(write_changes, layer)))
    with hf.hooks(fwd_hooks=hooks):
        logits = hf(tokens[None].to(model.device))[0]
    return InterventionResult(logits=logits, activations=activations, tokens=tokens)


def _group(interventions, n_layers: int, n_pos: int, n_features: int) -> dict[int, list]:
    grouped: dict[int, list] = {}
    for item in interventions:
        if len(item) != 4:
            raise InterventionError(
                f"an intervention is (layer, position, feature, value), got {item!r}"
            )
        layer, pos, feature, value = item
        layer, pos, feature = int(layer), int(pos), int(feature)
        if not 0 <= layer < n_layers:
            raise InterventionError(f"layer {layer} is outside [0, {n_layers})")
        if not -n_pos <= pos < n_pos:
            raise InterventionError(f"position {pos} is outside a prompt of {n_pos} tokens")
        if not 0 <= feature < n_features:
            raise InterventionError(f"feature {feature} is outside [0, {n_features})")
        grouped.setdefault(layer, []).append((pos % n_pos, feature, float(value)))
    return grouped
