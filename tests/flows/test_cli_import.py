"""`circuitflow import`: a graph circuit-tracer made on a tiny model, saved with `to_pt`,
imported, read back and converted to circuit-tracer's `Graph` again prunes exactly as
circuit-tracer's own `prune_graph` prunes the file; its catalog rows say the same; bad files
get one line and leave nothing behind."""

import json
from pathlib import Path

import pytest
import torch
from circuit_tracer.graph import Graph
from click.testing import CliRunner

from circuitflow.attribution import load_model, load_transcoders
from circuitflow.attribution.interop import to_circuit_tracer
from circuitflow.flows.cli import main
from circuitflow.tasks import load_graph, open_store
from tests.attribution.reference import prune_graph, reference_attribute, reference_model

PROMPT = "w5 w3 w8 w1 w2"


@pytest.fixture(scope="module")
def graph_file(toy_model_dir, tmp_path_factory) -> Path:
    """A graph made and saved by circuit-tracer on the toy model (per-layer transcoders)."""
    model = load_model(toy_model_dir)
    tc = load_transcoders(toy_model_dir / "transcoders" / "plt")
    graph = reference_attribute(PROMPT, reference_model(model, tc), batch_size=16)
    path = tmp_path_factory.mktemp("ct") / "graph.pt"
    graph.to_pt(str(path))
    return path


def run_import(store: Path, *args: str):
    return CliRunner().invoke(main, ["import", *args, "--store", str(store)])


def imported(store: Path, *args: str) -> dict:
    result = run_import(store, *args, "--json")
    assert result.exit_code == 0, result.output
    [report] = json.loads(result.stdout)
    return report


def test_an_imported_graph_prunes_and_exports_like_circuit_tracer(graph_file, tmp_path):
    store = tmp_path / "store"
    report = imported(store, str(graph_file), "--node-threshold", "0.7", "--edge-threshold", "0.9")
    original = Graph.from_pt(str(graph_file))
    theirs = prune_graph(original, node_threshold=0.7, edge_threshold=0.9)

    graph, pruned = load_graph(report["run_id"], store=str(store))
    assert torch.equal(graph.adjacency, original.adjacency_matrix.float())
    assert torch.equal(pruned.node_mask, theirs.node_mask)
    assert torch.equal(pruned.edge_mask, theirs.edge_mask)
    torch.testing.assert_close(pruned.cumulative_scores, theirs.cumulative_scores)

    # Converted back, circuit-tracer prunes it exactly as it prunes its own file.
    again = to_circuit_tracer(graph, graph.model_config, prompt=graph.prompt, scan=graph.scan)
    assert again.input_string == original.input_string and again.scan == original.scan
    assert again.cfg.n_layers == original.cfg.n_layers
    assert again.cfg.model_name == original.cfg.model_name
    round_trip = prune_graph(again, node_threshold=0.7, edge_threshold=0.9)
    assert torch.equal(round_trip.node_mask, theirs.node_mask)
    assert torch.equal(round_trip.edge_mask, theirs.edge_mask)
    torch.testing.assert_close(round_trip.cumulative_scores, theirs.cumulative_scores)

    # The catalog and the exported graph hold what circuit-tracer kept.
    rid, catalog = report["run_id"], open_store(str(store)).catalog
    nodes = catalog.read("nodes", rid).to_pylist()
    kept_ids = {graph.node_ids()[i] for i in torch.nonzero(theirs.node_mask).flatten().tolist()}
    assert {n["node_id"] for n in nodes if n["kept"]} == kept_ids
    assert len(catalog.read("edges", rid)) == int(theirs.edge_mask.sum())
    logits = sorted(catalog.read("logits", rid).to_pylist(), key=lambda r: r["rank"])
    assert [r["token_id"] for r in logits] == [t.vocab_idx for t in original.logit_targets]
    [run] = catalog.read("runs", rid).to_pylist()
    expected = (original.input_string, 0.7, 0.9)
    assert (run["prompt"], run["node_threshold"], run["edge_threshold"]) == expected
    assert run["n_tokens"] == len(original.input_tokens)
    assert run["max_feature_nodes"] is None  # a setting the file does not record
    doc = json.loads(Path(report["graph_json"]).read_text())
    assert {n["node_id"] for n in doc["nodes"]} == kept_ids
    assert len(doc["links"]) == int(theirs.edge_mask.sum())
    assert report["source"] == str(graph_file)


