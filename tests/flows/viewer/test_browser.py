"""The viewer in a real headless browser (Debian's chromium, driven by Playwright)."""

import shutil

import pytest
from playwright.sync_api import sync_playwright

from circuitflow.attribution import prune
from circuitflow.flows.viewer.data import RunView
from circuitflow.flows.viewer.page import static_html
from circuitflow.flows.viewer.server import ViewerServer
from circuitflow.tasks.subgraphs import saved_subgraphs

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip


@pytest.fixture
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def open_page(browser, url):
    """A page at `url`, with every console error and page error collected in `page.errors`."""
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    page.errors = []
    page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.goto(url)
    page.wait_for_selector("svg#graph .node")
    return page


def kept_in_catalog(store, rid):
    query = f"SELECT count(*) AS n FROM nodes WHERE run_id = '{rid}' AND kept"
    return store.query(query).to_pylist()[0]["n"]


def test_view_prune_hover_pin_and_save(browser, seed_run, tmp_path):
    view = RunView(seed_run.open())
    server = ViewerServer(view, 0)
    server.serve_in_thread()
    try:
        page = open_page(browser, server.address)
        nodes = page.locator("svg#graph .node")
        assert nodes.count() == kept_in_catalog(view.run.store, seed_run.run_id)

        # Move the node-threshold slider as a person would: with the arrow keys.
        page.focus("#node-threshold")
        for _ in range(30):
            page.keyboard.press("ArrowLeft")
        page.wait_for_selector('svg#graph[data-node-threshold="0.5"]')
        expected = int(prune(view.graph, 0.5, 0.98).node_mask.sum())
        assert nodes.count() == expected != kept_in_catalog(view.run.store, seed_run.run_id)
        assert page.locator("#node-count").get_attribute("data-nodes") == str(expected)

        # Hover: the details panel shows the node; its paths to the logits light up.
        feature = page.locator('svg#graph .node[data-kind="feature"]').first
        feature_id = feature.get_attribute("data-id")
        feature.hover()
        details = page.locator("#details")
        assert details.get_attribute("data-id") == feature_id
        assert "strongest inputs" in details.inner_text()
        assert int(page.locator("canvas#links").get_attribute("data-on-path")) > 0
        assert page.locator('svg#graph .node.on-path[data-kind="logit"]').count() > 0

        # Pin two nodes (Ctrl-click), group them, save the subgraph into the catalog.
        features = page.locator('svg#graph .node[data-kind="feature"]')
        pins = [features.nth(k).get_attribute("data-id") for k in (0, 1)]
        for k in (0, 1):
            features.nth(k).click(modifiers=["Control"])
        assert page.locator("svg#graph .node.pinned").count() == 2
        for box in page.locator("#pinned-list input[type=checkbox]").all():
            box.check()
        page.fill("#supernode-name", "Texas")
        page.click("#group-button")
        page.fill("#subgraph-name", "dallas-path")
        page.click("#save-subgraph")
        page.wait_for_selector("#save-status:has-text('saved')")
        (saved,) = saved_subgraphs(view.run.store, seed_run.run_id)
        assert saved.name == "dallas-path" and saved.pinned_ids == tuple(pins)
        assert saved.supernodes == (("Texas", *pins),)
        rows = view.run.store.query(
            "SELECT name, len(pinned_ids) AS n FROM saved_subgraphs "
            f"WHERE run_id = '{seed_run.run_id}'"
        ).to_pylist()
        assert rows == [{"name": "dallas-path", "n": 2}]
        assert page.locator("svg#subgraph .sg-node.supernode").count() == 1

        page.screenshot(path=str(tmp_path / "viewer.png"), full_page=True)
        assert (tmp_path / "viewer.png").stat().st_size > 10_000
        assert page.errors == []
    finally:
        server.shutdown()
        server.server_close()


def test_static_page_works_from_a_file(browser, seed_run, tmp_path):
    view = RunView(seed_run.open())
    path = tmp_path / "graph.html"
    path.write_text(static_html(view, []))
    page = open_page(browser, path.as_uri())
    nodes = page.locator("svg#graph .node")
    assert nodes.count() == kept_in_catalog(view.run.store, seed_run.run_id)
    page.focus("#node-threshold")
    page.keyboard.press("Home")  # the grid's lowest node threshold, 0.1
    page.wait_for_selector('svg#graph[data-node-threshold="0.1"]')
    assert nodes.count() == int(prune(view.graph, 0.1, 0.98).node_mask.sum())
    assert page.locator("#save-subgraph").is_disabled()
    page.screenshot(path=str(tmp_path / "static.png"), full_page=True)
    assert page.errors == []


