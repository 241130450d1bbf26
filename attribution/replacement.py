"""The local replacement model: a HookedTransformer whose MLPs are explained by transcoders.

For one prompt, the method makes the model *linear* from the nodes' outputs to the nodes' inputs:

- attention patterns and every normalisation scale are frozen (forward value kept, gradient
  stopped), so attention is a fixed linear mix of value vectors and norms are fixed rescalings;
- each MLP's output is a constant for gradients, except for the transcoder's linear skip path
  where it has one: the MLP's nonlinear work is carried by the feature nodes and error nodes.

Then the gradient of a node's input with respect to an output site, contracted with a source's
output vector, is exactly the source's direct effect on that node: one edge of the graph.

`ReplacementModel` wraps a model and a transcoder set, checks that they fit, and runs a forward
pass with these freezes that keeps handles on every site the attribution needs (`Sites`). The
hooks live only for the duration of a `with` block: the wrapped model is left as it was.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from circuitflow.attribution.transcoders import Transcoders

if TYPE_CHECKING:  # TransformerLens takes seconds to import; only loading a model needs it
    from transformer_lens import HookedTransformer

# Hooks whose values are frozen for gradients: attention patterns and normalisation scales.
FROZEN_HOOK_SUFFIXES = (
    "attn.hook_pattern",
    "ln1.hook_scale",
    "ln2.hook_scale",
    "ln1_post.hook_scale",
    "ln2_post.hook_scale",
)
FINAL_NORM_SCALE = "ln_final.hook_scale"


class ModelMismatchError(ValueError):
    """A model and a transcoder set that do not fit together."""


@dataclass
class Sites:
    """Tensors of one linearised forward pass, each (1, n_pos, d_model), still in the graph.

    inputs[l]:  the residual at layer l's feature input hook (where feature targets read)
    outputs[l]: layer l's MLP output after the skip-only gradient rewiring (where sources write)
    embed:      token embeddings at `hook_embed` (where token nodes act)
    final:      the final normalised residual, `ln_final`'s output (where logit targets read)
    """

    inputs: list[torch.Tensor | None] = field(default_factory=list)
    outputs: list[torch.Tensor | None] = field(default_factory=list)
    embed: torch.Tensor | None = None
    final: torch.Tensor | None = None


class ReplacementModel:
    """A HookedTransformer and the transcoders that replace its MLPs, checked to fit."""

    def __init__(self, model: HookedTransformer, transcoders: Transcoders) -> None:
        _check_fit(model, transcoders)
        self.model = model
        self.transcoders = transcoders.to(device=model.cfg.device, dtype=model.cfg.dtype)

    @property
    def cfg(self):
        return self.model.cfg

    @property
    def tokenizer(self):
        return self.model.tokenizer

    @property
    def n_layers(self) -> int:
        return self.model.cfg.n_layers

    @property
    def device(self) -> torch.device:
        return self.model.W_E.device

    @property
    def W_U(self) -> torch.Tensor:
        """The unembedding, always (d_model, d_vocab) in TransformerLens: no guessing needed."""
        return self.model.W_U

    @torch.no_grad()
    def run_and_cache(self, tokens: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Plain forward pass of one prompt (n_pos,), caching the sites the precompute needs.

        Returns logits (n_pos, d_vocab) and a cache with, for every layer l, 'in.l' and 'out.l'
        (n_pos, d_model) at the transcoders' hooks, and 'embed' (n_pos, d_model).
        """
        cache: dict[str, torch.Tensor] = {}

        def keep(name: str):
            def hook(acts, hook):
                cache[name] = acts[0].detach()

            return hook

        tc = self.transcoders
        hooks = [("hook_embed", keep("embed"))]
        for layer in range(self.n_layers):
            hooks.append((tc.input_hook(layer), keep(f"in.{layer}")))
            hooks.append((tc.output_hook(layer), keep(f"out.{layer}")))
        with self.model.hooks(fwd_hooks=hooks):
            logits = self.model(tokens[None].to(self.device))
        return logits[0], cache

    @torch.no_grad()
    def final_residual(self, tokens: torch.Tensor) -> torch.Tensor:
        """The final normalised residual (n_pos, d_model) of a plain forward pass of `tokens`:
        what logit and direction targets read."""
        resid = self.model(tokens[None].to(self.device), stop_at_layer=self.n_layers)
        return self.model.ln_final(resid)[0]

    @contextlib.contextmanager
    def linearized(self) -> Iterator[Sites]:
        """Install the freezes; yields the `Sites` that the next forward pass fills in.

        Parameters are set not to require gradients inside the block (only the embedding's
        output does), so backward passes compute nothing but what the edges need.
        """
        sites = Sites(inputs=[None] * self.n_layers, outputs=[None] * self.n_layers)
        tc = self.transcoders

        def stop_gradient(acts, hook):
            return acts.detach()

        def start_gradient(acts, hook):
            sites.embed = acts.detach().requires_grad_(True)
            return sites.embed

        def keep_input(acts, hook, layer):
            sites.inputs[layer] = acts
            return acts

        def skip_only(acts, hook, layer):
            # The MLP output keeps its forward value; its gradient goes through the skip alone.
            skip = tc.skip(layer, sites.inputs[layer])
            out = skip + (acts - skip).detach() if tc.has_skip else acts.detach().requires_grad_()
            sites.outputs[layer] = out
            return out

        names = self.model.hook_dict
        hooks = [(n, stop_gradient) for n in names if n.endswith(FROZEN_HOOK_SUFFIXES)]
        if FINAL_NORM_SCALE in names:
            hooks.append((FINAL_NORM_SCALE, stop_gradient))
        hooks.append(("hook_embed", start_gradient))
        for layer in range(self.n_layers):
            hooks.append((tc.input_hook(layer), bind_layer(keep_input, layer)))
            hooks.append((tc.output_hook(layer), bind_layer(skip_only, layer)))

        params = [p for p in self.model.parameters() if p.requires_grad]
        for p in params:
            p.requires_grad_(False)
        try:
            with self.model.hooks(fwd_hooks=hooks), torch.enable_grad():
                yield sites
        finally:
            for p in params:
                p.requires_grad_(True)

    def linear_forward(self, tokens: torch.Tensor, sites: Sites) -> None:
        """Run the prompt (n_pos,) once inside `linearized()`, filling in `sites.final`.

        One copy serves any number of targets: copies of the prompt would all be the same
        forward pass, with the same Jacobian, so each backward pass pushes a batch of target
        gradients through this one graph (`torch.autograd.grad(..., is_grads_batched=True)`,
        vmapped over the batch) instead of one gradient through each of `batch` copies. The
        forward costs one prompt's compute and memory, not `batch` prompts'.
        """
        resid = self.model(tokens[None].to(self.device), stop_at_layer=self.n_layers)
        sites.final = self.model.ln_final(resid)  # (1, n_pos, d_model)


