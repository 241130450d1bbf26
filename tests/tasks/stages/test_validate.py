"""The validate stage on the built-in model: stored, cached, queryable, and faithful on the seed
prompt; custom targets recorded in the `logits` table."""

import json

import pytest

from circuitflow.attribution import RunParams
from circuitflow.attribution.target_specs import logit_diff
from circuitflow.tasks import PIPELINE, RunRequest, Setup, open_store
from circuitflow.tasks.execute import execute_run
from circuitflow.tasks.stages.validate import AUDIT_K, DRAWS
from circuitflow.training.world import SEED_PROMPT

AUDIT = f"""
    SELECT run_id,
           -min(logit_change) FILTER (WHERE selection = 'top') AS top_drop,
           -avg(logit_change) FILTER (WHERE selection = 'random') AS random_drop
    FROM interventions WHERE k = {AUDIT_K}
    GROUP BY run_id
"""


@pytest.fixture
def setup(tmp_path):
    return Setup.resolve(store=str(tmp_path / "store"))


def events(store, run_id):
    rows = store.catalog.read("stage_events", run_id).to_pylist()
    return {r["stage"]: r["status"] for r in rows}


def test_a_validated_run_is_cached_queryable_and_faithful(setup):
    store = open_store(setup.store)
    assert store.query("SELECT count(*) AS n FROM interventions")["n"][0].as_py() == 0
    plain = execute_run(setup, RunRequest(SEED_PROMPT))
    assert "validate" not in events(store, plain.run_id)  # plain runs skip the checks
    request = RunRequest(SEED_PROMPT, RunParams(validate=True))
    validated = execute_run(setup, request)
    assert validated.run_id != plain.run_id  # the switch is a setting: its own run
    # Only the checks compute, and export, whose graph JSON names its run.
    shared = {s.name: "cached" for s in PIPELINE if s.name not in ("validate", "export")}
    expected = shared | {"export": "computed", "validate": "computed"}
    assert events(store, validated.run_id) == expected
    again = execute_run(setup, request)
    assert again.cached and again.run_id == validated.run_id

    rows = store.query(
        f"SELECT k, selection, draw, logit_change, prob_change, target FROM interventions "
        f"WHERE run_id = '{validated.run_id}' ORDER BY k, selection, draw"
    ).to_pylist()
    ks = sorted({r["k"] for r in rows})
    assert (
        ks[:4] == [1, 2, 4, AUDIT_K]
        and ks[-1]
        == store.query(
            f"SELECT count(*) AS n FROM nodes WHERE run_id = '{validated.run_id}' "
            "AND kind = 'feature' AND kept"
        )["n"][0].as_py()
    )
    assert len(rows) == len(ks) * (1 + DRAWS)  # each k: the top row and every draw, once
    assert {r["target"] for r in rows} == {"Austin"}
    assert all(r["prob_change"] is not None for r in rows)

    (audit,) = store.query(AUDIT).to_pylist()
    print(f"top-{AUDIT_K} drop {audit['top_drop']:.3f}, random mean {audit['random_drop']:.3f}")
    assert audit["top_drop"] > audit["random_drop"]
    assert audit["top_drop"] > 1.0  # ablating the graph's top features does hurt the answer


def test_a_logit_difference_run_records_its_direction(setup):
    store = open_store(setup.store)
    params = RunParams(targets=[logit_diff(" Austin", " Dallas")], validate=True)
    outcome = execute_run(setup, RunRequest(SEED_PROMPT, params))
    assert outcome.status == "ok", outcome.error
    (logit,) = store.catalog.read("logits", outcome.run_id).to_pylist()
    assert logit["name"] == "logit(Austin)-logit(Dallas)" and logit["kind"] == "direction"
    assert logit["token_id"] is None and logit["prob"] is None and logit["weight"] == 1.0
    seed = execute_run(setup, RunRequest(SEED_PROMPT, RunParams(targets=[" Austin", " Dallas"])))
    austin, dallas = sorted(
        store.catalog.read("logits", seed.run_id).to_pylist(), key=lambda r: r["rank"]
    )
    assert logit["value"] == pytest.approx(austin["logit"] - dallas["logit"], abs=1e-4)
    run = store.catalog.read("runs", outcome.run_id).to_pylist()[0]
    assert run["targets"] == ["logit( Austin)-logit( Dallas)"]  # a label; `params` has the spec
    assert RunParams.from_dict(json.loads(run["params"])) == params
    rows = store.catalog.read("interventions", outcome.run_id).to_pylist()
    assert rows and all(r["prob_change"] is None for r in rows)  # a direction: no probability
    assert {r["target"] for r in rows} == {"logit(Austin)-logit(Dallas)"}