def test_importing_again_is_cached_and_new_thresholds_only_reprune(graph_file, tmp_path):
    store = tmp_path / "store"
    first = imported(store, str(graph_file))
    again = imported(store, str(graph_file))
    assert again["run_id"] == first["run_id"]
    assert {s["status"] for s in again["stages"]} == {"cached"}
    other = imported(store, str(graph_file), "--node-threshold", "0.5")
    assert other["run_id"] != first["run_id"]
    computed = {s["stage"] for s in other["stages"] if s["status"] == "computed"}
    assert computed == {"prune", "export"}
    runs = open_store(str(store)).query("SELECT run_id FROM runs ORDER BY run_id")
    assert sorted(runs["run_id"].to_pylist()) == sorted([first["run_id"], other["run_id"]])


def truncated(path: Path, tmp: Path) -> Path:
    data = path.read_bytes()
    (tmp / "cut.pt").write_bytes(data[: len(data) // 2])
    return tmp / "cut.pt"


def not_a_graph(path: Path, tmp: Path) -> Path:
    torch.save({"weights": torch.zeros(3)}, tmp / "tensor.pt")
    return tmp / "tensor.pt"


def text_file(path: Path, tmp: Path) -> Path:
    (tmp / "notes.pt").write_text("not a pickle\n")
    return tmp / "notes.pt"


@pytest.mark.parametrize("bad", [truncated, not_a_graph, text_file])
def test_a_bad_file_is_one_line_and_nothing_is_written(graph_file, tmp_path, bad):
    store = tmp_path / "store"
    path = bad(graph_file, tmp_path)
    result = run_import(store, str(graph_file), str(path))  # the good file is not imported either
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0], result.output
    assert "not a circuit-tracer graph file" in lines[0] and "nothing imported" in lines[0]
    assert not store.exists()


def test_a_missing_file_is_one_line(tmp_path):
    result = run_import(tmp_path / "store", str(tmp_path / "nowhere.pt"))
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: {str(tmp_path / 'nowhere.pt')!r}: no such file (nothing imported)"
    ]


def test_reprune_prunes_an_imported_run_again_without_a_model(prefect_api, graph_file, tmp_path):
    store = tmp_path / "store"
    first = imported(store, str(graph_file))
    result = CliRunner().invoke(
        main, ["reprune", first["run_id"], "--node-threshold", "0.5", "--store", str(store),
               "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [report] = json.loads(result.stdout)
    by_import = imported(store, str(graph_file), "--node-threshold", "0.5")
    assert report["run_id"] == by_import["run_id"]
    theirs = prune_graph(Graph.from_pt(str(graph_file)), node_threshold=0.5)
    assert report["n_nodes_kept"] == int(theirs.node_mask.sum())
    # What needs the model is refused in one line.
    for command in (["validate", first["run_id"]], ["steer", first["run_id"], "--set", "0:1:1=0"]):
        refused = CliRunner().invoke(main, [*command, "--store", str(store)])
        assert refused.exit_code == 2, refused.output
        assert "imported from a circuit-tracer graph file" in refused.output
        assert "Traceback" not in refused.output


def test_an_imported_run_exports_and_views_like_any_run(graph_file, tmp_path):
    store = tmp_path / "store"
    rid = imported(store, str(graph_file))["run_id"]
    for command in (["export", rid, "-o", str(tmp_path / "g.json")],
                    ["view", rid, "--static", "-o", str(tmp_path / "g.html")]):  # fmt: skip
        result = CliRunner().invoke(main, [*command, "--store", str(store)])
        assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "g.json").read_text())
    assert doc["metadata"]["scan"] == "custom"  # the model's name, from the file's config
    assert doc["metadata"]["generation_settings"] == {}  # the file records none
    assert rid in (tmp_path / "g.html").read_text()


class _Opens:
    """Unpickling this runs `open(path, "w")`: what a hostile graph file could do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_a_file_that_would_run_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"input_string": "x", "cfg": _Opens(marker)}, tmp_path / "hostile.pt")
    result = run_import(tmp_path / "store", str(tmp_path / "hostile.pt"))
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert "io.open, which a graph file never does (not loaded)" in line, line
    assert not marker.exists() and not (tmp_path / "store").exists()
