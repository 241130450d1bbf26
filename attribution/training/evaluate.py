"""Measure the built-in model and its transcoders: the numbers MODEL_CARD.md reports.

- `fact_accuracy`: top-1 accuracy of the next word on a list of facts (prompt -> answer).
- `answer_probability`: probability of one answer after one prompt (the seed prompt's " Austin").
- `reconstruction_metrics`: per layer, the transcoders' fraction of variance unexplained (FVU)
  of the MLP output and the mean number of active features per token, on held-out text.
- `splice_metrics`: replace every MLP by its transcoder (no error terms) and measure fact
  accuracy and agreement of the next-token prediction with the original model.

Every prompt is run with the start token prepended, as at inference. Facts of different lengths
are right-padded and read at their own last position: the model is causal, so padding after a
prompt does not change the logits at the prompt's positions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from transformer_lens import HookedTransformer

from attribution.training.transcoders import Transcoders
from attribution.training.world import SEED_ANSWER, SEED_PROMPT, Fact, FactSplit


def _fact_batch(
    model: HookedTransformer, prompts: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded token ids (n, T) with `<bos>` first, and each prompt's last index (n,)."""
    tok = model.tokenizer
    rows = [[tok.bos_token_id, *tok(p, add_special_tokens=False).input_ids] for p in prompts]
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = torch.tensor(r)
    last = torch.tensor([len(r) - 1 for r in rows])
    return tokens, last


@torch.no_grad()
def last_logits(model: HookedTransformer, prompts: Sequence[str]) -> torch.Tensor:
    """Logits (n, d_vocab) for the next token after each prompt."""
    tokens, last = _fact_batch(model, prompts)
    logits = model(tokens)  # (n, T, d_vocab)
    return logits[torch.arange(len(prompts)), last]


def fact_accuracy(model: HookedTransformer, facts: Sequence[Fact]) -> float:
    """Fraction of facts whose most likely next token is the answer word."""
    if not facts:
        return float("nan")
    logits = last_logits(model, [f.prompt for f in facts])
    answers = torch.tensor([model.to_single_token(f.answer) for f in facts])
    return (logits.argmax(-1) == answers).float().mean().item()


def answer_probability(model: HookedTransformer, prompt: str, answer: str) -> float:
    """Softmax probability of the token `answer` right after `prompt`."""
    probs = last_logits(model, [prompt]).softmax(-1)[0]
    return probs[model.to_single_token(answer)].item()


