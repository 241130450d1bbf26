"""Train transcoders on the built-in model's MLPs and save them in the public layout.

A transcoder imitates an MLP with a wide, sparse layer: it reads the MLP's input x (here the
normalised residual `blocks.L.ln2.hook_normalized`, d_model wide), computes F feature
activations a = act(W_enc x + b_enc), and writes y_hat = a @ W_dec + b_dec in place of the MLP
output y (`blocks.L.hook_mlp_out`). Two kinds:

- per-layer transcoders (PLT): one independent transcoder per layer; W_dec is (F, d).
- a cross-layer transcoder (CLT): a feature read at layer i writes to every layer l >= i, so
  W_dec_i is (F, L - i, d) and the output at layer l is
  y_hat_l = sum_{i <= l} a_i @ W_dec_i[:, l - i, :] + b_dec_l.

Training (both kinds): collect (x, y) pairs from the model on fresh text, then minimise the
fraction of variance unexplained plus a sparsity term. Two sparsity recipes are implemented:

- "relu": ReLU features and an L1 penalty on activation x decoder-row norm.
- "jumprelu": a JumpReLU (a ReLU that also zeroes values below a threshold) whose threshold,
  one per layer, follows BatchTopK's cut while training: the value that k features per token
  exceed on average over a batch (so one token may use more features, another fewer). Decoder
  rows are kept at unit norm, so the threshold compares features by how much they write. The
  threshold is frozen for the last part of training, so the saved file is exactly what was
  trained and measured.

Saved layout (read back with `attribution.load_transcoders`; circuit-tracer 0.5 reads it too):

    per-layer:   config.yaml, layer_{i}.safetensors with W_enc (F, d), W_dec (F, d), b_enc (F),
                 b_dec (d), and for JumpReLU activation_function.threshold (F)
    cross-layer: config.yaml, W_enc_{i}.safetensors with W_enc_{i} (F, d), b_enc_{i} (F),
                 b_dec_{i} (d), for JumpReLU threshold_{i} (F); W_dec_{i}.safetensors with
                 W_dec_{i} (F, L - i, d)

Weights are trained on outputs divided by a per-layer scale (so every layer's target has unit
variance per dimension and one sparsity weight suits all layers); the scale is folded back into
W_dec and b_dec before saving, so saved files work on raw activations.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from circuitflow.attribution.transcoders import CROSS_LAYER, PER_LAYER, Activation, save_transcoders
from circuitflow.training.config import TranscoderTrainConfig


class TrainableTranscoders(nn.Module):
    """Trainable transcoders (nn.Module); the shared part of both kinds: encoders, activation.

    Training-side only: attribution reads the saved files with `attribution.load_transcoders`.

    Shapes: W_enc (L, F, d), b_enc (L, F), b_dec (L, d), threshold (L, F) or None.
    `threshold` None means ReLU; a tensor means JumpReLU: a = pre * (pre > threshold).
    """

    kind: str  # "transcoder_set" or "cross_layer_transcoder" (config.yaml's model_kind)

    def __init__(
        self,
        n_layers: int,
        d_model: int,
        n_features: int,
        input_hook: str = "ln2.hook_normalized",
        output_hook: str = "hook_mlp_out",
    ) -> None:
        super().__init__()
        self.n_layers, self.d_model, self.n_features = n_layers, d_model, n_features
        self.input_hook, self.output_hook = input_hook, output_hook
        self.W_enc = nn.Parameter(torch.zeros(n_layers, n_features, d_model))
        self.b_enc = nn.Parameter(torch.zeros(n_layers, n_features))
        self.b_dec = nn.Parameter(torch.zeros(n_layers, d_model))
        self.threshold: torch.Tensor | None = None

    # ---- encoding -----------------------------------------------------------------------------

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """x (L, N, d) -> pre-activations (L, N, F)."""
        return torch.einsum("lnd,lfd->lnf", x, self.W_enc) + self.b_enc[:, None]

    def activate(self, pre: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        """ReLU, or JumpReLU with the stored threshold.

        `pre` is (L, N, F), or (..., F) when `layer` says which layer's threshold applies.
        """
        if self.threshold is None:
            return torch.relu(pre)
        th = self.threshold if layer is None else self.threshold[layer]
        if layer is None:
            th = th[:, None]  # (L, 1, F)
        return pre * (pre > th)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Feature activations (L, N, F) for inputs x (L, N, d)."""
        return self.activate(self.pre_activations(x))

    # ---- decoding (kind-specific) --------------------------------------------------------------

    def decode(self, acts: torch.Tensor) -> torch.Tensor:
        """Reconstructions (L, N, d) of every layer's MLP output from activations (L, N, F)."""
        raise NotImplementedError

    def decoder_norms(self) -> torch.Tensor:
        """(L, F): the norm of each feature's whole output (all layers it writes to)."""
        raise NotImplementedError

    def normalise_decoder(self) -> None:
        """Scale each feature's decoder to unit norm and its encoder row inversely.

        Encoder rows and decoder rows are rescaled together, so the reconstruction is unchanged
        for ReLU features; it only removes a redundant degree of freedom that sparsity penalties
        and BatchTopK would otherwise exploit.
        """
        with torch.no_grad():
            norms = self.decoder_norms().clamp_min(1e-8)  # (L, F)
            self._scale_decoder(1 / norms)
            self.W_enc.mul_(norms[..., None])
            self.b_enc.mul_(norms)

    def _scale_decoder(self, factor: torch.Tensor) -> None:
        raise NotImplementedError

    def scale_outputs(self, scale: torch.Tensor) -> None:
        """Multiply every output (decoders and b_dec) of layer l by scale[l] (shape (L,))."""
        raise NotImplementedError

    def save(self, directory: str | Path, model_name: str) -> Path:
        """Write the public layout (config.yaml + safetensors, float32) with
        `attribution.transcoders.save_transcoders`, the writer that matches the loader."""
        W_dec = self.W_dec if isinstance(self, PerLayerTranscoders) else list(self.W_dec)
        return save_transcoders(
            directory,
            kind=self.kind,
            W_enc=self.W_enc.detach().float(),
            W_dec=W_dec,
            b_enc=self.b_enc.detach().float(),
            b_dec=self.b_dec.detach().float(),
            feature_input_hook=self.input_hook,
            feature_output_hook=self.output_hook,
            activation=Activation("relu" if self.threshold is None else "jumprelu"),
            threshold=self.threshold,
            extra_config={
                "model_name": model_name,
                "n_layers": self.n_layers,
                "d_model": self.d_model,
                "n_features": self.n_features,
            },
        )


