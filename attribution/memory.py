"""How much memory an attribution run needs, estimated from its shapes before it starts.

A run's memory is a handful of dense arrays whose sizes follow from the shapes alone
(L layers, P positions, d = d_model, F features per layer, A active features, B = batch_size):

    weights            model parameters + transcoder encoders (L x F x d) and decoders (same,
                       or nothing when decoder rows are read lazily from disk)
    error nodes        L x P x d: one error vector per (layer, position); small, but the error
                       *columns* of the edge matrix grow as L x P too
    source vectors     A x d: what each active feature writes (activation x decoder row)
    activations        L x P x (c_d x d + c_p x heads x P): what the linearised forward pass of
                       the prompt keeps for the backward passes, plus B x (g_d x L x P x d +
                       g_p x heads x P^2): a backward pass's B gradients at every output site
                       and, one layer at a time, through attention (terms in P^2 dominate long
                       prompts)
    edge matrix        rows x N with rows = logits + kept features, N = A + (L + 1) x P columns
                       (every active feature, then errors, then tokens), float32 while computed
    feature ranking    with a budget that cuts (kept < A): two more copies of the rows so far,
                       made each time the features are re-ranked by estimated influence
    adjacency          (kept + (L + 1) x P + logits)^2 float32 for influence and pruning

The phases of a run do not all hold everything at once: the estimate is the process's fixed
cost plus the weights plus the largest phase (precompute, rows, graph). The constants c_d, c_p,
g_d and g_p were measured (benchmarks/bench_memory.py, `tests/attribution/test_memory.py` keeps the
estimate within a factor of 2 of a measured peak on two shapes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

RUNTIME_BYTES = 450 * 2**20  # Python, torch, TransformerLens and tokenizer, measured: ~450 MB RSS
ACTIVATION_PER_D = 10  # (P, d) tensors per layer the forward pass keeps for the backward
ACTIVATION_PER_HEAD_P = 2  # (heads, P, P) attention tensors per layer it keeps
GRADIENT_PER_D = 2  # (B, P, d) gradient tensors per layer a backward pass holds
GRADIENT_PER_HEAD_P = 2  # (B, heads, P, P) tensors of one layer's attention in a backward pass
ADJACENCY_COPIES = 2  # the adjacency and the pruned copy influence reads
WORKSPACE_BYTES = 100 * 2**20  # temporaries and allocator slack of a phase, measured: ~100 MB


class MemoryLimitError(ValueError):
    """A run whose estimated peak memory exceeds the allowed memory."""


@dataclass(frozen=True)
class RunShape:
    """The sizes that decide a run's memory."""

    n_layers: int
    n_pos: int
    d_model: int
    d_transcoder: int
    n_active: int  # active features (all of them are columns of the edge matrix)
    n_heads: int = 12
    d_vocab: int = 50257
    model_params: int = 0  # parameters of the model, counted (0: not counted)
    n_logits: int = 10
    max_feature_nodes: int | None = None  # None: every active feature
    batch_size: int = 64
    value_bytes: int = 4  # the model's dtype: 4 float32, 2 bfloat16/float16
    edge_bytes: int = 4  # the edge matrix's stored precision
    cross_layer: bool = False
    lazy_decoder: bool = True
    lazy_encoder: bool = False

    @property
    def n_kept(self) -> int:
        budget = self.n_active if self.max_feature_nodes is None else self.max_feature_nodes
        return min(budget, self.n_active)

    @property
    def n_columns(self) -> int:
        return self.n_active + (self.n_layers + 1) * self.n_pos


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated peak bytes, with the terms of the largest phase and what to do about it."""

    total: int
    phase: str  # the phase that sets the peak
    terms: dict[str, int] = field(default_factory=dict)  # term -> bytes, in the peak
    phases: dict[str, dict[str, int]] = field(default_factory=dict)  # every phase's own terms

    @property
    def dominant(self) -> str:
        return max(self.terms, key=self.terms.get)

    @property
    def dominant_in_run(self) -> str:
        """The largest term of the peak phase, leaving out the process and the weights."""
        return max(self.phases[self.phase], key=self.phases[self.phase].get)

    def breakdown(self, top: int = 4) -> str:
        """'edge matrix 2.1 GB, activations 1.0 GB, ...': the `top` largest terms."""
        parts = sorted(self.terms.items(), key=lambda kv: -kv[1])[:top]
        return ", ".join(f"{name} {format_bytes(size)}" for name, size in parts if size)


def estimate(shape: RunShape) -> MemoryEstimate:
    """The peak memory of a run of this shape (see the module docstring for the terms)."""
    s, b = shape, shape.value_bytes
    L, P, d, F = s.n_layers, s.n_pos, s.d_model, s.d_transcoder
    n_out = (L + 1) / 2 if s.cross_layer else 1  # decoder rows per feature, on average
    weights = {
        "runtime (python, torch)": RUNTIME_BYTES,
        "model weights": s.model_params * b,
        "transcoder encoders": (F * d * b) if s.lazy_encoder else L * F * d * b,
        "transcoder decoders": 0 if s.lazy_decoder else int(L * F * d * n_out * b),
    }
    error_nodes = L * P * d * b
    precompute = {
        "logits": P * s.d_vocab * 4,
        "cached activations (one copy)": 2 * L * P * d * b + 2 * P * F * b,
        "error nodes": error_nodes,
        "workspace (temporaries)": WORKSPACE_BYTES,
    }
    edge_matrix = (s.n_logits + s.n_kept) * s.n_columns * 4
    rows = {
        "activations for the backward passes": (
            L * P * (ACTIVATION_PER_D * d + ACTIVATION_PER_HEAD_P * s.n_heads * P)
            + s.batch_size * P * (GRADIENT_PER_D * L * d + GRADIENT_PER_HEAD_P * s.n_heads * P)
        )
        * b,
        "edge matrix": edge_matrix,
        "feature ranking": 2 * edge_matrix if s.n_kept < s.n_active else 0,
        "source vectors": int(2 * s.n_active * n_out * d * b),
        "error nodes": error_nodes,
        "workspace (temporaries)": WORKSPACE_BYTES,
    }
    n_nodes = s.n_kept + (L + 1) * P + s.n_logits
    graph = {
        "edge matrix": edge_matrix * s.edge_bytes // 4,
        "adjacency": ADJACENCY_COPIES * n_nodes * n_nodes * 4
        + (s.n_logits + s.n_kept) * (n_nodes - s.n_logits) * 4,  # the kept columns, gathered
        "error nodes": error_nodes,
        "workspace (temporaries)": WORKSPACE_BYTES,
    }
    phases = {"precompute": precompute, "rows": rows, "graph": graph}
    phase = max(phases, key=lambda name: sum(phases[name].values()))
    terms = weights | phases[phase]
    return MemoryEstimate(total=sum(terms.values()), phase=phase, terms=terms, phases=phases)


ADVICE = {
    "edge matrix": "a smaller --max-feature-nodes or a shorter prompt (rows x columns: kept "
    "features x (active features + (layers + 1) x positions))",
    "adjacency": "a smaller --max-feature-nodes or a shorter prompt",
    "feature ranking": "a smaller --max-feature-nodes or a shorter prompt",
    "activations for the backward passes": "a smaller --batch-size or a shorter prompt",
    "source vectors": "a shorter prompt (every active feature is a column)",
    "model weights": "--dtype bfloat16, or a smaller model",
    "transcoder encoders": "--lazy-encoder or --offload disk (read encoders from disk per layer)",
    "transcoder decoders": "lazy decoder reading (the default) or --offload disk",
    "logits": "a shorter prompt",
    "runtime (python, torch)": "more memory: this is the fixed cost of the process",
    "workspace (temporaries)": "more memory: this is the fixed cost of a run",
    "error nodes": "a shorter prompt (one per layer and position)",
    "cached activations (one copy)": "a shorter prompt",
}


def check_fits(estimated: MemoryEstimate, limit: int | None) -> None:
    """Raise `MemoryLimitError` with one line when the estimate exceeds `limit` bytes."""
    if limit is None or estimated.total <= limit:
        return
    dominant = estimated.dominant
    raise MemoryLimitError(
        f"this run needs about {format_bytes(estimated.total)} (> --max-memory "
        f"{format_bytes(limit)}); {dominant} dominates ({estimated.breakdown()}): "
        f"try {ADVICE[dominant]}"
    )


UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_size(text: str | int) -> int:
    """'8GB', '8G', '512MiB', '1.5g' or a number of bytes -> bytes (powers of 1024)."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(I?B)?\s*", str(text).upper())
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"a memory size like 8GB, 512MB or 1.5G, got {text!r}")
    return int(float(match.group(1)) * UNITS[match.group(2)])


