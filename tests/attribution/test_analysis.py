"""Analysis points on the built-in model: each documented point fires with its documented values
and shapes, the values mean what the table says, attaching changes no result, and a function
that raises or modifies a value is reported with the point's name."""

import ast
import operator
import warnings

import pytest
import torch

from circuitflow.attribution import (
    ReplacementModel,
    analysis,
    attribute,
    load_model,
    load_transcoders,
    node_influence,
    prune_with_details,
)
from circuitflow.attribution.analysis import POINTS
from circuitflow.attribution.analysis_functions import shapes
from circuitflow.models import BUILTIN_MODEL

PROMPT = "The capital of the state containing Dallas is"
# A feature budget below the number of active features (492 on this prompt), so that the
# ranking point fires too; small batches so that it fires more than once.
BUDGET = dict(max_feature_nodes=300, batch_size=64, update_interval=2)


@pytest.fixture(scope="module")
def model():
    base = load_model(BUILTIN_MODEL)
    return ReplacementModel(base, load_transcoders(BUILTIN_MODEL / "transcoders" / "plt"))


def run_everything(model):
    graph = attribute(PROMPT, model, **BUDGET)
    influence, trace = node_influence(graph)
    details = prune_with_details(graph)
    return graph, influence, trace, details


@pytest.fixture(scope="module")
def recorded(model):
    """Every firing of every point on one attribution + influence + pruning, with copies of
    its values (taken on the spot: some tensors are updated in place afterwards)."""
    firings: dict[str, list[dict]] = {name: [] for name in POINTS}

    def record(event):
        firings[event.point].append(
            {k: v.detach().clone() if isinstance(v, torch.Tensor) else v
             for k, v in event.values.items()}
        )  # fmt: skip

    with analysis.attached(dict.fromkeys(POINTS, record)) as capture:
        results = run_everything(model)
    assert capture.failures == []
    return firings, results


def evaluate(expr: str | int, dims: dict[str, int]) -> int:
    """A documented dimension ('n_pos', 3, 'n_cols + n_logits') with the run's sizes."""
    if isinstance(expr, int):
        return expr
    ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}

    def walk(node):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return dims[node.id]
        return ops[type(node.op)](walk(node.left), walk(node.right))

    return walk(ast.parse(expr, mode="eval").body)


def check_type(name: str, value, declared) -> None:
    """Tensors: dtype "float" is the model's (float32 here); values without a shape: Python."""
    if declared.shape is None:
        kinds = {"int": int, "float": float, "str": str, "list[str]": list}
        assert isinstance(value, kinds[declared.dtype]) and not isinstance(value, bool), name
    elif declared.dtype == "float":
        assert value.dtype == torch.float32, name
    else:
        assert value.dtype == getattr(torch, declared.dtype), (name, value.dtype)


def test_every_point_fires_with_its_documented_values_and_shapes(model, recorded):
    firings, (graph, influence, trace, details) = recorded
    cfg, tc = model.cfg, model.transcoders
    n_pos, n_layers, n_logits = graph.n_pos, cfg.n_layers, graph.n_logits
    n_active, n_sel = len(graph.active_features), graph.n_features
    n_kept = len(firings["prune_nodes_end"][0]["kept"])
    dims = {
        "n_pos": n_pos,
        "n_layers": n_layers,
        "d_model": cfg.d_model,
        "d_vocab": cfg.d_vocab,
        "d_transcoder": tc.d_transcoder,
        "n_active": n_active,
        "n_out": n_active,  # per-layer transcoders: one decoder vector per feature
        "n_logits": n_logits,
        "n_cols": n_active + (n_layers + 1) * n_pos,
        "n_rows": n_logits + n_sel,
        "n_sel": n_sel,
        "N": graph.n_nodes,
        "n_kept": n_kept,
        "n_edges": len(details.kept_edges),
    }
    assert n_sel == BUDGET["max_feature_nodes"] < n_active
    for name, point in POINTS.items():
        assert firings[name], f"{name} never fired"
        for values in firings[name]:
            assert list(values) == [v.name for v in point.values], name
            phase = values.get("phase")
            local = dims | {
                "M": graph.n_nodes if phase == "node" else n_kept,
                "n_steps": len(trace) if phase == "node" else len(details.edge_trace),
                "n_queue": len(values["queue"]) if "queue" in values else 0,
            }
            for declared in point.values:
                value = values[declared.name]
                check_type(f"{name}.{declared.name}", value, declared)
                if declared.shape is not None:
                    expected = tuple(evaluate(d, local) for d in declared.shape)
                    assert tuple(value.shape) == expected, (name, declared.name)
    phases = [f["phase"] for f in firings["influence_end"]]
    assert phases == ["node", "edge"]  # the unlabelled series (scores, pruning) fire nothing


