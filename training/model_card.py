"""Render MODEL_CARD.md from the metrics dict that `evaluate.evaluate_all` measures.

The card is generated, never edited by hand: `circuitflow train-demo` rewrites it with the
numbers of the files it just wrote.
"""

from __future__ import annotations

from typing import Any

from circuitflow.training.tokenizer import SPECIAL_TOKENS
from circuitflow.training.world import CorpusMix

_TARGETS = {
    "accuracy_one_hop": 0.95,
    "accuracy_two_hop_trained": 0.95,
    "accuracy_two_hop_held_out": 0.90,
}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _check(ok: bool) -> str:
    return "yes" if ok else "**NO**"


def _model_section(m: dict[str, Any], cfg: dict[str, Any], training: dict[str, Any]) -> list[str]:
    mc = cfg["model"]
    seed = m["seed_prompt"]
    lines = [
        "## Model",
        "",
        f"HookedTransformer (TransformerLens): {mc['n_layers']} layers, d_model {mc['d_model']}, "
        f"{mc['n_heads']} heads, d_mlp {mc['d_mlp']}, {mc['act_fn']}, RMSNorm, rotary positions, "
        f"untied embeddings; vocabulary {m['d_vocab']}; {m['n_params']:,} parameters (float32).",
        f"Trained {mc['steps']} steps of {mc['batch_size']} x {mc['seq_len']} tokens, AdamW "
        f"lr {mc['lr']} (warm-up {mc['warmup_steps']}, cosine to 10%), weight decay "
        f"{mc['weight_decay']}; final training loss {training['model']['final_loss']:.3f}.",
        "",
        "| facts | n | top-1 accuracy | target | met |",
        "|---|---|---|---|---|",
    ]
    for key, target in _TARGETS.items():
        name = key.removeprefix("accuracy_")
        acc = m[key]
        lines.append(
            f"| {name.replace('_', ' ')} | {m['n_facts'][name]} | {_pct(acc)} | "
            f">= {_pct(target)} | {_check(acc >= target)} |"
        )
    lines += [
        "",
        f'Seed prompt: "{seed["prompt"]}" -> top token "{seed["top_token"]}", '
        f'p("{seed["answer"]}") = {seed["probability"]:.4f} (target >= 0.9: '
        f"{_check(seed['probability'] >= 0.9 and seed['top_token'] == seed['answer'])}).",
        "",
    ]
    return lines


def _transcoder_section(name: str, t: dict[str, Any], train: dict[str, Any]) -> list[str]:
    c = t["config"]
    s = t["splice"]
    title = {
        "plt": "Per-layer transcoders (`transcoders/plt/`)",
        "clt": "Cross-layer transcoder (`transcoders/clt/`)",
    }[name]
    lines = [
        f"### {title}",
        "",
        f"{c['n_features']} features per layer, activation {c['activation']}, reads "
        f"`blocks.L.{c['feature_input_hook']}`, writes `blocks.L.{c['feature_output_hook']}`; "
        f"trained {train['seconds']:.0f} s on {train['activation_tokens']:,} tokens of activations "
        f"({_pct(train['dead_fraction'])} features dead at the end).",
        "",
        "| layer | FVU | mean active features per token |",
        "|---|---|---|",
    ]
    for layer, (fvu, act) in enumerate(zip(t["fvu"], t["active_per_token"], strict=True)):
        lines.append(f"| {layer} | {fvu:.4f} | {act:.1f} |")
    worst = max(t["fvu"])
    splice_ok = min(s["accuracy_one_hop"], s["accuracy_two_hop_trained"]) >= 0.95
    lines += [
        "",
        f"Max FVU {worst:.4f} (target <= 0.01: {_check(worst <= 0.01)}).",
        "Spliced model (every MLP replaced, no error terms): one-hop "
        f"{_pct(s['accuracy_one_hop'])}, two-hop trained "
        f"{_pct(s['accuracy_two_hop_trained'])}, two-hop held-out "
        f"{_pct(s['accuracy_two_hop_held_out'])} (target >= 95% on one- and two-hop: "
        f"{_check(splice_ok)}); next-token agreement with the original "
        f"{_pct(s['agreement'])} (target >= 95%: {_check(s['agreement'] >= 0.95)}).",
        "",
    ]
    return lines


