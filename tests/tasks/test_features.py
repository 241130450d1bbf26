"""Feature dashboards in the store: labels that mean something on the built-in model, chunks
that resume, and human labels that survive recomputing."""

import shutil

import pytest
import torch

from circuitflow.attribution.dashboards import DashboardParams, layer_inputs, logit_effect_matrix
from circuitflow.tasks.corpus import Corpus, builtin_corpus
from circuitflow.tasks.features import (
    CHUNK_STAGE,
    DashboardJob,
    chunk_done,
    compute_chunk,
    merge_job,
    store_of,
)
from circuitflow.tasks.labels import feature_labels, set_label
from circuitflow.tasks.runtime import Setup, loaded, transcoders_identity
from circuitflow.training.world import PLACES

TEXAS = ("Dallas", "Houston", "Lubbock")


def run_job(job):
    statuses = [compute_chunk(job, chunk) for chunk in range(job.n_chunks)]
    return statuses, merge_job(job)


@pytest.fixture(scope="module")
def builtin(tmp_path_factory):
    """Dashboards of the built-in per-layer transcoders over the built-in corpus."""
    setup = Setup.resolve(None, "plt", str(tmp_path_factory.mktemp("features") / "store"))
    job = DashboardJob(setup, builtin_corpus(), chunk_documents=512)
    return job, run_job(job)[1]


@pytest.mark.slow
def test_the_texas_cities_feature_is_labelled_with_texas_cities(builtin):
    """The feature most selective for Texas cities (smallest activation on Dallas, Houston and
    Lubbock minus the largest on any other city, read straight from the transcoders) gets an
    automatic label naming them."""
    job, dashboards = builtin
    replacement = loaded(job.setup).replacement
    tokenizer = replacement.tokenizer
    cities = [(city, place.name) for place in PLACES for city in place.all_cities]
    tokens = torch.tensor([[3, *tokenizer(f"{c} is a large city", add_special_tokens=False)
                            ["input_ids"]] for c, _ in cities])  # fmt: skip
    texas = torch.tensor([city in TEXAS for city, _ in cities])
    inputs = layer_inputs(replacement, tokens)  # (L, B, T, d)
    best = (-1.0, 0, 0)
    for layer in range(replacement.n_layers):
        acts = replacement.transcoders.encode(layer, inputs[layer][:, 1])  # (cities, F)
        margin = acts[texas].min(0).values - acts[~texas].max(0).values
        best = max(best, (float(margin.max()), layer, int(margin.argmax())))
    margin, layer, feature = best
    assert margin > 0
    label = dashboards.auto_label(layer, feature)
    assert all(city in label.split("→")[0] for city in TEXAS), label
    row = (
        store_of(job)
        .query(
            f"SELECT auto_label, label FROM features WHERE layer = {layer} AND feature = {feature}"
        )
        .to_pylist()
    )
    assert row == [{"auto_label": label, "label": label}]


@pytest.mark.slow
def test_the_top_direct_logit_feature_for_austin_lists_austin_first(builtin):
    job, dashboards = builtin
    replacement = loaded(job.setup).replacement
    austin = replacement.tokenizer(" Austin", add_special_tokens=False)["input_ids"][0]
    effects = torch.stack([logit_effect_matrix(replacement, layer)[:, austin]
                           for layer in range(replacement.n_layers)])  # fmt: skip
    layer, feature = divmod(int(effects.argmax()), effects.shape[1])
    assert dashboards.logits(layer, feature)[0][0].strip() == "Austin"
    (row,) = (
        store_of(job)
        .query(
            "SELECT promoted, auto_label FROM features "
            f"WHERE layer = {layer} AND feature = {feature}"
        )
        .to_pylist()
    )
    assert row["promoted"][0] == "Austin" and row["auto_label"].endswith("→ Austin")


@pytest.mark.slow
def test_an_interrupted_job_computes_only_the_chunks_it_lacks(builtin):
    job, dashboards = builtin
    store = store_of(job)
    lost = 1
    shutil.rmtree(store.object_path(CHUNK_STAGE, job.chunk_key(lost)))
    assert [chunk_done(job, c) for c in range(job.n_chunks)] == [
        c != lost for c in range(job.n_chunks)
    ]
    statuses = [compute_chunk(job, c) for c in range(job.n_chunks)]
    assert statuses == ["computed" if c == lost else "cached" for c in range(job.n_chunks)]
    again = merge_job(job)
    assert torch.equal(again.stats.count, dashboards.stats.count)


def test_human_labels_survive_recomputing_dashboards(tmp_path):
    setup = Setup.resolve(None, "plt", str(tmp_path / "store"))
    texts = ("We visited Dallas last year", "Houston is a large city", "Lubbock is a large city")
    corpus = Corpus("test", (*texts, "People in France speak French"))
    first = DashboardJob(setup, corpus, DashboardParams(top_k=4), chunk_documents=2)
    _, dashboards = run_job(first)
    store = store_of(first)
    digest = transcoders_identity(setup.transcoders)
    layer, feature = map(int, torch.nonzero(dashboards.stats.count)[0])
    auto = dashboards.auto_label(layer, feature)
    set_label(store, digest, layer, feature, "Texas cities", "alice")
    rows = store.query(f"SELECT run_id, label, auto_label FROM features WHERE layer = {layer} "
                       f"AND feature = {feature}").to_pylist()  # fmt: skip
    assert rows == [{"run_id": first.id, "label": "Texas cities", "auto_label": auto}]

    # Recompute: new settings (a new job), and the same job with its objects gone.
    second = DashboardJob(setup, corpus, DashboardParams(top_k=5), chunk_documents=2)
    statuses, _ = run_job(second)
    assert statuses == ["computed", "computed"]
    shutil.rmtree(store.root + "/objects")
    statuses, _ = run_job(first)
    assert statuses == ["computed", "computed"]
    rows = store.query(f"SELECT run_id, label FROM features WHERE layer = {layer} AND "
                       f"feature = {feature} ORDER BY run_id").to_pylist()  # fmt: skip
    assert {r["label"] for r in rows} == {"Texas cities"} and len(rows) == 2
    assert feature_labels(store, digest)[layer, feature] == "Texas cities"
    (label,) = store.query("SELECT label, author FROM labels").to_pylist()
    assert label == {"label": "Texas cities", "author": "alice"}
