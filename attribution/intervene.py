"""Feature interventions: set features to chosen values and watch the prediction move.

This is how a graph is checked: if it says a feature matters, ablating it (setting it to 0)
should move the logits it points at. `intervene` runs the real model, and at every layer:

1. encodes the MLP input with the transcoder (the features' current activations);
2. for each intervened feature at this layer, adds (new value - current value) x its decoder
   row(s) to the MLP output (for a cross-layer transcoder, to every output layer it writes to);
3. lets the change flow on: later layers see the changed residual, re-encode it and compute
   their own MLP outputs, so indirect effects are included.

An intervention is (layer, position, feature, value); the position is an index, or
`slice(n, None)` for every position from n onward (in `generate`, the new tokens too).

The options are circuit-tracer's (`feature_intervention`), with the same meaning:

- `freeze_attention` (default): attention patterns keep their values from the clean run, as in
  the attribution graph's local replacement model, so effects travel through value paths only;
  without it, attention may move too.
- `constrained_layers`: the layers in which the intervention acts *directly only*. Their MLP
  outputs keep their clean values (plus the change of the transcoder's linear skip path, where it
  has one), changes are measured from the clean activations, features write only into these
  layers, and attention is frozen. When they are every layer, normalisation scales are frozen
  too: the model is then the graph's linear replacement, and ablating a feature moves a target
  by exactly minus its edge to that target.

One difference: at position 0 (the start token) circuit-tracer measures a change from an
activation of 0; here it is measured from the true activation, as everywhere else.

`Intervener` does the clean run once for a prompt and then runs many interventions on it
(the validate stage ablates dozens of feature sets); `intervene` is one of them. `generate`
keeps the interventions on while it decodes greedily, one full forward pass per new token.
"""

from __future__ import annotations

import contextlib
import math
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from circuitflow.attribution.attribute import tokenize
from circuitflow.attribution.replacement import ReplacementModel, bind_layer


class InterventionError(ValueError):
    """An intervention that names a layer, position or feature that does not exist."""


Intervention = tuple[int, int | slice, int, float]  # (layer, position(s), feature, value)


@dataclass
class InterventionResult:
    """One intervened forward pass.

    logits:         (n_pos, d_vocab) after the intervention
    activations:    (L, n_pos, F) as the transcoders read them during the intervened run,
                    intervened values included (None when not asked for)
    tokens:         (n_pos,) the prompt's tokens
    final_residual: (n_pos, d_model) the final normalised residual, which logit and direction
                    targets read
    """

    logits: torch.Tensor
    activations: torch.Tensor | None
    tokens: torch.Tensor
    final_residual: torch.Tensor


