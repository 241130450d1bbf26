"""The causal commands: validate (stored, cached, against the catalog), steer, --logit-diff."""

import json

import pytest

from circuitflow.attribution import ReplacementModel, intervene, load_model, load_transcoders
from circuitflow.flows.steer import parse_setting
from circuitflow.store import Store

PROMPT = "w5 w3 w8 w1 w2"


def test_validate_stores_the_curve_once_and_reports_the_catalog(invoke):
    attributed = invoke("attribute", PROMPT, "--logit-diff", "w3", "w4", "--json")
    assert attributed.exit_code == 0, attributed.output
    run_id = json.loads(attributed.stdout)["run_id"]

    first = invoke("validate", run_id, "--json", model=False)
    assert first.exit_code == 0, first.output
    (report,) = json.loads(first.stdout)
    computed = {s["stage"] for s in report["stages"] if s["status"] == "computed"}
    assert computed == {"validate", "export"}  # export: its graph JSON names the new run
    assert report["validated"] == run_id != report["run_id"]  # a new run: validate is set
    assert report["target"] == "logit(w3)-logit(w4)"
    rows = Store(invoke.store).query(
        f"SELECT k, selection, logit_change FROM interventions WHERE run_id = '{report['run_id']}'"
    )
    tops = {r["k"]: r["logit_change"] for r in rows.to_pylist() if r["selection"] == "top"}
    assert {p["k"]: p["top_logit_change"] for p in report["curve"]} == tops

    again = invoke("validate", run_id, "--json", model=False)
    assert {s["status"] for s in json.loads(again.stdout)[0]["stages"]} == {"cached"}
    same = invoke("attribute", PROMPT, "--logit-diff", "w3", "w4", "--validate", "--json")
    assert json.loads(same.stdout)["run_id"] == report["run_id"]  # the same validated run
    table = invoke("validate", run_id, model=False)
    assert "random-k (mean)" in table.output and "logit(w3)-logit(w4)" in table.output


def test_validate_an_unknown_run(invoke):
    result = invoke("validate", "0123456789abcdef0123", model=False)
    assert result.exit_code == 2 and "no successful run '0123456789abcdef0123'" in result.output


def test_steer_prints_clean_and_steered_predictions(invoke, toy_model_dir):
    model = load_model(toy_model_dir)
    rm = ReplacementModel(model, load_transcoders(toy_model_dir / "transcoders" / "plt"))
    acts = intervene(rm, PROMPT, []).activations
    feature = int(acts[1, 3].argmax())
    result = invoke(
        "steer", PROMPT, "--set", f"1:3:{feature}=0", "--set", "0:2+:7=4",
        "--watch", "w9", "--generate", "2", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    expected = intervene(rm, PROMPT, [(1, 3, feature, 0.0), (0, slice(2, None), 7, 4.0)])
    clean_logits = model(expected.tokens[None])[0, -1]
    top = report["steered"]["top"][0]
    assert top["token_id"] == int(expected.logits[-1].argmax())
    assert top["logit"] == pytest.approx(float(expected.logits[-1].max()), abs=1e-4)
    assert report["clean"]["top"][0]["token_id"] == int(clean_logits.argmax())
    assert report["settings"][0]["clean"] == [pytest.approx(float(acts[1, 3, feature]))]
    assert report["settings"][1]["onward"] and len(report["settings"][1]["clean"]) == 4
    assert report["steered"]["watch"][0]["token"] == "w9"
    assert len(report["steered"]["generated"].split()) == 2
    table = invoke("steer", PROMPT, "--set", f"1:3:{feature}=0")
    assert table.exit_code == 0 and "steered" in table.output and "-> 0" in table.output


def test_steer_a_recorded_run(invoke):
    run_id = json.loads(invoke("attribute", PROMPT, "--json").stdout)["run_id"]
    result = invoke("steer", run_id, "--set", "0:1:0=1", "--json", model=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["prompt"] == PROMPT


@pytest.mark.parametrize(
    "args,code,message",
    [
        (["--set", "1:3=0"], 2, "is not LAYER:POS:FEATURE=VALUE"),
        (["--set", "1:3:4=big"], 2, "is not a number"),
        (["--set", "1:3:4=inf"], 2, "must be finite"),
        (["--set", "1:-2+:4=0"], 2, "POS+ needs a position >= 0"),
        (["--set", "9:1:4=0"], 1, "layer 9 is outside"),
        (["--set", "1:1:99999=0"], 1, "feature 99999 is outside"),
        (["--set", "1:40:4=0"], 1, "position 40 is outside"),
        (["--set", "1:1:4=0", "--watch", "zebra"], 1, "not in the model's vocabulary"),
        (["--set", "1:1:4=0", "--generate", "-1"], 2, "-1"),
    ],
)
def test_bad_steering_is_one_clear_line(invoke, args, code, message):
    result = invoke("steer", PROMPT, *args)
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output


def test_parse_setting():
    assert parse_setting("3:8:128=0") == (3, 8, 128, 0.0)
    assert parse_setting(" 0:-1:5=-2.5 ") == (0, -1, 5, -2.5)
    assert parse_setting("1:4+:7=1e1") == (1, slice(4, None), 7, 10.0)


def test_logit_diff_option_adds_a_direction_target(invoke):
    result = invoke("attribute", PROMPT, "--target", "w3", "--logit-diff", "w3", "w4", "--json")
    assert result.exit_code == 0, result.output
    logits = json.loads(result.stdout)["top_logits"]
    assert [(t["name"], t["kind"]) for t in logits] == [
        ("w3", "token"),
        ("logit(w3)-logit(w4)", "direction"),
    ]
    table = invoke("attribute", PROMPT, "--logit-diff", "w3", "w4")
    assert table.exit_code == 0 and "logit(w3)-logit(w4)" in table.output
    assert "direction" in table.output
    same = invoke("attribute", PROMPT, "--logit-diff", "w3", "w3")
    assert same.exit_code == 2 and "two different tokens" in same.output
