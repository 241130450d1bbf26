"""Analysis configs: the shipped walk-through loads; each kind of mistake is one clear line."""

from pathlib import Path

import pytest

from circuitflow.attribution.analysis_functions import shapes, topk, trace
from circuitflow.tasks import PIPELINE
from circuitflow.tasks.analysis_config import AnalysisConfigError, load_analysis, parse_analysis

REPO = Path(__file__).resolve().parents[2]
WALKTHROUGH = REPO / "configs" / "analysis" / "seed_walkthrough.yaml"


def test_the_shipped_walkthrough_loads_and_covers_the_seed_steps():
    config = load_analysis(WALKTHROUGH, PIPELINE)
    assert config.description
    functions = {(a.point, a.function) for a in config.attachments()}
    assert ("influence_iteration", trace) in functions  # the plot's terms
    assert ("influence_iteration", topk) in functions
    for point in (
        "precompute_end",
        "targets_end",
        "rows_forward_end",
        "rows_logits_end",
        "rows_features_end",
        "graph_assembled",
        "prune_nodes_end",
        "prune_edges_end",
    ):
        assert (point, shapes) in functions, point  # fmt: skip


def test_the_forms_of_a_point(tmp_path):
    config = parse_analysis(
        {
            "points": {
                "precompute_end": "shapes",
                "targets_end": ["shapes", {"function": "topk", "options": {"k": 3}}],
                "influence_end": False,
                "prune_nodes_end": {"enabled": False, "functions": ["shapes"]},
                "prune_edges_end": {"functions": ["trace"]},
            }
        }
    )
    assert list(config.points) == ["precompute_end", "targets_end", "prune_edges_end"]
    assert config.points["targets_end"][1].options == {"k": 3}
    assert config.describe()["targets_end"][1] == {"function": "topk", "options": {"k": 3}}


def test_your_own_function_from_a_module_or_a_file_beside_the_config(tmp_path):
    (tmp_path / "mine.py").write_text(
        "def count(event, *, scale=1):\n    return len(event.values)\n"
    )
    path = tmp_path / "mine.yaml"
    path.write_text(
        "points:\n"
        "  targets_end:\n"
        "    - function: mine.py:count\n"
        "      options: {scale: 2}\n"
        "    - circuitflow.attribution.analysis_functions:shapes\n"
    )
    (own, ready) = load_analysis(path).attachments()
    assert own.function.__name__ == "count" and own.options == {"scale": 2}
    assert ready.function is shapes and own.name == "mine.py:count"


@pytest.mark.parametrize(
    "text,message",
    [
        ("points: [a]", "'points' must map point names to functions"),
        ("pints: {}", "unknown key 'pints'; a config has: description, points"),
        ("points:\n  influence_iterations: shapes", "did you mean 'influence_iteration'?"),
        ("points:\n  targets_end: pickle", "'pickle' is neither a ready function"),
        ("points:\n  targets_end: no_such_module_x:f", "cannot import 'no_such_module_x'"),
        ("points:\n  targets_end: os.path:nothing_here", "'os.path' has no function"),
        ("points:\n  targets_end: broken.py:f", "cannot import 'broken.py' (ZeroDivisionError"),
        ("points:\n  targets_end: {function: shapes, options: {depth: 2}}",
         "shapes takes no option 'depth'; it takes: values, k"),
        ("points:\n  targets_end: {function: topk, options: {values: [adjacency]}}",
         "point 'targets_end' offers no 'adjacency'; it offers: mode, last_logits"),
        ("points:\n  targets_end: {enabled: maybe, functions: [shapes]}",
         "targets_end.enabled: expected true or false"),
        ("points:\n  targets_end: []", "no function given (use false to switch it off)"),
        ("points: {targets_end: shapes", "not valid YAML"),
    ],
)  # fmt: skip
def test_mistakes_are_one_line_naming_the_file_and_entry(tmp_path, text, message):
    (tmp_path / "broken.py").write_text("1 / 0\n")
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(AnalysisConfigError) as caught:
        load_analysis(path, PIPELINE)
    line = str(caught.value)
    assert message in line and "\n" not in line and str(path) in line


def test_a_missing_file():
    with pytest.raises(AnalysisConfigError, match="cannot read analysis config"):
        load_analysis("no/such/file.yaml")


def test_points_no_stage_fires_are_refused():
    only_targets = [stage for stage in PIPELINE if stage.name != "prune"]
    with pytest.raises(AnalysisConfigError, match="no stage of the pipeline fires this point"):
        parse_analysis(
            {"points": {"prune_nodes_end": "shapes"}},
            fired={p for s in only_targets for p in s.points},
        )