def _attribution_section(sets: dict[str, Any]) -> list[str]:
    lines = [
        "## Attribution on the seed prompt and circuit check",
        "",
        "`attribution.attribute` on the seed prompt (salient targets: top tokens to 0.95 "
        "probability, at most 10), pruned at node threshold 0.8 and edge threshold 0.98; scores "
        "of the unpruned graph.",
        "",
        "| set | active features | nodes | kept nodes | kept edges | replacement | completeness |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, t in sets.items():
        a = t["attribution"]
        lines.append(
            f"| {name} | {a['n_active_features']} | {a['n_nodes']} | {a['n_nodes_kept']} | "
            f"{a['n_edges_kept']} | {a['replacement_score']:.3f} | "
            f"{a['completeness_score']:.3f} |"
        )
    plt = sets["plt"]["attribution"] if "plt" in sets else None
    if plt is not None:
        ok = plt["replacement_score"] >= 0.8 and plt["completeness_score"] >= 0.9
        lines += [
            "",
            f"Per-layer set: replacement >= 0.8 and completeness >= 0.9: {_check(ok)}.",
        ]
    lines += [
        "",
        'Circuit check: at the " Dallas" position, zero-ablate (`attribution.intervene`, '
        "attention frozen) the 5 features with the highest node influence, or 5 random active "
        'features there (mean of the draws); effect = drop of the " Austin" logit minus the '
        "mean logit at the last position (target: top-5 drop >= 3 x random drop).",
        "",
        "| set | clean margin | top-5 drop | random-5 drop (mean) | random draws | met |",
        "|---|---|---|---|---|---|",
    ]
    for name, t in sets.items():
        c = t["attribution"]["circuit_check"]
        draws = ", ".join(f"{d:.3f}" for d in c["random_drops"])
        lines.append(
            f"| {name} | {c['clean_margin']:.3f} | {c['top_drop']:.3f} | "
            f"{c['random_drop']:.3f} | {draws} | {_check(c['passed'])} |"
        )
    lines.append("")
    return lines


def render(metrics: dict[str, Any]) -> str:
    """The full MODEL_CARD.md text."""
    cfg, training = metrics["config"], metrics["training"]
    total_mb = metrics["files"]["total_bytes"] / 1e6
    mix = CorpusMix()
    lines = [
        f"# {metrics['model']['name']}: the built-in model",
        "",
        "Generated by `circuitflow train-demo` (the Prefect flow `flows.train_demo`); do not "
        "edit by hand. Every number below was measured on the files in this directory.",
        "",
        "## World and text",
        "",
        "18 places (10 US states with a region, 8 countries with a language), each with a "
        "capital and 3 other cities (`attribution/training/world.py`). Training text: about "
        f"{_pct(mix.one_hop)} one-hop facts, {_pct(mix.two_hop)} two-hop facts, "
        f"{_pct(mix.filler)} filler, packed "
        "after a start token. Held out: one city per (place, relation) in a seeded "
        f"{_pct(cfg['held_out_fraction'])} of the two-hop combinations (seed {cfg['seed']}); "
        "they never appear in training text.",
        "",
        "## Tokenizer (`tokenizer/`)",
        "",
        "Word-level (`tokenizers` WordLevel, Whitespace pre-tokenizer), case kept. Special "
        f"tokens: {', '.join(f'`{t}` = {i}' for i, t in enumerate(SPECIAL_TOKENS))}. Tokens "
        'carry no spaces: the answer " Austin" is the token "Austin" (" Austin" and "Austin" '
        "both encode to it; decoding joins tokens with spaces). The tokenizer adds no special "
        "tokens itself; TransformerLens `to_tokens` prepends `<bos>`.",
        "",
        *_model_section(metrics["model"], cfg, training),
        "## Transcoders",
        "",
        f"Measured on {metrics['eval_tokens']:,} held-out tokens (fresh text, start position "
        "excluded).",
        "",
    ]
    for name, t in metrics["transcoders"].items():
        lines += _transcoder_section(name, t, training[name])
    lines += _attribution_section(metrics["transcoders"])
    seconds = training.get("total_seconds")
    lines += [
        "## Files and time",
        "",
        f"Model and transcoder files: {total_mb:.2f} MB in total (target < 20 MB: "
        f"{_check(total_mb < 20)}).",
    ]
    if seconds is not None:
        threads = training.get("torch_threads")
        lines.append(
            f"train-demo wall time: {seconds:.0f} s ({seconds / 60:.1f} min) from the flow's "
            f"start, on {threads} PyTorch thread(s)."
        )
    lines.append(
        f"Steps: language model {training['model']['seconds']:.0f} s, per-layer transcoders "
        f"{training['plt']['seconds']:.0f} s, cross-layer transcoder "
        f"{training['clt']['seconds']:.0f} s."
    )
    lines.append("")
    return "\n".join(lines)