def test_the_values_mean_what_the_table_says(model, recorded):
    firings, (graph, influence, trace, details) = recorded
    tc = model.transcoders
    pre = firings["precompute_end"][0]
    active, values = pre["active_features"], pre["activation_values"]
    assert torch.equal(active, graph.active_features)
    layer, pos, feature = active.T
    assert torch.equal(pre["activation_matrix"].to_dense()[layer, pos, feature], values)
    assert torch.equal(pre["encoder_vectors"], tc.W_enc[layer, feature])
    owner = pre["decoder_features"]
    decoders = torch.stack([tc.decoder_rows(int(active[i, 0]), active[i, 2:3])[0, 0]
                            for i in owner.tolist()])  # fmt: skip
    torch.testing.assert_close(pre["decoder_vectors"], values[owner, None] * decoders)
    errors = pre["mlp_outputs"] - pre["reconstruction"]
    torch.testing.assert_close(errors[:, 1:], pre["error_vectors"][:, 1:])
    assert not pre["error_vectors"][:, 0].any()  # the start token's errors are zeroed
    assert pre["row_size"] == firings["rows_features_end"][0]["matrix"].shape[1]

    targets = firings["targets_end"][0]
    assert torch.equal(targets["token_ids"], graph.logit_token_ids)
    assert targets["probabilities"].sum() <= 1 and targets["mode"] == "salient"
    features = firings["rows_features_end"][0]
    logit_rows = firings["rows_logits_end"][0]["logit_rows"]
    assert torch.equal(features["matrix"][: graph.n_logits], logit_rows)
    assert torch.equal(features["selected_features"], graph.selected_features)
    assert torch.equal(firings["graph_assembled"][0]["adjacency"], graph.adjacency)
    # A budget visits the top of each ranking first.
    ranking = firings["rows_feature_ranking"]
    assert len(ranking) >= 2 and ranking[0]["n_visited"] == 0
    estimate = ranking[0]["estimate"]
    assert estimate[ranking[0]["queue"][0]] == estimate[: len(active)].max()

    # The influence series: its terms are the stored trace and add up to the influence.
    node_terms = [f["term"] for f in firings["influence_iteration"] if f["phase"] == "node"]
    assert all(torch.equal(a, b) for a, b in zip(node_terms, trace, strict=True))
    assert [f["iteration"] for f in firings["influence_iteration"] if f["phase"] == "node"] == list(
        range(len(trace))
    )
    end = firings["influence_end"][0]
    assert torch.equal(end["influence"], influence)
    torch.testing.assert_close(end["trace"].sum(0), influence)

    nodes = firings["prune_nodes_end"][0]
    kept = nodes["kept"]
    assert torch.equal(kept, torch.nonzero(nodes["node_mask"]).flatten())
    assert influence[kept[: -graph.n_pos - graph.n_logits]].min() >= nodes["cut"]
    raw = firings["prune_edges_raw"][0]
    assert torch.equal(raw["matrix"], graph.adjacency[kept][:, kept])
    scores = firings["prune_edge_scores"][0]
    expected = raw["matrix"].abs() / raw["matrix"].abs().sum(1, keepdim=True).clamp(min=1e-10)
    expected *= (scores["influence"] + raw["weights"])[:, None]
    torch.testing.assert_close(scores["scores"], expected)
    end = firings["prune_edges_end"][0]
    assert torch.equal(end["kept_edges"], details.kept_edges)
    assert torch.equal(end["edge_mask"], details.result.edge_mask)