def test_page_plots_the_trace_the_analysis_captured(browser, analysed_seed, seed_run, tmp_path):
    from circuitflow.tasks.recorded import open_run

    root, rid = analysed_seed
    view = RunView(open_run(root, rid))
    server = ViewerServer(view, 0)
    server.serve_in_thread()
    try:
        page = open_page(browser, server.address)
        figure = page.locator("#analysis-figure")
        assert figure.is_visible()
        assert rid in page.locator("#analysis-id").inner_text()
        phases = view.overview()["plots"]["analysis"]["phases"]
        for phase in ("node", "edge"):
            plot = page.locator(f"#plot-analysis-{phase}")
            assert plot.get_attribute("data-steps") == str(len(phases[phase]["steps"]))
            assert plot.locator("path.ridge").count() == len(phases[phase]["steps"])
        assert page.errors == []
    finally:
        server.shutdown()
        server.server_close()

    # A run analysed without the trace shows no such figure.
    path = tmp_path / "plain.html"
    path.write_text(static_html(RunView(seed_run.open()), []))
    plain = open_page(browser, path.as_uri())
    assert not plain.locator("#analysis-figure").is_visible()
    assert plain.errors == []


def test_hover_contexts_labels_into_the_export_and_supernode_suggestions(
    browser, seed_run, tmp_path
):
    from circuitflow.tasks.corpus import Corpus
    from circuitflow.tasks.features import DashboardJob, compute_chunk, merge_job
    from circuitflow.tasks.graph_document import graph_document

    run = seed_run.open()
    corpus = Corpus("test", ("We visited Dallas last year", "Houston is a large city",
                             "The capital of the state containing Lubbock is Austin"))  # fmt: skip
    job = DashboardJob(run.setup, corpus, chunk_documents=2)
    for chunk in range(job.n_chunks):
        compute_chunk(job, chunk)
    merge_job(job)
    server = ViewerServer(RunView(seed_run.open()), 0)
    server.serve_in_thread()
    try:
        page = open_page(browser, server.address)
        active = {(r["layer"], r["feature"]) for r in run.store.query(
            "SELECT layer, feature FROM features WHERE frequency > 0").to_pylist()}  # fmt: skip
        nodes = page.locator('svg#graph .node[data-kind="feature"]')
        ids = [nodes.nth(k).get_attribute("data-id") for k in range(nodes.count())]
        node_id = next(i for i in ids if tuple(map(int, i.split("_")[:2])) in active)
        page.locator(f'svg#graph .node[data-id="{node_id}"]').click()
        assert page.locator("#contexts li").count() > 0  # its top contexts, token marked
        assert page.locator("#contexts li span.marked").count() > 0
        page.fill("#label-input", "Texas cities (from the page)")
        page.click("#label-save")
        page.wait_for_selector("#label-status[data-saved]")
        doc, _ = graph_document(seed_run.open())
        clerps = {n["node_id"]: n["clerp"] for n in doc["nodes"]}
        assert clerps[node_id] == "Texas cities (from the page)"
        layer, feature = map(int, node_id.split("_")[:2])
        rows = run.store.query(
            f"SELECT l.label, f.label AS shown FROM labels l JOIN features f USING (layer, "
            f"feature) WHERE l.layer = {layer} AND l.feature = {feature}"
        ).to_pylist()
        assert rows == [{"label": "Texas cities (from the page)",
                         "shown": "Texas cities (from the page)"}]  # fmt: skip

        # Supernode suggestions: accept the first, save it as a subgraph.
        expected = server.view.supernodes(0.8, 0.98)
        page.click("#suggest-button")
        page.wait_for_selector("#suggestions .suggestion")
        assert page.locator("#suggestions .suggestion").count() == len(expected) > 0
        page.locator("#suggestions .suggestion button.accept").first.click()
        page.fill("#subgraph-name", "suggested")
        page.click("#save-subgraph")
        page.wait_for_selector("#save-status:has-text('saved')")
        (saved,) = saved_subgraphs(run.store, seed_run.run_id)
        assert saved.supernodes == (tuple(expected[0]),)
        assert set(saved.pinned_ids) == set(expected[0][1:])
        assert page.errors == []
    finally:
        server.shutdown()
        server.server_close()