class Intervener:
    """A prompt's clean run, kept so that many interventions can be run on it."""

    def __init__(
        self,
        model: ReplacementModel,
        prompt: str | Sequence[int] | torch.Tensor,
        *,
        freeze_attention: bool = True,
        constrained_layers: Sequence[int] | range | None = None,
    ) -> None:
        self.model = model
        self.tokens = tokenize(model, prompt)
        self.constrained = _check_layers(constrained_layers, model.n_layers)
        self.frozen = self._clean_run(freeze_attention or self.constrained is not None)
        self._clean_activations: dict[int, torch.Tensor] = {}  # layer -> (n_pos, F), lazily

    @property
    def n_pos(self) -> int:
        return len(self.tokens)

    @torch.no_grad()
    def _clean_run(self, freeze: bool) -> dict[str, torch.Tensor]:
        """Cache what the intervened runs hold fixed: patterns, and with constrained layers
        the scales (all layers only) and the transcoders' clean inputs and outputs."""
        hf, tc = self.model.model, self.model.transcoders
        names = [n for n in hf.hook_dict if freeze and n.endswith("attn.hook_pattern")]
        if self.constrained is not None:
            if set(self.constrained) == set(range(self.model.n_layers)):
                names += [n for n in hf.hook_dict if n.endswith("hook_scale")]
            for layer in range(self.model.n_layers):
                names += [tc.input_hook(layer), tc.output_hook(layer)]
        cache: dict[str, torch.Tensor] = {}
        if names:

            def keep(acts, hook):
                cache[hook.name] = acts.detach()

            with hf.hooks(fwd_hooks=[(n, keep) for n in names]):
                hf(self.tokens[None].to(self.model.device))
        return cache

    def _clean_features(self, layer: int, input_hook: str) -> torch.Tensor:
        """The clean run's feature activations at `layer` (constrained runs measure from them)."""
        if layer not in self._clean_activations:
            clean_input = self.frozen[input_hook][0]
            self._clean_activations[layer] = self.model.transcoders.encode(layer, clean_input)
        return self._clean_activations[layer]

    @torch.no_grad()
    def run(
        self, interventions: Sequence[Intervention], *, activations: bool = True
    ) -> InterventionResult:
        """One forward pass with each (layer, position(s), feature) set to its value."""
        model, hf, tc = self.model, self.model.model, self.model.transcoders
        n_layers, n_pos = model.n_layers, self.n_pos
        by_layer = _group(interventions, n_layers, n_pos, tc.d_transcoder)
        constrained, frozen = self.constrained, self.frozen
        writes_at = range(n_layers) if constrained is None else constrained

        deltas = torch.zeros(n_layers, n_pos, tc.d_model, device=model.device, dtype=tc.dtype)
        kept = (
            torch.zeros(n_layers, n_pos, tc.d_transcoder, device=model.device, dtype=tc.dtype)
            if activations
            else None
        )
        skip_change: dict[int, torch.Tensor] = {}
        final: dict[str, torch.Tensor] = {}

        def read_features(acts, hook, layer):
            x = acts[0]  # (n_pos, d)
            settings = by_layer.get(layer, {})
            if settings or kept is not None:
                current = tc.encode(layer, x)  # (n_pos, F)
            if settings:
                # Constrained: changes are measured from the clean run, nothing propagates.
                base = current if constrained is None else self._clean_features(layer, hook.name)
                where = torch.tensor([[layer, p, f] for p, f in settings], dtype=torch.long)
                wanted = torch.tensor(list(settings.values()), device=x.device, dtype=tc.dtype)
                pos, feat = where[:, 1].to(x.device), where[:, 2].to(x.device)
                for out_layer, index, vectors in tc.decoded_outputs(
                    where, wanted - base[pos, feat]
                ):
                    deltas[out_layer].index_add_(0, pos[index.to(x.device)], vectors)
                current[pos, feat] = wanted
            if kept is not None:
                kept[layer] = current
            if constrained is not None and layer in constrained and tc.has_skip:
                clean_x = frozen[hook.name][0]
                skip_change[layer] = tc.skip(layer, x) - tc.skip(layer, clean_x)
            return acts

        def write_changes(acts, hook, layer):
            if constrained is not None and layer in constrained:
                acts = frozen[hook.name] + skip_change.get(layer, 0)
            return acts + deltas[layer] if layer in writes_at else acts

        # Patterns and scales are replaced by their clean values; transcoder sites come next.
        hooks = [(n, lambda acts, hook: frozen[hook.name]) for n in frozen if _held_fixed(n)]
        for layer in range(n_layers):
            hooks.append((tc.input_hook(layer), bind_layer(read_features, layer)))
            hooks.append((tc.output_hook(layer), bind_layer(write_changes, layer)))
        with hf.hooks(fwd_hooks=hooks), _reading_final(hf, final):
            logits = hf(self.tokens[None].to(model.device))[0]
        return InterventionResult(logits, kept, self.tokens, final["resid"])


def intervene(
    model: ReplacementModel,
    prompt: str | Sequence[int] | torch.Tensor,
    interventions: Sequence[Intervention],
    *,
    freeze_attention: bool = True,
    constrained_layers: Sequence[int] | range | None = None,
) -> InterventionResult:
    """Run `prompt` with each (layer, position(s), feature) set to its value; see module docs."""
    runner = Intervener(
        model, prompt, freeze_attention=freeze_attention, constrained_layers=constrained_layers
    )
    return runner.run(interventions)


@dataclass
class Generation:
    """A greedy continuation.

    tokens:   (n_prompt + n_new,) the prompt's tokens, then the generated ones
    n_prompt: how many of `tokens` are the prompt's
    text:     the generated tokens, decoded
    logits:   (n_new, d_vocab) the logits each new token was chosen from
    """

    tokens: torch.Tensor
    n_prompt: int
    text: str
    logits: torch.Tensor

    @property
    def new_tokens(self) -> torch.Tensor:
        return self.tokens[self.n_prompt :]


