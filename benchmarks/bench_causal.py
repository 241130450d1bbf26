"""Time the causal tools against circuit-tracer's, on the built-in model, in one process.

    python benchmarks/bench_causal.py            # the built-in model, per-layer transcoders
    python benchmarks/bench_causal.py --repeats 20 --transcoders clt

Measures, for the seed prompt:
- attribution with custom targets (a logit difference and a random direction), ours and
  circuit-tracer's `attribute` with `CustomTarget`s, and whether the adjacencies agree;
- one feature intervention (frozen attention, free attention, every layer constrained), ours
  and circuit-tracer's `feature_intervention`, and the largest logit difference;
- an `Intervener` reusing its clean run (what the validate stage does) per intervention;
- the validate stage's ablation curve (k = 1, 2, 4, 5, ..., all kept; 8 random draws each);
- greedy generation of 8 tokens with a steering intervention: ours (a full forward pass per
  token) and circuit-tracer's `feature_intervention_generate` (key-value cache).

Prints median seconds and the ratio ours / reference.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: see DESIGN.md

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from circuit_tracer.attribution.targets import CustomTarget  # noqa: E402

from circuitflow.attribution import (  # noqa: E402
    ReplacementModel,
    attribute,
    load_model,
    load_transcoders,
    node_influence,
    precompute,
    prune,
    tokenize,
)
from circuitflow.attribution.ablation import ablation_curves, doubling_ks  # noqa: E402
from circuitflow.attribution.intervene import Intervener, generate, intervene  # noqa: E402
from circuitflow.attribution.target_specs import direction, logit_diff  # noqa: E402
from circuitflow.attribution.targets import explicit_targets  # noqa: E402
from circuitflow.models import BUILTIN_MODEL  # noqa: E402
from circuitflow.training.world import SEED_PROMPT  # noqa: E402
from tests.attribution.reference import reference_attribute, reference_model  # noqa: E402

SETTINGS = [(3, 8, 128, 0.0), (3, 8, 366, 1.97), (1, slice(5, None), 501, 2.0)]


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def row(name: str, ours: float, theirs: float | None, note: str = "") -> None:
    ratio = f"{ours / theirs:6.2f}" if theirs else "     -"
    ref = f"{theirs * 1000:9.1f}" if theirs else "        -"
    print(f"{name:44s} {ours * 1000:9.1f} {ref} {ratio}  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--transcoders", choices=["plt", "clt"], default="plt")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    model = load_model(BUILTIN_MODEL)
    rm = ReplacementModel(model, load_transcoders(BUILTIN_MODEL / "transcoders" / args.transcoders))
    ref = reference_model(model, rm.transcoders)
    tokens = tokenize(rm, SEED_PROMPT)
    print(f"torch threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.2f}")
    print(f"{'median ms':44s} {'ours':>9s} {'ref':>9s} {'ratio':>6s}")

    a, b = (rm.tokenizer.encode(t)[0] for t in (" Austin", " Dallas"))
    v = torch.randn(rm.cfg.d_model, generator=torch.Generator().manual_seed(0))
    ours_targets = [logit_diff(" Austin", " Dallas"), direction("random", v)]
    ref_targets = [
        CustomTarget("diff", 1.0, (rm.W_U[:, a] - rm.W_U[:, b]).detach()),
        CustomTarget("random", 1.0, v),
    ]
    graph = attribute(SEED_PROMPT, rm, targets=ours_targets)
    ref_graph = reference_attribute(SEED_PROMPT, ref, attribution_targets=ref_targets)
    error = (graph.adjacency - ref_graph.adjacency_matrix).abs().max()
    row(
        "attribute, 2 custom targets",
        median_seconds(lambda: attribute(SEED_PROMPT, rm, targets=ours_targets), args.repeats),
        median_seconds(
            lambda: reference_attribute(SEED_PROMPT, ref, attribution_targets=ref_targets),
            args.repeats,
        ),
        f"max |dA| / max |A| = {float(error / graph.adjacency.abs().max()):.1e}",
    )

    for name, freeze, constrained in (
        ("intervene, frozen attention", True, None),
        ("intervene, free attention", False, None),
        ("intervene, every layer constrained", True, range(rm.n_layers)),
    ):
        ours = lambda f=freeze, c=constrained: intervene(  # noqa: E731
            rm, SEED_PROMPT, SETTINGS, freeze_attention=f, constrained_layers=c
        )
        theirs = lambda f=freeze, c=constrained: ref.feature_intervention(  # noqa: E731
            tokens, SETTINGS, freeze_attention=f, constrained_layers=c
        )
        diff = (ours().logits - theirs()[0][0]).abs().max()
        row(
            name,
            median_seconds(ours, args.repeats),
            median_seconds(theirs, args.repeats),
            f"max |d logit| {float(diff):.1e}",
        )

    runner = Intervener(rm, SEED_PROMPT)
    row(
        "Intervener.run (clean run reused)",
        median_seconds(lambda: runner.run(SETTINGS, activations=False), args.repeats),
        None,
    )

    full = attribute(SEED_PROMPT, rm)
    influence, _ = node_influence(full)
    kept = prune(full).node_mask[: full.n_features].nonzero().flatten()
    order = kept[torch.argsort(influence[kept], descending=True)]
    top = full.active_features[full.selected_features[order]]
    pre = precompute(rm, tokens)
    targets = explicit_targets([a], pre.last_logits, rm.W_U, rm.tokenizer)
    ks = doubling_ks(len(top), (5,))
    curve = lambda: ablation_curves(  # noqa: E731
        rm, tokens, targets, top, pre.active_features, ks, n_draws=8
    )
    row(
        f"ablation curve ({len(ks)} k x 9 = {len(ks) * 9} passes)",
        median_seconds(curve, max(1, args.repeats // 5)),
        None,
    )

    steer = [(3, slice(5, None), 366, 15.0)]
    prompt = "The capital of Texas is"
    prompt_tokens = tokenize(rm, prompt)
    ours_text = generate(rm, prompt, steer, 8, freeze_attention=False).text
    theirs_text = ref.feature_intervention_generate(
        prompt, steer, max_new_tokens=8, do_sample=False, verbose=False
    )[0]
    row(
        "generate 8 tokens, steered",
        median_seconds(lambda: generate(rm, prompt, steer, 8), max(1, args.repeats // 2)),
        median_seconds(
            lambda: ref.feature_intervention_generate(
                prompt, steer, max_new_tokens=8, do_sample=False, verbose=False
            ),
            max(1, args.repeats // 2),
        ),
        f"ours {ours_text!r}; ref {theirs_text[len(prompt) :]!r} ({len(prompt_tokens)} tokens)",
    )


if __name__ == "__main__":
    main()