class PerLayerTranscoders(TrainableTranscoders):
    """One transcoder per layer. W_dec (L, F, d): feature f of layer l writes W_dec[l, f]."""

    kind = PER_LAYER

    def __init__(self, n_layers: int, d_model: int, n_features: int, **hooks: str) -> None:
        super().__init__(n_layers, d_model, n_features, **hooks)
        self.W_dec = nn.Parameter(torch.zeros(n_layers, n_features, d_model))

    def decode(self, acts: torch.Tensor) -> torch.Tensor:
        return torch.einsum("lnf,lfd->lnd", acts, self.W_dec) + self.b_dec[:, None]

    def decoder_norms(self) -> torch.Tensor:
        return self.W_dec.norm(dim=-1)

    def _scale_decoder(self, factor: torch.Tensor) -> None:
        self.W_dec.mul_(factor[..., None])

    def scale_outputs(self, scale: torch.Tensor) -> None:
        with torch.no_grad():
            self.W_dec.mul_(scale[:, None, None])
            self.b_dec.mul_(scale[:, None])


class CrossLayerTranscoder(TrainableTranscoders):
    """Features read at layer i and write to layers i..L-1. W_dec[i] is (F, L - i, d)."""

    kind = CROSS_LAYER

    def __init__(self, n_layers: int, d_model: int, n_features: int, **hooks: str) -> None:
        super().__init__(n_layers, d_model, n_features, **hooks)
        self.W_dec = nn.ParameterList(
            [nn.Parameter(torch.zeros(n_features, n_layers - i, d_model)) for i in range(n_layers)]
        )

    def decode(self, acts: torch.Tensor) -> torch.Tensor:
        outs = []
        for layer in range(self.n_layers):
            out = self.b_dec[layer]
            for i in range(layer + 1):
                out = out + acts[i] @ self.W_dec[i][:, layer - i]  # (N, F) @ (F, d)
            outs.append(out)
        return torch.stack(outs)

    def decoder_norms(self) -> torch.Tensor:
        return torch.stack([w.flatten(1).norm(dim=-1) for w in self.W_dec])

    def _scale_decoder(self, factor: torch.Tensor) -> None:
        for i, w in enumerate(self.W_dec):
            w.mul_(factor[i][:, None, None])

    def scale_outputs(self, scale: torch.Tensor) -> None:
        with torch.no_grad():
            for i, w in enumerate(self.W_dec):
                w.mul_(scale[i:][None, :, None])
            self.b_dec.mul_(scale[:, None])


