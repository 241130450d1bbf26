"""Measure the built-in model and its transcoders: the numbers MODEL_CARD.md reports.

- `fact_accuracy`: top-1 accuracy of the next word on a list of facts (prompt -> answer).
- `answer_probability`: probability of one answer after one prompt (the seed prompt's " Austin").
- `reconstruction_metrics`: per layer, the transcoders' fraction of variance unexplained (FVU)
  of the MLP output and the mean number of active features per token, on held-out text.
- `splice_metrics`: replace every MLP by its transcoder (no error terms) and measure fact
  accuracy and agreement of the next-token prediction with the original model.
- `seed_attribution`: the attribution graph of the seed prompt (sizes, replacement and
  completeness scores) and the circuit check (ablating the most influential features at
  " Dallas" versus random ones), with `attribution.attribute` and `attribution.intervene`.

Transcoders are read with `attribution.load_transcoders`, the same loader attribution uses, so
the numbers describe the files as users will load them.

Every prompt is run with the start token prepended, as at inference. Facts of different lengths
are right-padded and read at their own last position: the model is causal, so padding after a
prompt does not change the logits at the prompt's positions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import yaml
from transformer_lens import HookedTransformer

from circuitflow.attribution.models import load_model
from circuitflow.attribution.replacement import bind_layer
from circuitflow.attribution.transcoders import Transcoders, load_transcoders
from circuitflow.training.world import SEED_ANSWER, SEED_PROMPT, Fact, FactSplit


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
    L = model.cfg.n_layers
    names = {f"blocks.{layer}.{h}" for layer in range(L) for h in (input_hook, output_hook)}
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    xs = [cache[f"blocks.{layer}.{input_hook}"] for layer in range(L)]
    ys = [cache[f"blocks.{layer}.{output_hook}"] for layer in range(L)]
    return torch.stack(xs), torch.stack(ys)


class DenseDecoder:
    """All decoder rows of a transcoder set in memory, to reconstruct many tokens at once.

    `attribution.Transcoders` reads decoder rows per feature (real sets are large); the
    built-in sets are small, so evaluation reads them whole: rows[i] is (F, n_out_i, d), where
    a feature of layer i writes to layers i .. i + n_out_i - 1 (n_out_i is 1 per-layer).
    """

    def __init__(self, tc: Transcoders) -> None:
        self.tc = tc
        features = torch.arange(tc.d_transcoder)
        self.rows = [tc.decoder_rows(layer, features) for layer in range(tc.n_layers)]

    def decode_layer(self, acts: dict[int, torch.Tensor], layer: int) -> torch.Tensor:
        """MLP output (..., d) of `layer` from activations (..., F) of the layers <= it."""
        out = self.tc.b_dec[layer]
        for i, a in acts.items():
            j = layer - i
            if 0 <= j < self.rows[i].shape[1]:
                out = out + a @ self.rows[i][:, j]
        return out


@torch.no_grad()
def reconstruction_metrics(
    model: HookedTransformer, tc: Transcoders, tokens: torch.Tensor
) -> dict[str, list[float]]:
    """Per-layer FVU and mean active features per token on `tokens` (batch, pos).

    The start position (0) is excluded, as attribution excludes it. FVU at layer l is
    sum ||y - y_hat||^2 / sum ||y - mean(y)||^2 over all non-start tokens. For a cross-layer
    transcoder, features are counted at the layer whose encoder they belong to.
    """
    x, y = mlp_activations(model, tokens, tc.feature_input_hook, tc.feature_output_hook)
    x, y = x[:, :, 1:].flatten(1, 2), y[:, :, 1:].flatten(1, 2)  # (L, N, d)
    decoder = DenseDecoder(tc)
    acts = {layer: tc.encode(layer, x[layer]) for layer in range(tc.n_layers)}  # each (N, F)
    fvu, active = [], []
    for layer in range(tc.n_layers):
        y_hat = decoder.decode_layer(acts, layer)  # (N, d)
        err = (y[layer] - y_hat).pow(2).sum()
        var = (y[layer] - y[layer].mean(0)).pow(2).sum()
        fvu.append((err / var).item())
        active.append((acts[layer] > 0).float().sum(-1).mean().item())
    return {"fvu": fvu, "active_per_token": active}


@contextmanager
def spliced(model: HookedTransformer, tc: Transcoders) -> Iterator[None]:
    """Within the block, every MLP's output is replaced by its transcoder's reconstruction.

    No error terms: the model runs on transcoder features alone. Implemented with hooks that
    encode each layer's transcoder input and overwrite the MLP output with the reconstruction.
    A cross-layer transcoder's output at layer l sums features of layers <= l, so activations
    are kept as the forward pass reaches them.
    """
    decoder = DenseDecoder(tc)
    acts: dict[int, torch.Tensor] = {}

    def read_input(x: torch.Tensor, hook: Any, layer: int) -> torch.Tensor:
        acts[layer] = tc.encode(layer, x)  # (batch, pos, F)
        return x

    def write_output(y: torch.Tensor, hook: Any, layer: int) -> torch.Tensor:
        return decoder.decode_layer(acts, layer)  # (batch, pos, d)

    fwd: list[tuple[str, Callable]] = []
    for layer in range(tc.n_layers):
        fwd.append((tc.input_hook(layer), bind_layer(read_input, layer)))
        fwd.append((tc.output_hook(layer), bind_layer(write_output, layer)))
    with model.hooks(fwd_hooks=fwd):
        yield
    acts.clear()


@torch.no_grad()
def splice_metrics(
    model: HookedTransformer,
    tc: Transcoders,
    facts: dict[str, Sequence[Fact]],
    tokens: torch.Tensor,
) -> dict[str, float]:
    """Fact accuracy of the spliced model per fact group, and next-token agreement.

    Agreement: over every non-start position of `tokens`, the fraction where the spliced
    model's most likely next token equals the original model's.
    """
    original = model(tokens).argmax(-1)[:, 1:]  # (batch, pos - 1)
    with spliced(model, tc):
        out = {f"accuracy_{name}": fact_accuracy(model, group) for name, group in facts.items()}
        replaced = model(tokens).argmax(-1)[:, 1:]
    out["agreement"] = (original == replaced).float().mean().item()
    return out


# ---- attribution on the seed prompt and the circuit check -----------------------------------


def seed_attribution(
    model: HookedTransformer,
    tc: Transcoders,
    *,
    prompt: str = SEED_PROMPT,
    answer: str = SEED_ANSWER,
    cause: str = "Dallas",
    n_top: int = 5,
    n_draws: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """The attribution graph of `prompt` and the circuit check at the `cause` token.

    Graph: `attribution.attribute` with salient targets, pruned at 0.8 / 0.98; replacement and
    completeness scores of the unpruned graph (as the reference reports them).

    Circuit check: at the position of `cause`, zero-ablate (with `attribution.intervene`, the
    attention patterns frozen) the `n_top` features with the highest node influence, and, for
    comparison, `n_top` features drawn at random among that position's active features
    (`n_draws` draws). The effect is the drop of the answer's logit minus the mean logit at the
    last position.
    """
    import random

    from circuitflow.attribution import (
        ReplacementModel,
        attribute,
        graph_scores,
        intervene,
        node_influence,
    )
    from circuitflow.attribution import prune as prune_graph

    rm = ReplacementModel(model, tc)
    start = time.perf_counter()
    graph = attribute(prompt, rm)
    seconds = time.perf_counter() - start
    pruned = prune_graph(graph, 0.8, 0.98)
    replacement, completeness = graph_scores(graph)
    influence, _ = node_influence(graph)

    position = graph.tokens.tolist().index(model.to_single_token(cause))
    features = graph.active_features[graph.selected_features]  # (n_sel, 3) (layer, pos, f)
    here = (features[:, 1] == position).nonzero().squeeze(1)
    ranked = here[influence[: graph.n_features][here].argsort(descending=True)]
    top = features[ranked[:n_top]].tolist()
    active_here = graph.active_features[graph.active_features[:, 1] == position].tolist()

    answer_id = model.to_single_token(answer)

    def answer_margin(interventions: list) -> float:
        logits = intervene(rm, prompt, interventions, freeze_attention=True).logits[-1]
        return (logits[answer_id] - logits.mean()).item()

    clean = answer_margin([])
    ablate = lambda fs: clean - answer_margin([(l, p, f, 0.0) for l, p, f in fs])  # noqa: E731
    rng = random.Random(seed)
    n_random = min(n_top, len(active_here))
    random_drops = [ablate(rng.sample(active_here, n_random)) for _ in range(n_draws)]
    top_drop = ablate(top)
    random_drop = sum(random_drops) / n_draws
    return {
        "n_active_features": int(graph.active_features.shape[0]),
        "n_nodes": graph.n_nodes,
        "n_nodes_kept": int(pruned.node_mask.sum()),
        "n_edges_kept": int(pruned.edge_mask.sum()),
        "replacement_score": float(replacement),
        "completeness_score": float(completeness),
        "seconds": seconds,
        "circuit_check": {
            "position": position,
            "clean_margin": clean,
            "top_features": top,
            "top_drop": top_drop,
            "random_drops": random_drops,
            "random_drop": random_drop,
            "n_draws": n_draws,
            "ratio": top_drop / random_drop if random_drop > 0 else None,
            # "Lowers ... at least 3 times as much": the top features must lower the margin.
            "passed": top_drop > 0 and top_drop >= 3 * random_drop,
        },
    }


# ---- everything, for the model card --------------------------------------------------------


def directory_bytes(path: Path) -> dict[str, int]:
    """Size in bytes of every file under `path`, by relative path (sorted)."""
    return {
        str(p.relative_to(path)): p.stat().st_size for p in sorted(path.rglob("*")) if p.is_file()
    }


def evaluate_all(
    out: Path,
    split: FactSplit,
    eval_tokens: Callable[[HookedTransformer], torch.Tensor],
    transcoder_dirs: dict[str, Path],
) -> dict[str, Any]:
    """Every number of MODEL_CARD.md for the model and transcoders saved under `out`."""
    model = load_model(out)
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
        tc = load_transcoders(directory, lazy_decoder=False)
        metrics["transcoders"][name] = {
            "config": yaml.safe_load((Path(directory) / "config.yaml").read_text()),
            **reconstruction_metrics(model, tc, tokens),
            "splice": splice_metrics(model, tc, facts, tokens),
            "attribution": seed_attribution(model, tc),
        }
    files = directory_bytes(out)
    metrics["files"] = {"total_bytes": sum(files.values()), "by_file": files}
    return metrics
