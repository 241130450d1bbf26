"""Stage tasks: keyed by their inputs, served from the store, and the store is the truth."""

import shutil

import pytest
from prefect import flow

from tasks.runtime import Setup, open_store
from tasks.stages import VERSIONS, forget_records, precompute_task, tokenize_task


@pytest.fixture
def setup(toy_model_dir, tmp_path):
    return Setup.resolve(str(toy_model_dir), "plt", str(tmp_path / "store"))


@flow
def two_stages(setup: Setup, prompt: str):
    tok = tokenize_task(setup, prompt, return_state=True)
    pre = precompute_task(setup, tok.result(), return_state=True)
    return tok, pre


def test_cached_stage_is_a_cached_prefect_state_and_a_deleted_object_is_recomputed(
    prefect_api, setup
):
    tok, pre = two_stages(setup, "w1 w2 w3")
    assert tok.name == "Completed" and pre.result().status == "computed"
    tok, pre = two_stages(setup, "w1 w2 w3")
    assert tok.name == pre.name == "Cached"
    assert pre.result().status == "cached"

    store = open_store(setup.store)
    shutil.rmtree(store.open("precompute", pre.result().key).path)
    forget_records()
    _, again = two_stages(setup, "w1 w2 w3")
    assert again.name == "Completed" and again.result().status == "computed"
    assert again.result().key == pre.result().key  # same inputs, same key


def test_manifest_records_stage_version_and_inputs(prefect_api, setup):
    _, pre = two_stages(setup, "w4 w5")
    obj = open_store(setup.store).open("precompute", pre.result().key)
    assert obj.manifest["version"] == VERSIONS["precompute"]
    assert set(obj.inputs) == {"model", "transcoders", "prompt"}
    assert obj.tensors["error_vectors"].shape[0] == 3  # layers of the toy model
