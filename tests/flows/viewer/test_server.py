"""The viewer's server: 127.0.0.1 only, its own routes only, and saving into the catalog."""

import http.client
import json

import pytest

from circuitflow.flows.viewer.data import RunView
from circuitflow.flows.viewer.server import ViewerServer
from circuitflow.tasks.subgraphs import saved_subgraphs


@pytest.fixture
def server(seed_run):
    server = ViewerServer(RunView(seed_run.open()), 0)
    server.serve_in_thread()
    yield server
    server.shutdown()
    server.server_close()


def request(server, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        reply = connection.getresponse()
        return reply.status, reply.read()
    finally:
        connection.close()


def test_it_binds_the_loopback_address_only(server):
    assert server.server_address[0] == "127.0.0.1"
    assert server.address == f"http://127.0.0.1:{server.port}/"
    status, page = request(server, "GET", "/")
    assert status == 200 and b"circuitflow" in page


@pytest.mark.parametrize(
    "path",
    [
        "/../../../../etc/passwd",
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/api/../../pyproject.toml",
        "/api/prune/../../../etc/passwd",
        "//etc/passwd",
        "/viewer.js",
        "/assets/viewer.js",
        "/flows/viewer/assets/viewer.js",
        "/api/overview/..%2f..%2fetc%2fpasswd",
    ],
)
def test_nothing_but_its_routes_is_served(server, path):
    status, body = request(server, "GET", path)
    assert status == 404
    assert b"root:" not in body and b"[project]" not in body and b"use strict" not in body


def test_requests_for_another_host_name_are_refused(server):
    status, _ = request(server, "GET", "/api/overview", headers={"Host": "evil.example:80"})
    assert status == 403


def test_prune_answers_and_bad_thresholds_are_400(server):
    status, body = request(server, "GET", "/api/prune?node_threshold=0.5&edge_threshold=0.9")
    view = json.loads(body)
    assert status == 200 and view["node_threshold"] == 0.5 and view["node_ids"]
    status, body = request(server, "GET", "/api/prune?node_threshold=2")
    assert status == 400 and "node_threshold" in json.loads(body)["error"]
    status, body = request(server, "GET", "/api/prune?node_threshold=abc")
    assert status == 400


def test_saving_a_subgraph_lands_in_the_catalog(server, seed_run):
    view = json.loads(request(server, "GET", "/api/prune")[1])
    pins = view["node_ids"][:3]
    body = {"name": "texas", "pinnedIds": pins, "supernodes": [["pair", *pins[:2]]]}
    json_headers = {"Content-Type": "application/json"}
    status, reply = request(server, "POST", "/api/subgraphs", json.dumps(body), json_headers)
    assert status == 200 and json.loads(reply)[0]["name"] == "texas"
    (saved,) = saved_subgraphs(seed_run.open().store, seed_run.run_id)
    assert saved.pinned_ids == tuple(pins) and saved.supernodes == (("pair", *pins[:2]),)

    bad = body | {"pinnedIds": ["99_99_99"]}
    status, reply = request(server, "POST", "/api/subgraphs", json.dumps(bad), json_headers)
    assert status == 400 and b"not nodes of this run" in reply
    status, _ = request(server, "POST", "/api/subgraphs", json.dumps(body),
                        {"Content-Type": "text/plain"})  # fmt: skip
    assert status == 400
    status, _ = request(server, "POST", "/api/elsewhere", "{}", json_headers)
    assert status == 404
    graph = json.loads(request(server, "GET", "/api/graph.json")[1])
    assert graph["qParams"]["pinnedIds"] == pins


def test_labels_and_supernode_proposals(server, seed_run):
    json_headers = {"Content-Type": "application/json"}
    body = {"layer": 0, "feature": 7, "label": "Texas cities", "author": "alice"}
    status, reply = request(server, "POST", "/api/labels", json.dumps(body), json_headers)
    assert status == 200 and json.loads(reply)["author"] == "alice"
    rows = seed_run.open().store.query("SELECT layer, feature, label, author FROM labels")
    assert rows.to_pylist() == [{"layer": 0, "feature": 7, "label": "Texas cities",
                                 "author": "alice"}]  # fmt: skip
    for bad, message in (
        ({"layer": 0, "feature": 7, "label": " "}, b"1 to 200 characters"),
        ({"layer": 9, "feature": 7, "label": "x"}, b"layer 9 is not a layer"),
        ({"layer": "a", "feature": 7, "label": "x"}, b"a label is"),
    ):
        status, reply = request(server, "POST", "/api/labels", json.dumps(bad), json_headers)
        assert status == 400 and message in reply
    status, reply = request(server, "GET", "/api/supernodes?node_threshold=0.8")
    groups = json.loads(reply)
    kept = set(json.loads(request(server, "GET", "/api/prune")[1])["node_ids"])
    assert status == 200 and groups
    assert all(len(g) >= 3 and set(g[1:]) <= kept for g in groups)  # [name, members...]
