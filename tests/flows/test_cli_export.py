"""`circuitflow export`: files circuit-tracer and Neuronpedia read as their own, and one clear
line for every bad run id or destination."""

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pyarrow as pa
import pytest
from circuit_tracer.frontend.graph_models import Model
from click.testing import CliRunner

from circuitflow.attribution.neuronpedia import validate
from circuitflow.flows.cli import main
from circuitflow.store import table_schema
from circuitflow.tasks.subgraphs import Subgraph, save_subgraph


def export(seed_run, *args):
    return CliRunner().invoke(main, ["export", *args, "--store", seed_run.store])


def one_line_error(result, text):
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and text in lines[0], result.output
    assert "Traceback" not in result.output


def test_a_file_that_both_schemas_accept(seed_run, tmp_path):
    result = export(seed_run, seed_run.run_id, "-o", str(tmp_path / "g.json"))
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "g.json").read_text())
    validate(doc)
    Model(**doc)
    meta = doc["metadata"]
    provenance = meta["info"]["provenance"]
    assert meta["slug"] == provenance["run_id"] == seed_run.run_id
    assert meta["scan"] == "capitals-4l" and meta["transcoder_list"][0].endswith("plt")
    assert meta["pruning_settings"] == {"node_threshold": 0.8, "edge_threshold": 0.98}
    assert len(provenance["model_digest"]) == len(provenance["transcoders_digest"]) == 64
    kept = (
        seed_run.open()
        .store.query(
            f"SELECT node_id FROM nodes WHERE run_id = '{seed_run.run_id}' AND kept "
            "ORDER BY matrix_index"
        )
        .column("node_id")
        .to_pylist()
    )
    assert [n["node_id"] for n in doc["nodes"]] == kept  # the catalog's ids, the file's ids

    stdout = export(seed_run, seed_run.run_id)
    assert json.loads(stdout.stdout)["nodes"] == doc["nodes"]


def test_the_feature_json_url_goes_into_the_metadata(seed_run, tmp_path):
    url = "https://example.org/capitals-4l/features"
    result = export(seed_run, seed_run.run_id, "-o", str(tmp_path / "g.json"),
                    "--feature-json-url", url + "/")  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "g.json").read_text())
    validate(doc)
    Model(**doc)
    assert doc["metadata"]["feature_details"] == {"feature_json_base_url": url}


def test_labels_and_the_saved_subgraph_go_into_the_file(seed_run, tmp_path):
    run = seed_run.open()
    feature = run.store.query(
        f"SELECT layer, feature, node_id FROM nodes WHERE run_id = '{run.run_id}' AND kept "
        "AND kind = 'feature' ORDER BY influence DESC LIMIT 1"
    ).to_pylist()[0]
    run.store.catalog.tables["labels"] = table_schema(
        ("layer", pa.int32()), ("feature", pa.int64()), ("label", pa.string())
    )
    run.store.catalog.write("labels", "me", [
        {"layer": feature["layer"], "feature": feature["feature"], "label": "Texas cities"}
    ])  # fmt: skip
    save_subgraph(run.store, run.run_id, Subgraph("mine", (feature["node_id"],)))
    result = export(seed_run, seed_run.run_id, "-o", str(tmp_path / "g.json"))
    assert result.exit_code == 0 and "saved subgraph 'mine'" in result.output
    doc = json.loads((tmp_path / "g.json").read_text())
    (node,) = [n for n in doc["nodes"] if n["node_id"] == feature["node_id"]]
    assert node["clerp"] == "Texas cities"
    assert doc["qParams"]["pinnedIds"] == [feature["node_id"]]
    one_line_error(export(seed_run, seed_run.run_id, "--subgraph", "theirs"),
                   "no saved subgraph 'theirs'")  # fmt: skip


def test_a_graph_directory_with_its_index(seed_run, tmp_path):
    result = export(seed_run, seed_run.run_id, "--graph_file_dir", str(tmp_path / "graphs"))
    assert result.exit_code == 0, result.output
    assert "circuit-tracer start-server --graph_file_dir" in result.output
    index = json.loads((tmp_path / "graphs" / "graph-metadata.json").read_text())
    assert [g["slug"] for g in index["graphs"]] == [seed_run.run_id]
    Model(**json.loads((tmp_path / "graphs" / f"{seed_run.run_id}.json").read_text()))


@pytest.mark.parametrize(
    "run_id,message",
    [
        ('"{rid}"', "remove the quotes"),
        ("/tmp/{rid}", "looks like a path"),
        ("0123456789abcdef0123", "no successful run '0123456789abcdef0123'"),
        ("", "it is empty"),
    ],
)
def test_bad_run_ids_get_one_line(seed_run, run_id, message):
    one_line_error(export(seed_run, run_id.format(rid=seed_run.run_id)), message)


def test_unwritable_destinations_get_one_line(seed_run, tmp_path):
    (tmp_path / "file").write_text("x")
    rid = seed_run.run_id
    one_line_error(export(seed_run, rid, "-o", str(tmp_path / "file" / "g.json")),
                   "cannot write")  # fmt: skip
    one_line_error(export(seed_run, rid, "-o", str(tmp_path)), "is a directory")
    one_line_error(export(seed_run, rid, "--graph_file_dir", str(tmp_path / "file")),
                   "cannot write")  # fmt: skip
    one_line_error(export(seed_run, rid, "-o", "/proc/g.json"), "cannot write")
    result = export(seed_run, rid, "-o", str(tmp_path / "a"), "--graph_file_dir", str(tmp_path))
    assert result.exit_code == 2 and "not both" in result.output


def test_no_store_gets_one_line(tmp_path):
    result = CliRunner().invoke(main, ["export", "abc", "--store", str(tmp_path / "none")])
    one_line_error(result, "no store at")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return reply.read()


@pytest.mark.slow
def test_circuit_tracer_serves_the_directory_unchanged(seed_run, tmp_path):
    graphs = tmp_path / "graphs"
    assert export(seed_run, seed_run.run_id, "--graph_file_dir", str(graphs)).exit_code == 0
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "circuit_tracer", "start-server", "--graph_file_dir", str(graphs),
         "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                index = json.loads(get(f"{base}/data/graph-metadata.json"))
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "no server"
                time.sleep(0.5)
        (entry,) = index["graphs"]
        assert entry["slug"] == seed_run.run_id and entry["node_threshold"] == 0.8
        served = json.loads(get(f"{base}/graph_data/{entry['slug']}.json"))
        Model(**served)
        assert served == json.loads((graphs / f"{seed_run.run_id}.json").read_text())
        assert b"Attribution Graphs" in get(f"{base}/index.html")  # its own frontend page
    finally:
        server.terminate()
        server.wait(timeout=10)