def test_cross_layer_decoder_vectors_cover_every_output_layer():
    base = load_model(BUILTIN_MODEL)
    clt = ReplacementModel(base, load_transcoders(BUILTIN_MODEL / "transcoders" / "clt"))
    from circuitflow.attribution import precompute, tokenize

    with analysis.attached({"precompute_end": lambda e: dict(e.values)}) as capture:
        pre = precompute(clt, tokenize(clt, PROMPT))
    (layers,) = capture.values("precompute_end", "decoder_layers")
    (owner,) = capture.values("precompute_end", "decoder_features")
    feature_layers = pre.active_features[owner, 0]
    assert (layers >= feature_layers).all()
    expected = sum(clt.n_layers - int(layer) for layer in pre.active_features[:, 0])
    assert len(layers) == expected > pre.n_active


def test_attaching_functions_changes_no_result(model):
    plain = run_everything(model)
    everything = dict.fromkeys(POINTS, shapes)
    with analysis.attached(everything) as capture:
        observed = run_everything(model)
    assert capture.kept and not capture.failures and not capture.tainted
    assert torch.equal(plain[0].adjacency, observed[0].adjacency)
    assert torch.equal(plain[1], observed[1])
    assert torch.equal(plain[3].kept_edges, observed[3].kept_edges)
    assert not any(analysis.wants(point) for point in POINTS)  # detached on leaving the block


def test_a_function_that_raises_is_reported_with_the_points_name(model):
    def broken(event):
        raise ZeroDivisionError("no luck")

    def fine(event):
        return {"iteration": event["iteration"]}

    plain = run_everything(model)
    with analysis.attached(
        [
            analysis.Attachment("influence_iteration", broken, name="broken"),
            analysis.Attachment("influence_iteration", fine, name="fine"),
        ]
    ) as capture:
        observed = run_everything(model)
    assert torch.equal(plain[0].adjacency, observed[0].adjacency)
    n_terms = len(plain[2]) + len(plain[3].edge_trace)
    assert len(capture.failures) == n_terms
    failure = capture.failures[0]
    assert failure.point == "influence_iteration" and failure.function == "broken"
    assert "raised ZeroDivisionError: no luck" in str(failure)
    assert "influence_iteration" in str(failure)
    assert len(capture.values("influence_iteration", "iteration")) == n_terms  # others ran

    # Outside a capture, the failure is a warning naming the point.
    attachment = analysis.on("targets_end", broken)
    try:
        with pytest.warns(RuntimeWarning, match="targets_end.*ZeroDivisionError"):
            attribute(PROMPT, model)
    finally:
        analysis.off(attachment)


def test_a_value_modified_in_place_taints_the_capture(model):
    def vandal(event):
        event["term"].zero_()

    with analysis.attached({"influence_iteration": vandal}) as capture:
        node_influence(attribute(PROMPT, model))
    assert capture.tainted
    assert "modified term in place" in str(capture.failures[0])


def test_unknown_points_and_values_are_refused(model):
    with pytest.raises(analysis.AnalysisError, match="unknown analysis point 'precompute'"):
        analysis.on("precompute", shapes)
    with (
        analysis.attached(
            [analysis.Attachment("targets_end", shapes, {"values": ["nothing"]})]
        ) as capture,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("error")
        attribute(PROMPT, model)
    assert "offers no value 'nothing'" in capture.failures[0].error
