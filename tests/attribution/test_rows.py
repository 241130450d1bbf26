"""Edges are exact direct effects: checked by intervening on the frozen model, not by autograd.

For a sampled edge s -> t, run the prompt again with attention patterns, every norm scale and
every MLP output frozen at their clean values (the skip path, where a transcoder has one, still
follows its input), add the source's output vector once more where it writes, and measure the
change at the target's input. The frozen model is affine, so that change is the edge weight.
"""

import pytest
import torch

from circuitflow.attribution import ReplacementModel, attribute
from circuitflow.attribution.replacement import FINAL_NORM_SCALE, FROZEN_HOOK_SUFFIXES
from circuitflow.attribution.toy import CROSS_LAYER, PER_LAYER, random_model, random_transcoders

PROMPT = "w4 w8 w15 w16 w23 w42"


def frozen_target_change(rm: ReplacementModel, graph, source: int, target: int) -> float:
    """Change at `target`'s input when `source`'s output vector is added again, frozen model."""
    model, tc = rm.model, rm.transcoders
    tokens = graph.tokens[None]
    n_sel, n_pos, n_layers = graph.n_features, graph.n_pos, graph.n_layers

    # Clean run: record everything that the frozen model holds fixed.
    clean: dict[str, torch.Tensor] = {}
    frozen = [
        n for n in model.hook_dict if n.endswith(FROZEN_HOOK_SUFFIXES) or n == FINAL_NORM_SCALE
    ]
    sites = (
        frozen
        + [tc.input_hook(l) for l in range(n_layers)]
        + [tc.output_hook(l) for l in range(n_layers)]
    )
    sites.append("hook_embed")

    def record(acts, hook):
        clean[hook.name] = acts.detach().clone()

    with torch.no_grad(), model.hooks(fwd_hooks=[(n, record) for n in sites]):
        model(tokens)

    # Where the source writes: (hook name, position, vector) triples.
    writes = []
    if source < n_sel:
        layer, pos, feat = graph.active_features[graph.selected_features[source]].tolist()
        value = graph.activation_values[graph.selected_features[source]]
        rows = tc.decoder_rows(layer, torch.tensor([feat]))[0]  # (n_out, d)
        for k in range(rows.shape[0]):
            writes.append((tc.output_hook(layer + k), pos, value * rows[k]))
    elif source < graph.token_start:
        layer, pos = divmod(source - n_sel, n_pos)
        mlp_in = clean[tc.input_hook(layer)][0]
        recon = _reconstruction(tc, graph, layer, mlp_in)
        error = clean[tc.output_hook(layer)][0, pos] - recon[pos]
        writes.append((tc.output_hook(layer), pos, error))
    else:
        pos = source - graph.token_start
        writes.append(("hook_embed", pos, clean["hook_embed"][0, pos]))

    def run(perturb: bool) -> torch.Tensor:
        inputs: dict[int, torch.Tensor] = {}
        hooks = [(n, lambda acts, hook: clean[hook.name]) for n in frozen]
        for l in range(n_layers):
            hooks.append((tc.input_hook(l), _keep(inputs, l)))
            hooks.append((tc.output_hook(l), _frozen_mlp(tc, clean, inputs, l)))
        if perturb:
            for name, pos, vec in writes:
                hooks.append((name, _add_at(pos, vec)))
        with torch.no_grad(), model.hooks(fwd_hooks=hooks):
            resid = model(tokens, stop_at_layer=n_layers)
            final = model.ln_final(resid)
        if target >= graph.logit_start:
            tok = graph.logit_token_ids[target - graph.logit_start]
            direction = (model.W_U[:, tok] - model.W_U.mean(dim=1)).detach()
            return final[0, -1] @ direction
        layer, pos, feat = graph.active_features[graph.selected_features[target]].tolist()
        return inputs[layer][0, pos] @ tc.W_enc[layer, feat]

    return float(run(True) - run(False))


def _keep(store, layer):
    def hook(acts, hook):
        store[layer] = acts
        return acts

    return hook


def _frozen_mlp(tc, clean, inputs, layer):
    def hook(acts, hook):
        name = tc.output_hook(layer)
        out = clean[name].clone()
        if tc.has_skip:
            out += tc.skip(layer, inputs[layer]) - tc.skip(layer, clean[tc.input_hook(layer)])
        # Later writes (the perturbation) are added by hooks registered after this one.
        return out

    return hook


def _add_at(pos, vec):
    def hook(acts, hook):
        acts = acts.clone()
        acts[:, pos] += vec
        return acts

    return hook


def _reconstruction(tc, graph, layer, mlp_in):
    """The transcoders' reconstruction at `layer` from the graph's active features."""
    inputs = torch.zeros(graph.n_layers, graph.n_pos, tc.d_model)
    inputs[layer] = mlp_in  # only this layer's skip term is read below
    return tc.reconstruct(graph.active_features, graph.activation_values, inputs)[layer]


def sample_edges(graph, generator):
    """Up to two nonzero edges of each kind: feature/error/token -> feature/logit."""
    kinds = {
        "feature": range(0, graph.n_features),
        "error": range(graph.error_start, graph.token_start),
        "token": range(graph.token_start, graph.logit_start),
    }
    targets = {
        "feature": range(0, graph.n_features),
        "logit": range(graph.logit_start, graph.n_nodes),
    }
    picked = []
    for s_kind, sources in kinds.items():
        for t_kind, tgts in targets.items():
            block = graph.adjacency[tgts.start : tgts.stop, sources.start : sources.stop]
            nonzero = torch.nonzero(block.abs() > 1e-3 * block.abs().max())
            order = torch.randperm(len(nonzero), generator=generator)[:2]
            for t, s in nonzero[order].tolist():
                picked.append((f"{s_kind}->{t_kind}", sources.start + s, tgts.start + t))
    return picked


@pytest.mark.parametrize(
    "family,kind,skip",
    [
        ("gpt2", PER_LAYER, False),
        ("llama", PER_LAYER, True),
        ("gemma2", PER_LAYER, False),
        ("gpt2", CROSS_LAYER, False),
        ("gemma2", CROSS_LAYER, True),
    ],
)
def test_edges_equal_interventions_on_the_frozen_model(family, kind, skip):
    model = random_model(family)
    rm = ReplacementModel(model, random_transcoders(model, kind=kind, skip=skip))
    graph = attribute(PROMPT, rm, batch_size=32)
    scale = graph.adjacency.abs().max()
    edges = sample_edges(graph, torch.Generator().manual_seed(0))
    kinds = {k for k, _, _ in edges}
    assert {
        "feature->feature",
        "error->feature",
        "token->feature",
        "feature->logit",
        "token->logit",
    } <= kinds
    for kind_name, source, target in edges:
        expected = frozen_target_change(rm, graph, source, target)
        got = float(graph.adjacency[target, source])
        assert got == pytest.approx(expected, abs=2e-5 * float(scale)), kind_name
