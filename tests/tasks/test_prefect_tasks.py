"""The pipeline as Prefect tasks: a stored stage is a `Cached` task run, failures match."""

import shutil

import pytest
from prefect import flow

from circuitflow.tasks import PIPELINE, RunRequest, Setup
from circuitflow.tasks.context import RunContext, forget_records
from circuitflow.tasks.execute import execute_run
from circuitflow.tasks.prefect_tasks import as_task, stage_task

TWO = PIPELINE[:2]  # tokenize, precompute


@pytest.fixture
def setup(toy_model_dir, tmp_path):
    return Setup.resolve(str(toy_model_dir), "plt", str(tmp_path / "store"))


@flow
def two_stages(setup: Setup, prompt: str):
    run = RunContext(setup, RunRequest(prompt), {}, PIPELINE)
    states = []
    for stage in TWO:
        named = stage_task.with_options(name=stage.name)
        state = named(stage.name, setup, run.request, dict(run.outputs), run.run_id, None,
                      return_state=True)  # fmt: skip
        run.outputs[stage.name] = state.result()
        states.append(state)
    return states


def test_cached_stage_is_a_cached_prefect_state_and_a_deleted_object_is_recomputed(
    prefect_api, setup
):
    tok, pre = two_stages(setup, "w1 w2 w3")
    assert tok.name == "Completed" and pre.result().status == "computed"
    tok, pre = two_stages(setup, "w1 w2 w3")
    assert tok.name == pre.name == "Cached"
    assert pre.result().status == "cached"

    run = RunContext(setup, RunRequest("w1 w2 w3"), {}, PIPELINE)
    shutil.rmtree(run.store.open("precompute", pre.result().key).path)
    forget_records()
    _, again = two_stages(setup, "w1 w2 w3")
    assert again.name == "Completed" and again.result().status == "computed"
    assert again.result().key == pre.result().key  # same inputs, same key


def test_the_inline_and_task_drivers_record_the_same_failure(prefect_api, setup, tmp_path):
    inline = execute_run(setup, RunRequest("w1 zebra"))

    @flow
    def one(setup, request):
        return execute_run(setup, request, call=as_task)

    other = Setup.resolve(setup.model, "plt", str(tmp_path / "other"))
    tasked = one(other, RunRequest("w1 zebra"))
    assert inline.status == tasked.status == "failed"
    assert inline.error == tasked.error and inline.error.startswith("PromptError: ")
