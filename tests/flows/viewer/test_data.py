"""What the viewer draws is what `attribution.prune` keeps, and the plots' data is the run's."""

import json
import re

import pytest
import torch

from circuitflow.attribution import prune
from circuitflow.attribution.prune import ThresholdError
from circuitflow.flows.viewer.data import RunView
from circuitflow.flows.viewer.page import live_html, static_html


@pytest.fixture
def view(seed_run):
    return RunView(seed_run.open())


@pytest.mark.parametrize("node_threshold,edge_threshold", [(0.8, 0.98), (0.5, 0.9), (1.0, 1.0)])
def test_pruned_view_is_exactly_attribution_prune(view, node_threshold, edge_threshold):
    pruned = view.pruned(node_threshold, edge_threshold)
    result = prune(view.graph, node_threshold, edge_threshold)
    ids = view.graph.node_ids()
    assert pruned["node_ids"] == [ids[i] for i in torch.nonzero(result.node_mask).flatten()]
    targets, sources = torch.nonzero(result.edge_mask, as_tuple=True)
    links = pruned["links"]
    shown = pruned["node_ids"]
    assert [
        (shown[s], shown[t]) for s, t in zip(links["source"], links["target"], strict=True)
    ] == [(ids[s], ids[t]) for s, t in zip(sources.tolist(), targets.tolist(), strict=True)]
    assert links["weight"] == view.graph.adjacency[targets, sources].tolist()


def test_node_details_list_the_strongest_links_of_the_whole_graph(view):
    pruned = view.pruned(0.8, 0.98)
    graph, ids = view.graph, view.graph.node_ids()
    feature = next(n for n in pruned["nodes"].values() if n["kind"] == "feature" and n["layer"] > 0)
    index = ids.index(feature["id"])
    row = graph.adjacency[index]
    order = sorted((i for i in range(len(row)) if row[i] != 0), key=lambda i: -abs(float(row[i])))
    order = order[:5]
    assert len(order) == 5
    assert [i for i, _ in feature["inputs"]] == [ids[i] for i in order]
    column = graph.adjacency[:, index]
    assert feature["outputs"][0][0] == ids[int(column.abs().argmax())]
    node = graph.node(index)
    assert (feature["layer"], feature["feature"], feature["pos"]) == (
        node.layer, node.feature, node.pos,
    )  # fmt: skip
    assert feature["activation"] == pytest.approx(node.activation)
    assert feature["influence"] == pytest.approx(float(view.influence[index]))


def test_overview_panel_and_plots_come_from_the_run(view, seed_run):
    overview = view.overview()
    store = seed_run.open().store
    run = store.query(f"SELECT * FROM runs WHERE run_id = '{seed_run.run_id}'").to_pylist()[0]
    panel = overview["run"]
    assert panel["replacement_score"] == run["replacement_score"]
    assert panel["completeness_score"] == run["completeness_score"]
    logits = store.query(
        f"SELECT token, prob FROM logits WHERE run_id = '{seed_run.run_id}' ORDER BY rank"
    ).to_pylist()
    assert [(l["token"], l["prob"]) for l in panel["logits"]] == [
        (l["token"], l["prob"]) for l in logits
    ]
    trace = overview["plots"]["trace"]
    steps = store.query(
        "SELECT iteration, l1, nnz FROM influence_traces WHERE phase = 'node' "
        f"AND run_id = '{seed_run.run_id}' ORDER BY iteration"
    ).to_pylist()
    assert [(s["iteration"], s["l1"], s["nnz"]) for s in trace["steps"]] == [
        (s["iteration"], s["l1"], s["nnz"]) for s in steps
    ]
    assert all(sum(s["counts"]) <= s["nnz"] for s in trace["steps"])
    curve = overview["plots"]["cumulative"]
    assert curve["n"] == view.graph.n_nodes and curve["shares"][-1] == pytest.approx(1.0)
    cut = view.pruned(0.8, 0.98)["cut_rank"]
    assert curve["shares"][0] < 0.8
    shares = torch.cumsum(view.influence.sort(descending=True).values, 0) / view.influence.sum()
    assert shares[cut - 1] >= 0.8 > shares[cut - 2]


