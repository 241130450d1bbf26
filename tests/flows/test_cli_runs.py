"""The run commands of the CLI: --json against the catalog, re-pruning, export, bad input."""

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from circuitflow.attribution.neuronpedia import validate
from circuitflow.flows.cli import main
from circuitflow.store import Store


def test_attribute_json_equals_the_catalog(invoke):
    result = invoke("attribute", "w5 w3 w8 w1", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    run = (
        Store(invoke.store)
        .query(f"SELECT * FROM runs WHERE run_id = '{report['run_id']}'")
        .to_pylist()[0]
    )
    for key in (
        "n_active_features",
        "n_nodes_kept",
        "n_edges_kept",
        "replacement_score",
        "completeness_score",
    ):
        assert report[key] == run[key], key
    logits = (
        Store(invoke.store)
        .query(f"SELECT token, prob FROM logits WHERE run_id = '{report['run_id']}' ORDER BY rank")
        .to_pylist()
    )
    assert [(l["token"], l["prob"]) for l in report["top_logits"]] == [
        (r["token"], r["prob"]) for r in logits
    ]
    assert [s["stage"] for s in report["stages"]] == [
        "tokenize",
        "precompute",
        "targets",
        "rows",
        "influence",
        "prune",
        "export",
    ]
    assert all({"stage", "status", "seconds"} <= set(s) for s in report["stages"])
    validate(json.loads(Path(report["graph_json"]).read_text()))

    # Re-pruning: a new run, and only prune and export computed.
    result = invoke("reprune", report["run_id"], "--node-threshold", "0.5", "--json", model=False)
    assert result.exit_code == 0, result.output
    (new,) = json.loads(result.output)
    assert new["run_id"] != report["run_id"] and new["node_threshold"] == 0.5
    assert {s["stage"] for s in new["stages"] if s["status"] == "computed"} == {"prune", "export"}
    assert new["n_nodes_kept"] <= report["n_nodes_kept"]

    exported = invoke("export", new["run_id"], model=False)
    assert exported.exit_code == 0
    assert json.loads(exported.output)["metadata"]["node_threshold"] == 0.5


def test_summary_names_the_graph_and_how_to_query(invoke):
    result = invoke("attribute", "w5 w3 w8 w1")
    assert result.exit_code == 0, result.output
    for text in (
        "targets",
        "replacement score",
        "most influential features",
        "stages",
        "graph JSON",
        "circuitflow query",
    ):
        assert text in result.output


@pytest.mark.parametrize(
    "args,code,message",
    [
        (["attribute", "w1 w2", "--node-threshold", "1.5"], 2, "must be in (0, 1]"),
        (["attribute", "w1 w2", "--edge-threshold", "0"], 2, "must be in (0, 1]"),
        (["attribute", "w1 w2", "--max-feature-nodes", "0"], 2, "positive integer"),
        (["attribute", "w1 w2", "--node-threshold", "nan"], 2, "must be in (0, 1]"),
        (["attribute", "w1 w2", "--update-interval", "-1"], 2, "positive integer"),
        (["attribute", ""], 1, "the prompt is empty"),
        (["attribute", "w1 aardvark"], 1, "aardvark"),
        (["attribute", "w1", "--target", "w1 w2"], 1, "exactly one token"),
        (["attribute", "w1", "--transcoders", "/no/such/dir"], 1, "not found"),
        (["attribute", "w1", "--device", "gpu"], 2, "auto, cpu, cuda, cuda:N or mps"),
        (["attribute", "w1", "--device", "cuda:99"], 2, "cuda:99"),
        (["attribute", "w1", "--dtype", "float64"], 2, "float64"),
    ],
)
def test_bad_input_is_a_clear_error(invoke, args, code, message):
    result = invoke(*args)
    assert result.exit_code == code
    assert message in result.output


def test_reprune_of_an_unknown_run(invoke):
    result = invoke("reprune", "nosuchrun", "--node-threshold", "0.5", model=False)
    assert result.exit_code == 2 and "no successful run 'nosuchrun'" in result.output
    result = invoke("reprune", "nosuchrun", "--node-threshold", "1.5", model=False)
    assert result.exit_code == 2 and "must be in (0, 1]" in result.output


@pytest.mark.parametrize(
    "command",
    [
        "attribute",
        "sweep",
        "reprune",
        "export",
        "schedule",
        "view",
        "query",
        "store",
        "train-demo",
        "validate",
        "steer",
    ],
)
def test_every_command_explains_itself(command):
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0, result.output
    if command == "store":  # a group: its subcommands take --store
        assert all(sub in result.output for sub in ("ls", "du", "verify", "gc", "compact"))
    elif command != "train-demo":
        assert "--store" in result.output
    if command != "store":
        assert "Example" in result.output


def test_run_options_come_from_run_params():
    """Every RunParams field is an option of the run commands, with its default shown."""
    from circuitflow.attribution import RunParams

    for command in ("attribute", "sweep", "schedule"):
        text = CliRunner().invoke(main, [command, "--help"], terminal_width=200).output
        for field in dataclasses.fields(RunParams):
            name = field.name
            flag = "--target" if name == "targets" else "--" + name.replace("_", "-")
            assert flag in text, (command, flag)
            for more in field.metadata["more"]:  # e.g. --logit-diff A B for targets
                assert f"{more.flag} {' '.join(more.metavars)}" in text, (command, more.flag)
    text = CliRunner().invoke(main, ["attribute", "--help"], terminal_width=200).output
    assert "[default: 0.8]" in text and "[default: 0.98]" in text


def test_device_and_precision_on_every_run_command():
    """--device on the four run commands; --dtype (a RunParams field) says what half precision
    cannot keep exact."""
    for command in ("attribute", "sweep", "schedule", "reprune"):
        text = CliRunner().invoke(main, [command, "--help"], terminal_width=200).output
        assert "--device" in text and "auto" in text, command
        if command != "reprune":  # reprune keeps the run's precision
            assert "--dtype" in text and "bfloat16" in text and "exact" in text, command


def test_circuit_tracer_flags_are_accepted(invoke, tmp_path):
    """A circuit-tracer command line (its flag spellings) works with `circuitflow attribute`."""
    graphs = tmp_path / "graphs"
    result = invoke(
        "attribute", "-p", "w5 w3 w8 w1", "--transcoder_set", "plt", "--batch_size", "8",
        "--max_feature_nodes", "20", "--dtype", "float32", "--graph_file_dir", str(graphs),
        "--slug", "mine", "--offload", "cpu", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # the budget cut, and the run says so: on stderr, and in the report
    assert report["n_selected_features"] == 20 < report["n_active_features"]
    assert report["feature_budget_cut"] and report["max_feature_nodes"] == 20
    assert f"kept 20 of {report['n_active_features']} active features" in result.stderr
    for stage in ("precompute", "rows", "prune"):  # progress goes to stderr
        assert f"{stage}: computing" in result.stderr and f"{stage}: computed" in result.stderr
    assert report["graph_file"] == str(graphs / "mine.json")
    index = json.loads((graphs / "graph-metadata.json").read_text())
    assert [g["slug"] for g in index["graphs"]] == ["mine"]
    assert json.loads((graphs / "mine.json").read_text())["metadata"]["slug"] == "mine"
    assert invoke("attribute", "w1", "-p", "w2").exit_code == 2  # the prompt twice
    assert "letters, digits" in invoke("attribute", "w1", "--slug", "../x").output


def test_max_memory_refuses_a_run_in_one_line(invoke, tmp_path):
    result = invoke("attribute", "w5 w3 w8 w1", "--max-memory", "1MB", "--json")
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert "needs about" in error and "dominates" in error and "\n" not in error
    bad = invoke("attribute", "w5", "--max-memory", "lots")
    assert bad.exit_code == 2 and "memory size" in bad.output
    bad = invoke("attribute", "w5", "--max-feature-nodes", "many")
    assert bad.exit_code == 2 and "'all'" in bad.output


def test_default_workers_share_only_cores_there_are():
    from circuitflow.flows.cli_runs import default_workers

    assert default_workers("cpu", cores=2) == 1  # one process: no cluster on a 2-core machine
    assert default_workers("cpu", cores=4) == 2
    assert default_workers("cpu", cores=64) == 2