@torch.no_grad()
def mlp_activations(
    model: HookedTransformer, tokens: torch.Tensor, input_hook: str, output_hook: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """MLP inputs and outputs at every layer for a batch of sequences.

    Returns (X, Y), both (n_layers, batch, pos, d_model): X read at `blocks.L.<input_hook>`
    (what the transcoders read), Y at `blocks.L.<output_hook>` (what they reconstruct).
    """
    names = [
        f"blocks.{layer}.{h}"
        for layer in range(model.cfg.n_layers)
        for h in (input_hook, output_hook)
    ]
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    xs = [cache[f"blocks.{layer}.{input_hook}"] for layer in range(model.cfg.n_layers)]
    ys = [cache[f"blocks.{layer}.{output_hook}"] for layer in range(model.cfg.n_layers)]
    return torch.stack(xs), torch.stack(ys)


@torch.no_grad()
def reconstruction_metrics(
    model: HookedTransformer, transcoders: Transcoders, tokens: torch.Tensor
) -> dict[str, list[float]]:
    """Per-layer FVU and mean active features per token on `tokens` (batch, pos).

    The start position (0) is excluded, as attribution excludes it. FVU at layer l is
    sum ||y - y_hat||^2 / sum ||y - mean(y)||^2 over all non-start tokens. For a cross-layer
    transcoder, features are counted at the layer whose encoder they belong to.
    """
    x, y = mlp_activations(model, tokens, transcoders.input_hook, transcoders.output_hook)
    x, y = x[:, :, 1:].flatten(1, 2), y[:, :, 1:].flatten(1, 2)  # (L, N, d)
    acts = transcoders.encode(x)  # (L, N, F)
    y_hat = transcoders.decode(acts)  # (L, N, d)
    err = (y - y_hat).pow(2).sum(dim=(1, 2))
    var = (y - y.mean(dim=1, keepdim=True)).pow(2).sum(dim=(1, 2))
    return {
        "fvu": (err / var).tolist(),
        "active_per_token": (acts > 0).float().sum(-1).mean(-1).tolist(),
    }


@contextmanager
def spliced(model: HookedTransformer, transcoders: Transcoders) -> Iterator[None]:
    """Within the block, every MLP's output is replaced by its transcoder's reconstruction.

    No error terms: the model runs on transcoder features alone. Implemented with hooks that
    cache each layer's transcoder input and overwrite the MLP output with the reconstruction.
    A cross-layer transcoder's output at layer l sums features of layers <= l, so inputs are
    encoded as the forward pass reaches them and kept until the last layer.
    """
    acts: dict[int, torch.Tensor] = {}

    def read_input(x: torch.Tensor, hook: Any, layer: int) -> torch.Tensor:
        acts[layer] = transcoders.encode_layer(x, layer)  # (batch, pos, F)
        return x

    def write_output(y: torch.Tensor, hook: Any, layer: int) -> torch.Tensor:
        return transcoders.decode_layer(acts, layer)  # (batch, pos, d)

    fwd: list[tuple[str, Callable]] = []
    for layer in range(model.cfg.n_layers):
        fwd.append((f"blocks.{layer}.{transcoders.input_hook}", _bind(read_input, layer)))
        fwd.append((f"blocks.{layer}.{transcoders.output_hook}", _bind(write_output, layer)))
    with model.hooks(fwd_hooks=fwd):
        yield
    acts.clear()


def _bind(fn: Callable, layer: int) -> Callable:
    """fn with its `layer` argument fixed (a hook takes only (tensor, hook))."""

    def hook_fn(t: torch.Tensor, hook: Any) -> torch.Tensor:
        return fn(t, hook, layer)

    return hook_fn


@torch.no_grad()
def splice_metrics(
    model: HookedTransformer,
    transcoders: Transcoders,
    facts: dict[str, Sequence[Fact]],
    tokens: torch.Tensor,
) -> dict[str, float]:
    """Fact accuracy of the spliced model per fact group, and next-token agreement.

    Agreement: over every non-start position of `tokens`, the fraction where the spliced
    model's most likely next token equals the original model's.
    """
    original = model(tokens).argmax(-1)[:, 1:]  # (batch, pos - 1)
    with spliced(model, transcoders):
        out = {f"accuracy_{name}": fact_accuracy(model, group) for name, group in facts.items()}
        replaced = model(tokens).argmax(-1)[:, 1:]
    out["agreement"] = (original == replaced).float().mean().item()
    return out


# ---- everything, for the model card --------------------------------------------------------


def directory_bytes(path: Path) -> dict[str, int]:
    """Size in bytes of every file under `path`, by relative path (sorted)."""
    return {
        str(p.relative_to(path)): p.stat().st_size for p in sorted(path.rglob("*")) if p.is_file()
    }


def attribution_metrics(model_dir: Path, transcoder_dirs: dict[str, Path]) -> dict[str, Any]:
    """Attribution on the seed prompt and the circuit check, per transcoder set.

    HOOK FOR THE ATTRIBUTION CORE: this needs `attribution.attribute`, `attribution.prune`,
    `attribution.graph_scores` and `attribution.intervene`, written in parallel. Until they
    exist this returns {"status": "pending", ...} and the model card says so.
    """
    import attribution

    needed = ("load_model", "load_transcoders", "attribute", "prune", "graph_scores", "intervene")
    missing = [name for name in needed if not hasattr(attribution, name)]
    if missing:
        return {"status": "pending", "missing": missing}
    # LEAD: compute, for each set in transcoder_dirs, on world.SEED_PROMPT:
    #   n_active_features, n_nodes, n_nodes_kept, n_edges_kept (prune at 0.8 / 0.98),
    #   replacement_score, completeness_score; and the circuit check (top-5 vs 5 random
    #   features at the " Dallas" position, zero-ablated with intervene, effect on the
    #   " Austin" logit minus the mean logit).
    return {"status": "pending", "missing": []}


def evaluate_all(
    out: Path,
    split: FactSplit,
    eval_tokens: Callable[[HookedTransformer], torch.Tensor],
    transcoder_dirs: dict[str, Path],
    progress: bool = True,
) -> dict[str, Any]:
    """Every number of MODEL_CARD.md for the model and transcoders saved under `out`."""
    from attribution.training.language_model import load_language_model
    from attribution.training.transcoders import load_trained_transcoders

    model = load_language_model(out)
    tokens = eval_tokens(model)  # (n_sequences, seq_len)
    facts = {
        "one_hop": split.one_hop,
        "two_hop_trained": split.two_hop_train,
        "two_hop_held_out": split.two_hop_held_out,
    }
    seed_logits = last_logits(model, [SEED_PROMPT])[0]
    metrics: dict[str, Any] = {
        "model": {
            "name": model.cfg.model_name,
            "n_params": sum(p.numel() for p in model.parameters()),
            "d_vocab": model.cfg.d_vocab,
            "n_facts": {name: len(group) for name, group in facts.items()},
            **{f"accuracy_{name}": fact_accuracy(model, group) for name, group in facts.items()},
            "seed_prompt": {
                "prompt": SEED_PROMPT,
                "answer": SEED_ANSWER,
                "probability": seed_logits.softmax(-1)[model.to_single_token(SEED_ANSWER)].item(),
                "top_token": model.to_string(seed_logits.argmax()),
            },
        },
        "eval_tokens": int(tokens.shape[0] * (tokens.shape[1] - 1)),
        "transcoders": {},
    }
    for name, directory in transcoder_dirs.items():
        tc = load_trained_transcoders(directory)
        metrics["transcoders"][name] = {
            "config": tc.config(model.cfg.model_name),
            **reconstruction_metrics(model, tc, tokens),
            "splice": splice_metrics(model, tc, facts, tokens),
        }
    metrics["attribution"] = attribution_metrics(out, transcoder_dirs)
    files = directory_bytes(out)
    metrics["files"] = {"total_bytes": sum(files.values()), "by_file": files}
    return metrics