# ---- activations -----------------------------------------------------------------------------


@torch.no_grad()
def collect_activations(
    model: HookedTransformer,
    token_batches: list[torch.Tensor],
    input_hook: str = "ln2.hook_normalized",
    output_hook: str = "hook_mlp_out",
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MLP inputs X and outputs Y at every layer for every non-start token of the batches.

    Returns X, Y, each (L, N, d) float32, N = sum over batches of batch * (pos - 1). Position 0
    (the start token) is left out: attribution never uses its features, and its activations are
    unlike any other position's.
    """
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    L = model.cfg.n_layers
    names = {f"blocks.{l}.{h}" for l in range(L) for h in (input_hook, output_hook)}
    for tokens in tqdm(token_batches, desc="activations", disable=not progress, unit="batch"):
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
        x = torch.stack([cache[f"blocks.{l}.{input_hook}"][:, 1:] for l in range(L)])
        y = torch.stack([cache[f"blocks.{l}.{output_hook}"][:, 1:] for l in range(L)])
        xs.append(x.flatten(1, 2))  # (L, batch * (pos - 1), d)
        ys.append(y.flatten(1, 2))
    return torch.cat(xs, dim=1), torch.cat(ys, dim=1)


# ---- training --------------------------------------------------------------------------------


@dataclass
class _DeadFeatureTracker:
    """Counts, per (layer, feature), how many training tokens have passed since it last fired."""

    since_fired: torch.Tensor  # (L, F), in tokens
    dead_after: int

    def update(self, acts: torch.Tensor) -> None:
        fired = (acts > 0).any(dim=1)  # (L, F)
        self.since_fired += acts.shape[1]
        self.since_fired[fired] = 0

    @property
    def dead(self) -> torch.Tensor:
        return self.since_fired >= self.dead_after  # (L, F) bool


@dataclass
class TranscoderTrainResult:
    """A trained transcoder set plus what training measured."""

    transcoders: TrainableTranscoders
    stats: dict[str, Any] = field(default_factory=dict)


def batch_threshold(
    pre: torch.Tensor, k: int, generator: torch.Generator, sample: int = 65536
) -> torch.Tensor:
    """Per layer, the value that about k of a token's F pre-activations exceed, on average.

    This is BatchTopK's cut (keep the k x N largest of an (N, F) batch), estimated on a random
    sample of the batch's values: a quantile of (N x F) numbers is the same, up to sampling
    noise, as a quantile of a large random subset, and a full top-k is slow on a CPU.
    pre (L, N, F) -> (L,).
    """
    L, N, F = pre.shape
    flat = pre.detach().reshape(L, N * F)
    n = min(sample, N * F)
    idx = torch.randint(0, N * F, (n,), generator=generator)
    values = flat[:, idx]  # (L, n)
    rank = max(1, min(n, round(n * (1 - k / F))))
    return values.kthvalue(rank, dim=-1).values.clamp_min(0.0)


def _init(
    tc: TrainableTranscoders, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
) -> None:
    """Unit-norm random decoder rows, encoder = decoder transposed, b_dec = mean output."""
    with torch.no_grad():
        L, F, d = tc.n_layers, tc.n_features, tc.d_model
        direction = torch.randn(L, F, d, generator=generator)
        direction /= direction.norm(dim=-1, keepdim=True)
        tc.W_enc.copy_(direction)
        if isinstance(tc, PerLayerTranscoders):
            tc.W_dec.copy_(direction)
        else:
            for i, w in enumerate(tc.W_dec):
                w.zero_()
                w[:, 0] = direction[i]  # start by writing only to the feature's own layer
                w[:, 1:] = 0.01 * torch.randn(w[:, 1:].shape, generator=generator)
        tc.normalise_decoder()
        tc.b_dec.copy_(y.mean(dim=1))
        # Centre the encoder input, so a feature starts by firing on about half the tokens.
        tc.b_enc.copy_(-torch.einsum("ld,lfd->lf", x.mean(dim=1), tc.W_enc))


def train_transcoders(
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TranscoderTrainConfig,
    seed: int = 0,
    progress: bool = True,
) -> TranscoderTrainResult:
    """Train a transcoder set of kind `cfg.kind` on MLP inputs x and outputs y, both (L, N, d).

    Loss per step: each layer's FVU on the batch, summed over layers, plus, for "relu", the L1
    penalty. For "jumprelu" the sparsity comes from the threshold instead: every step it moves
    (exponential average) towards the batch's BatchTopK cut for `cfg.k` features per token, and
    gradients flow through active features only. For the last `jumprelu_finetune_fraction` of
    the steps the threshold is frozen, so the saved JumpReLU is exactly the trained function.

    Adam; the learning rate is constant, then decays linearly to 0 over the last 20% of steps.
    """
    start = time.perf_counter()
    L, N, d = x.shape
    gen = torch.Generator().manual_seed(seed)
    cls = PerLayerTranscoders if cfg.kind == PER_LAYER else CrossLayerTranscoder
    tc = cls(L, d, cfg.n_features, input_hook=cfg.input_hook, output_hook=cfg.output_hook)

    # Train on outputs scaled to unit variance per dimension (one scalar per layer).
    y_scale = (y - y.mean(dim=1, keepdim=True)).pow(2).mean(dim=(1, 2)).sqrt()  # (L,)
    y_n = y / y_scale[:, None, None]
    _init(tc, x, y_n, gen)

    opt = torch.optim.Adam(tc.parameters(), lr=cfg.lr)
    decay_from = int(0.8 * cfg.steps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: 1.0 if s < decay_from else max(0.0, (cfg.steps - s) / (cfg.steps - decay_from)),
    )
    jump = cfg.activation == "jumprelu"
    freeze_from = cfg.steps - int(cfg.jumprelu_finetune_fraction * cfg.steps)
    theta: torch.Tensor | None = None  # (L,) JumpReLU threshold while it adapts
    tracker = _DeadFeatureTracker(torch.zeros(L, cfg.n_features), dead_after=max(N // 4, 1))
    log: dict[str, float] = {}

    bar = tqdm(range(cfg.steps), desc=f"{cfg.kind} transcoders", disable=not progress, unit="step")
    for step in bar:
        idx = torch.randint(0, N, (cfg.batch_size,), generator=gen)
        xb, yb = x[:, idx], y_n[:, idx]  # (L, B, d)
        pre = tc.pre_activations(xb)  # (L, B, F)
        if jump and step < freeze_from:
            cut = batch_threshold(pre, cfg.k, gen)
            theta = cut if theta is None else 0.9 * theta + 0.1 * cut
            tc.threshold = theta[:, None].expand(L, cfg.n_features).clone()
        acts = tc.activate(pre)
        y_hat = tc.decode(acts)
        var = (yb - yb.mean(dim=1, keepdim=True)).pow(2).sum(dim=(1, 2))  # (L,)
        fvu = (yb - y_hat).pow(2).sum(dim=(1, 2)) / var  # (L,)
        loss = fvu.sum()
        if not jump:
            sparsity = (acts * tc.decoder_norms()[:, None]).sum(-1).mean()
            loss = loss + cfg.l1_coefficient * sparsity
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if jump and step < freeze_from - 1:
            # Unit-norm decoders make the threshold compare features by their output size. Not
            # once the threshold is frozen: rescaling encoder rows would move activations.
            tc.normalise_decoder()
        tracker.update(acts.detach())
        log = {
            "fvu": fvu.mean().item(),
            "l0": (acts > 0).float().sum(-1).mean().item(),
            "dead": tracker.dead.float().mean().item(),
        }
        bar.set_postfix({k: f"{v:.3g}" for k, v in log.items()})

    tc.scale_outputs(y_scale)
    tc.eval()
    stats = {
        "seconds": time.perf_counter() - start,
        "train_fvu_last_batch": log.get("fvu", math.nan),
        "train_active_last_batch": log.get("l0", math.nan),
        "dead_fraction": log.get("dead", math.nan),
    }
    return TranscoderTrainResult(tc, stats)