def bind_layer(fn: Callable[[torch.Tensor, Any, int], Any], layer: int) -> Callable:
    """`fn(acts, hook, layer)` as a TransformerLens hook `(acts, hook)` for one layer."""

    def hook_fn(acts: torch.Tensor, hook: Any) -> Any:
        return fn(acts, hook, layer)

    return hook_fn


def _check_fit(model: HookedTransformer, tc: Transcoders) -> None:
    cfg = model.cfg
    if tc.d_model != cfg.d_model:
        raise ModelMismatchError(
            f"the transcoders read vectors of size d_model={tc.d_model}, but the model has "
            f"d_model={cfg.d_model}: they were trained for another model"
        )
    if tc.n_layers != cfg.n_layers:
        raise ModelMismatchError(
            f"the transcoders cover {tc.n_layers} layers, but the model has {cfg.n_layers}: "
            "they were trained for another model"
        )
    names = model.hook_dict
    for layer in range(cfg.n_layers):
        for role, hook in (("input", tc.input_hook(layer)), ("output", tc.output_hook(layer))):
            if hook not in names:
                near = sorted(n.split(".", 2)[2] for n in names if n.startswith(f"blocks.{layer}."))
                raise ModelMismatchError(
                    f"the model has no hook {hook!r} (the transcoders' feature_{role}_hook); "
                    f"hooks in a block are: {', '.join(near)}"
                )
    if "hook_embed" not in names:
        raise ModelMismatchError("the model has no 'hook_embed': token nodes cannot be placed")
