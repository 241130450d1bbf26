"""`circuitflow attribute --analysis FILE` and `circuitflow analysis RUN_ID [POINT] [--plot]`:
the shipped walk-through on the built-in model, through the real Prefect flow, and bad input."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from circuitflow.flows.cli import main
from circuitflow.store import Store

PROMPT = "The capital of the state containing Dallas is"
WALKTHROUGH = str(Path(__file__).resolve().parents[2] / "configs/analysis/seed_walkthrough.yaml")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return str(tmp_path_factory.mktemp("analysis") / "store")


def cli(*args, store: str):
    result = CliRunner().invoke(main, [*args, "--store", store], catch_exceptions=False)
    return result


@pytest.fixture(scope="module")
def walked(prefect_api, store):
    """The walk-through run: its JSON report."""
    result = cli("attribute", PROMPT, "--analysis", WALKTHROUGH, "--json", store=store)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_the_walkthrough_captures_every_step(walked, store):
    fired = walked["analysis"]["fired"]
    assert walked["analysis"]["failures"] == []
    assert fired["influence_iteration"] >= 4 and fired["influence_end"] == 2  # node + edge
    assert {"precompute_end", "rows_logits_end", "prune_edges_end"} <= set(fired)
    count = (
        Store(store)
        .query(f"SELECT count(*) AS n FROM analysis WHERE analysed_run = '{walked['run_id']}'")
        .to_pylist()[0]["n"]
    )
    assert count == walked["analysis"]["values"]


def test_analysis_prints_a_table_per_point_in_attribution_order(walked, store):
    result = cli("analysis", walked["run_id"], store=store)
    assert result.exit_code == 0, result.output
    out = result.output
    order = ["precompute_end", "targets_end", "rows_logits_end", "graph_assembled",
             "influence_iteration", "prune_edges_end"]  # fmt: skip
    assert [out.index(p) for p in order] == sorted(out.index(p) for p in order)
    assert "activation_matrix" in out and "(4, 9, 1024) float32" in out
    assert "phase=node" in out and "phase=edge" in out


def test_one_point_as_json(walked, store):
    result = cli("analysis", walked["run_id"], "influence_iteration", "--json", store=store)
    rows = json.loads(result.stdout)
    assert {r["point"] for r in rows} == {"influence_iteration"}
    traced = [r for r in rows if r["function"] == "trace"]
    assert all(r["kind"] == "tensor" and r["object_key"] for r in traced)
    top = [r for r in rows if r["function"] == "topk"]
    assert all(len(r["topk_values"]) == 5 for r in top)
    # Top-k values are sorted and within the term's range.
    for r in top:
        assert r["topk_values"] == sorted(r["topk_values"], reverse=True)
        assert r["topk_values"][0] == r["max"]


def test_plot_writes_the_convergence_png(walked, store, tmp_path):
    out = tmp_path / "ridge.png"
    result = cli("analysis", walked["run_id"], "influence_end", "--plot", "--out", str(out),
                 store=store)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width >= 800
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 20  # ridges drawn, not a blank canvas


def test_the_text_report_names_the_analysis(walked, store):
    result = cli("attribute", PROMPT, "--analysis", WALKTHROUGH, store=store)
    assert result.exit_code == 0, result.output
    assert "values captured; fired: precompute_end x1" in result.output
    assert f"see them: circuitflow analysis {walked['run_id']}" in result.output


def test_bad_input_is_one_line(walked, store, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("points:\n  influence_iterations: shapes\n")
    result = cli("attribute", "The capital of Texas is", "--analysis", str(bad), store=store)
    assert result.exit_code == 2
    assert (
        "did you mean 'influence_iteration'" in result.output and "Traceback" not in result.output
    )
    runs = Store(store).query("SELECT prompt FROM runs").to_pylist()
    assert {r["prompt"] for r in runs} == {PROMPT}  # nothing ran

    cases = [
        (("analysis", "0123456789abcdef0123"), "no run '0123456789abcdef0123'"),
        (("analysis", walked["run_id"], "influence"), "did you mean 'influence_end'"),
        (("analysis", walked["run_id"], "rows_feature_ranking"), "captured nothing at"),
    ]
    for args, message in cases:
        result = cli(*args, store=store)
        assert result.exit_code != 0 and message in result.output, result.output
        assert "Traceback" not in result.output

    plain = cli("attribute", PROMPT, "--node-threshold", "0.5", "--json", store=store)
    rid = json.loads(plain.stdout)["run_id"]
    result = cli("analysis", rid, store=store)
    assert result.exit_code == 1 and "has no analysis" in result.output
