"""The viewer's HTTP server: one run, on 127.0.0.1 only.

It serves a fixed set of routes and nothing from the file system, so no path can reach a file:

    GET  /                          the page
    GET  /api/overview              the run panel and plot data
    GET  /api/prune?node_threshold=&edge_threshold=
                                    the graph pruned at those thresholds (`attribution.prune`)
    GET  /api/subgraphs             the run's saved subgraphs
    GET  /api/supernodes?node_threshold=&edge_threshold=
                                    proposed supernodes of the graph pruned there
    POST /api/subgraphs             save one: {"name", "pinnedIds", "supernodes", "clickedId"}
    POST /api/labels                label a feature: {"layer", "feature", "label", "author"?}
    GET  /api/graph.json            the run's graph document (as `circuitflow export` writes it)

Anything else is 404. A request must name this server in its Host header (a web page elsewhere
cannot reach it through a DNS name that points at 127.0.0.1), and a POST must be JSON (which a
page of another origin can only send after a CORS check this server never passes).
"""

from __future__ import annotations

import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from circuitflow.flows.viewer.data import RunView
from circuitflow.flows.viewer.page import live_html
from circuitflow.store import StoreError
from circuitflow.tasks.graph_document import graph_document
from circuitflow.tasks.labels import LabelError
from circuitflow.tasks.subgraphs import Subgraph, SubgraphError, save_subgraph, saved_subgraphs

HOST = "127.0.0.1"
MAX_BODY = 1 << 20


class BadRequest(ValueError):
    """A request the server refuses, with the message the page shows."""


class ViewerServer(ThreadingHTTPServer):
    """Serves one run's viewer; `port` 0 picks a free port (see `address`)."""

    daemon_threads = True

    def __init__(self, view: RunView, port: int = 0) -> None:
        self.view = view
        self.page = live_html()
        super().__init__((HOST, port), ViewerHandler)

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def address(self) -> str:
        return f"http://{HOST}:{self.port}/"

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, daemon=True)
        thread.start()
        return thread


def subgraph_from_json(body: dict) -> Subgraph:
    try:
        return Subgraph(
            name=str(body["name"]),
            pinned_ids=tuple(str(i) for i in body.get("pinnedIds", [])),
            supernodes=tuple(tuple(str(i) for i in group) for group in body.get("supernodes", [])),
            clicked_id=str(body.get("clickedId") or ""),
        )
    except (KeyError, TypeError) as error:
        raise BadRequest(f"a subgraph is {{name, pinnedIds, supernodes}} ({error})") from None


class ViewerHandler(BaseHTTPRequestHandler):
    server: ViewerServer
    server_version = "circuitflow-viewer"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        pass  # the terminal shows the address and errors, not every request

    # ------------------------------------------------------------------------------ routing

    def do_GET(self) -> None:
        if not self._host_ok():
            return
        url = urlsplit(self.path)
        view = self.server.view
        routes = {
            "/": lambda: self._send(200, self.server.page.encode(), "text/html; charset=utf-8"),
            "/api/overview": lambda: self._json(view.overview()),
            "/api/prune": lambda: self._json(self._pruned(parse_qs(url.query))),
            "/api/subgraphs": lambda: self._json(self._subgraphs()),
            "/api/supernodes": lambda: self._json(self._supernodes(parse_qs(url.query))),
            "/api/graph.json": lambda: self._json(graph_document(view.run)[0]),
        }
        self._route(routes.get(url.path))

    def do_POST(self) -> None:
        if not self._host_ok():
            return
        posts = {
            "/api/subgraphs": lambda: self._json(self._save(self._body())),
            "/api/labels": lambda: self._json(self._label(self._body())),
        }
        self._route(posts.get(urlsplit(self.path).path))

    def _route(self, handler) -> None:
        if handler is None:
            self._json({"error": "not found"}, 404)
            return
        try:
            handler()
        except (BadRequest, SubgraphError, LabelError, ValueError) as error:
            self._json({"error": str(error)}, 400)
        except StoreError as error:
            self._json({"error": str(error)}, 500)

    def _host_ok(self) -> bool:
        allowed = {f"{HOST}:{self.server.port}", f"localhost:{self.server.port}"}
        if self.headers.get("Host") in allowed:
            return True
        self._json({"error": "this server answers only to its own address"}, 403)
        return False

    # ----------------------------------------------------------------------------- handlers

    def _supernodes(self, query: dict[str, list[str]]) -> list[list[str]]:
        return self.server.view.supernodes(*self._thresholds(query))

    def _pruned(self, query: dict[str, list[str]]) -> dict:
        return self.server.view.pruned(*self._thresholds(query))

    def _thresholds(self, query: dict[str, list[str]]) -> tuple[float, float]:
        run = self.server.view.overview()["run"]
        try:
            node = float(query.get("node_threshold", [run["node_threshold"]])[0])
            edge = float(query.get("edge_threshold", [run["edge_threshold"]])[0])
        except ValueError:
            raise BadRequest("thresholds must be numbers") from None
        return node, edge

    def _subgraphs(self) -> list[dict]:
        run = self.server.view.run
        return [s.to_json() for s in saved_subgraphs(run.store, run.run_id)]

    def _save(self, body: dict) -> list[dict]:
        view = self.server.view
        subgraph = subgraph_from_json(body).check(view.index)
        save_subgraph(view.run.store, view.run.run_id, subgraph)
        return self._subgraphs()

    def _label(self, body: dict) -> dict:
        try:
            layer, feature = int(body["layer"]), int(body["feature"])
            text = str(body["label"])
        except (KeyError, TypeError, ValueError) as error:
            raise BadRequest(f"a label is {{layer, feature, label}} ({error})") from None
        author = str(body["author"]) if body.get("author") else None
        return self.server.view.set_label(layer, feature, text, author)

    def _body(self) -> dict:
        if self.headers.get_content_type() != "application/json":
            raise BadRequest("send JSON (Content-Type: application/json)")
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY:
            raise BadRequest(f"a body of 1 to {MAX_BODY} bytes is needed")
        try:
            body = json.loads(self.rfile.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BadRequest("the body is not JSON") from None
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        return body

    # ------------------------------------------------------------------------------ replies

    def _json(self, value: object, status: int = 200) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(HTTPStatus(status))
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)