def format_bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def run_shape(replacement, n_pos: int, n_active: int, **settings) -> RunShape:
    """The `RunShape` of a run of a loaded `ReplacementModel` on a prompt of `n_pos` tokens with
    `n_active` active features; `settings`: n_logits, max_feature_nodes, batch_size,
    edge_bytes."""
    cfg, tc = replacement.cfg, replacement.transcoders
    return RunShape(
        n_layers=cfg.n_layers,
        n_pos=n_pos,
        d_model=cfg.d_model,
        d_transcoder=tc.d_transcoder,
        n_active=n_active,
        n_heads=cfg.n_heads,
        d_vocab=cfg.d_vocab,
        model_params=sum(p.numel() for p in replacement.model.parameters()),
        value_bytes=replacement.model.W_E.element_size(),
        cross_layer=tc.cross_layer,
        lazy_decoder=tc.lazy_decoder,
        lazy_encoder=tc.lazy_encoder,
        **settings,
    )


def check_run(
    replacement,
    n_pos: int,
    n_active: int,
    n_logits: int,
    limit: int | str | None,
    **settings,
) -> MemoryEstimate:
    """The estimate of a run about to compute its rows; `MemoryLimitError` when it exceeds
    `limit` (bytes or a size like '8GB'; None: no limit). `settings`: max_feature_nodes,
    batch_size, edge_bytes."""
    shape = run_shape(replacement, n_pos, n_active, n_logits=n_logits, **settings)
    estimated = estimate(shape)
    check_fits(estimated, None if limit is None else parse_size(limit))
    return estimated
