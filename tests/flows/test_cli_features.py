"""`circuitflow features`, `label` and `circuits` on the built-in model."""

import json

import pytest
import torch
from click.testing import CliRunner

from circuitflow.attribution.dashboards import logit_effect_matrix
from circuitflow.flows.cli import main
from circuitflow.store import Store
from circuitflow.tasks import RunRequest, Setup
from circuitflow.tasks.execute import execute_run
from circuitflow.tasks.runtime import loaded

CAPITALS = ("Dallas", "Houston", "Lubbock", "Seattle")


def invoke(*args):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.mark.slow
def test_features_resume_files_and_labels(prefect_api, tmp_path):
    from circuit_tracer.frontend.feature_models import Model

    store, files = str(tmp_path / "store"), tmp_path / "feature_json"
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("We visited Dallas last year\n\nHouston is a large city\n"
                      "Lubbock is a large city\nPeople in France speak French\n")  # fmt: skip
    args = ["features", "--corpus", str(corpus), "--chunk-documents", "2", "--store", store]
    code, out = invoke(*args, "--json", "--features-dir", str(files))
    assert code == 0, out
    summary = json.loads(out)
    assert (summary["documents"], summary["chunks"], summary["chunks_computed"]) == (4, 2, 2)
    n_active = Store(store).query("SELECT count(*) AS n FROM features WHERE frequency > 0")
    assert summary["feature_files"] == n_active.to_pylist()[0]["n"] == len(list(files.iterdir()))
    for path in list(files.iterdir())[:20]:  # circuit-tracer's frontend model reads them
        doc = Model.model_validate_json(path.read_text())
        layer, feature = (
            json.loads(path.read_text())["layer"],
            json.loads(path.read_text())["feature"],
        )
        assert doc.index == (layer + feature) * (layer + feature + 1) // 2 + feature
        assert int(path.stem) == doc.index and doc.examples_quantiles[0].examples

    code, out = invoke(*args, "--json")  # again: everything stored
    assert json.loads(out)["chunks_cached"] == 2

    code, out = invoke("label", "1", "13", "Texas cities", "--author", "alice", "--store", store)
    assert code == 0 and "Texas cities" in out
    rows = (
        Store(store)
        .query("SELECT f.label, l.author FROM features f JOIN labels l USING (layer, feature)")
        .to_pylist()
    )
    assert rows == [{"label": "Texas cities", "author": "alice"}]

    code, out = invoke("label", "7", "1", "x", "--store", store)
    assert code == 2 and "layer 7 is not a layer" in out
    code, out = invoke("features", "--corpus", str(tmp_path / "none.txt"), "--store", store)
    assert code == 2 and "no corpus file" in out and "Traceback" not in out


@pytest.fixture(scope="module")
def capital_sweep(tmp_path_factory):
    """The capital question for four cities, attributed into one store."""
    setup = Setup.resolve(None, "plt", str(tmp_path_factory.mktemp("sweep") / "store"))
    runs = {}
    for city in CAPITALS:
        outcome = execute_run(setup, RunRequest(f"The capital of the state containing {city} is"))
        assert outcome.status == "ok", outcome.error
        runs[city] = outcome.run_id
    return setup, runs


@pytest.mark.slow
def test_circuits_across_a_sweep_find_the_texas_capital_feature(capital_sweep):
    """The feature whose decoder promotes " Austin" most (read from the weights) lies on kept
    paths in the Dallas, Houston and Lubbock graphs, and not in Seattle's."""
    setup, runs = capital_sweep
    replacement = loaded(setup).replacement
    austin = replacement.tokenizer(" Austin", add_special_tokens=False)["input_ids"][0]
    effects = torch.stack([logit_effect_matrix(replacement, layer)[:, austin]
                           for layer in range(replacement.n_layers)])  # fmt: skip
    layer, feature = divmod(int(effects.argmax()), effects.shape[1])

    code, out = invoke("circuits", "--format", "json", "--limit", "500", "--store", setup.store)
    assert code == 0, out
    ranked = json.loads(out)
    assert ranked[0]["n_graphs"] == 4 and ranked[0]["of_graphs"] == 4
    assert [r["n_graphs"] for r in ranked] == sorted((r["n_graphs"] for r in ranked), reverse=True)
    (texas,) = [r for r in ranked if (r["layer"], r["feature"]) == (layer, feature)]
    assert sorted(p.split()[-2] for p in texas["prompts"]) == ["Dallas", "Houston", "Lubbock"]
    assert texas["n_graphs"] == 3 and texas["mean_influence"] > 0

    code, out = invoke("circuits", "--where", "prompt NOT LIKE '%Seattle%'", "--format", "json",
                       "--limit", "500", "--store", setup.store)  # fmt: skip
    assert all(r["of_graphs"] == 3 for r in json.loads(out))

    code, out = invoke("circuits", "--edges", "--format", "json", "--store", setup.store)
    edges = json.loads(out)
    assert edges and all(e["n_graphs"] <= 4 for e in edges)
    assert any(
        e["target"].startswith("logit ")
        for e in json.loads(
            invoke(
                "circuits", "--edges", "--format", "json", "--limit", "5000", "--store", setup.store
            )[1]
        )
    )

    code, out = invoke("circuits", "--similar", runs["Dallas"], "--format", "json",
                       "--store", setup.store)  # fmt: skip
    similar = json.loads(out)
    assert [r["run_id"] for r in similar][-1] == runs["Seattle"]  # least like Dallas
    assert runs["Dallas"] not in [r["run_id"] for r in similar]
    assert all(0 < r["similarity"] <= 1 for r in similar)

    code, out = invoke("circuits", "--where", "no_such_column = 1", "--store", setup.store)
    assert code == 1 and "query failed" in out and "Traceback" not in out