@torch.no_grad()
def generate(
    model: ReplacementModel,
    prompt: str | Sequence[int] | torch.Tensor,
    interventions: Sequence[Intervention] = (),
    max_new_tokens: int = 10,
    *,
    freeze_attention: bool = True,
    constrained_layers: Sequence[int] | range | None = None,
) -> Generation:
    """Continue `prompt` greedily with the interventions on at every step.

    Each new token is the argmax of an intervened forward pass over the prompt and the tokens
    generated so far (no key-value cache: every step is exactly `intervene` on that sequence).
    Interventions at fixed positions keep acting on the prompt; `slice(n, None)` ones act on
    every new token too. Stops early at the end-of-sequence token or the model's context size.
    With `freeze_attention`, each step's patterns are those of its own clean run.
    """
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool):
        raise InterventionError(f"max_new_tokens must be an integer, got {max_new_tokens!r}")
    if max_new_tokens < 0:
        raise InterventionError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    tokens = tokenize(model, prompt)
    n_prompt = len(tokens)
    _group(interventions, model.n_layers, n_prompt, model.transcoders.d_transcoder)
    eos = model.tokenizer.eos_token_id
    steps = []
    for _ in range(max_new_tokens):
        if len(tokens) >= model.cfg.n_ctx:
            break
        runner = Intervener(
            model, tokens, freeze_attention=freeze_attention, constrained_layers=constrained_layers
        )
        last = runner.run(interventions, activations=False).logits[-1]  # (d_vocab,)
        steps.append(last)
        chosen = int(last.argmax())
        tokens = torch.cat([tokens, torch.tensor([chosen], dtype=tokens.dtype)])
        if eos is not None and chosen == eos:
            break
    new = tokens[n_prompt:].tolist()
    logits = torch.stack(steps) if steps else torch.zeros(0, model.cfg.d_vocab)
    return Generation(tokens, n_prompt, model.tokenizer.decode(new), logits)


@contextlib.contextmanager
def _reading_final(hf, final: dict[str, torch.Tensor]) -> Iterator[None]:
    """Keep the final normalised residual of the next forward pass in `final["resid"]`: the
    final norm's output, gain included (its hook_normalized comes before the gain), or the
    last residual of a model without a final norm."""

    def keep(module, inputs, output):
        final["resid"] = output[0]

    module = getattr(hf, "ln_final", None)
    if module is None:
        module = hf.blocks[-1].hook_resid_post
    handle = module.register_forward_hook(keep)
    try:
        yield
    finally:
        handle.remove()


def _held_fixed(name: str) -> bool:
    return name.endswith(("attn.hook_pattern", "hook_scale"))


def _check_layers(layers: Sequence[int] | range | None, n_layers: int) -> tuple[int, ...] | None:
    if layers is None:
        return None
    chosen = tuple(int(layer) for layer in layers)
    if not chosen:
        raise InterventionError("constrained_layers is empty; give None for no constraint")
    for layer in chosen:
        if not 0 <= layer < n_layers:
            raise InterventionError(f"constrained layer {layer} is outside [0, {n_layers})")
    return chosen


def _positions(pos: int | slice, n_pos: int) -> list[int]:
    """The positions an intervention names: one index, or every one from n onward."""
    if isinstance(pos, slice):
        start = 0 if pos.start is None else pos.start
        if pos.stop is not None or pos.step is not None or not isinstance(start, int) or start < 0:
            raise InterventionError(
                f"a position range is slice(n, None), every position from n >= 0 on; got {pos}"
            )
        return list(range(start, n_pos))
    try:
        pos = operator.index(pos)  # ints, numpy and 0-d tensor integers
    except TypeError:
        raise InterventionError(
            f"a position is an integer or slice(n, None), got {pos!r}"
        ) from None
    if not -n_pos <= pos < n_pos:
        raise InterventionError(f"position {pos} is outside a prompt of {n_pos} tokens")
    return [pos % n_pos]


def _group(
    interventions, n_layers: int, n_pos: int, n_features: int
) -> dict[int, dict[tuple[int, int], float]]:
    """{layer: {(position, feature): value}}, checked; a later setting of one feature wins."""
    grouped: dict[int, dict[tuple[int, int], float]] = {}
    for item in interventions:
        if len(item) != 4:
            raise InterventionError(
                f"an intervention is (layer, position, feature, value), got {item!r}"
            )
        layer, pos, feature, value = item
        layer, feature, value = int(layer), int(feature), float(value)
        if not 0 <= layer < n_layers:
            raise InterventionError(f"layer {layer} is outside [0, {n_layers})")
        if not 0 <= feature < n_features:
            raise InterventionError(f"feature {feature} is outside [0, {n_features})")
        if not math.isfinite(value):
            raise InterventionError(f"the value of feature {feature} is not finite: {value}")
        for p in _positions(pos, n_pos):
            grouped.setdefault(layer, {})[(p, feature)] = value
    return grouped