def test_bad_thresholds_are_refused(view):
    for bad in (0.0, 1.5, float("nan")):
        with pytest.raises(ThresholdError):
            view.pruned(bad, 0.98)


@pytest.fixture(scope="module")
def static_page(_seed_store):
    from circuitflow.tasks.recorded import open_run

    view = RunView(open_run(str(_seed_store[0]), _seed_store[1]))
    return view, static_html(view, [{"name": "s", "pinnedIds": [], "supernodes": []}])


def test_pages_load_nothing_from_elsewhere(static_page):
    for page in (live_html(), static_page[1]):
        assert not re.search(r"<(script|link)[^>]+(src|href)=\"(https?:)?//", page)
        assert "/*JS*/" not in page and "/*CSS*/" not in page


def test_static_page_carries_the_graph_pruned_at_each_grid_point(static_page):
    view, page = static_page
    boot = json.loads(re.search(r'id="cf-boot" type="application/json">(.*?)</script>', page,
                                re.S)[1].replace("<\\/", "</"))  # fmt: skip
    data = boot["data"]
    assert boot["mode"] == "static" and data["subgraphs"][0]["name"] == "s"
    assert 0.8 in data["grid"]["node"] and 0.98 in data["grid"]["edge"]
    ids = view.graph.node_ids()
    for i, node_threshold in enumerate(data["grid"]["node"][::6]):
        j = data["grid"]["edge"].index(0.98)
        kept = prune(view.graph, node_threshold, 0.98).node_mask
        shown = data["views"][f"{6 * i}|{j}"]["node_ids"]
        assert shown == [ids[k] for k in torch.nonzero(kept).flatten()]
        assert all(node_id in data["nodes"] for node_id in shown)


def test_no_analysis_plot_without_a_captured_trace(view):
    assert view.overview()["plots"]["analysis"] is None


def test_analysis_plot_draws_the_series_the_analysis_captured(analysed_seed):
    from circuitflow.flows.analysis_read import analyses
    from circuitflow.tasks.recorded import open_run

    root, rid = analysed_seed
    view = RunView(open_run(root, rid))
    captured = view.overview()["plots"]["analysis"]
    assert captured["analysis_id"] == analyses(view.run.store, rid)[-1]
    # Checked against the influence_traces table, which the stages wrote (not the analysis).
    for phase in ("node", "edge"):
        expected = view.run.store.query(
            f"SELECT iteration, l1, nnz FROM influence_traces WHERE phase = '{phase}' "
            f"AND run_id = '{rid}' ORDER BY iteration"
        ).to_pylist()
        steps = captured["phases"][phase]["steps"]
        assert len(steps) == len(expected) > 1
        for step, row in zip(steps, expected, strict=True):
            assert (step["iteration"], step["nnz"]) == (row["iteration"], row["nnz"])
            assert step["l1"] == pytest.approx(row["l1"], rel=1e-5)
            assert 0 < sum(step["counts"]) <= step["nnz"]
    # The whole graph's series is the one the trace plot draws from the stored record.
    node, stored = captured["phases"]["node"], view.trace_plot()
    assert [s["counts"] for s in node["steps"]] == [s["counts"] for s in stored["steps"]]


def test_a_direction_target_is_shown_by_its_name_and_weight(seed_run):
    """A logit-difference run (issue 14): its logit node has no token or probability, so the
    panel shows the direction's name and its weight, as the node details do."""
    from circuitflow.attribution import RunParams, logit_diff
    from circuitflow.tasks import RunRequest, Setup
    from circuitflow.tasks.execute import execute_run
    from circuitflow.tasks.recorded import open_run

    params = RunParams(targets=[logit_diff(" Austin", " Dallas", weight=0.5)])
    setup = Setup.resolve(None, "plt", seed_run.store)
    outcome = execute_run(setup, RunRequest(seed_run.open().prompt, params))
    assert outcome.status == "ok", outcome.error
    view = RunView(open_run(seed_run.store, outcome.run_id))
    (logit,) = view.overview()["run"]["logits"]
    assert logit["kind"] == "direction" and logit["token_id"] is None
    assert logit["token"] == "logit(Austin)-logit(Dallas)" and logit["prob"] == 0.5
    node = view.node(view.graph.logit_start)
    assert (node["token"], node["prob"]) == (logit["token"], logit["prob"])
