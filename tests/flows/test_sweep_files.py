"""Reading sweep files: text, JSONL, CSV and YAML with a grid."""

import pytest

from flows.sweep_files import SweepConfig, SweepFileError, expand
from tasks.runs import RunParams


def test_text_jsonl_and_csv(tmp_path):
    (tmp_path / "p.txt").write_text("# a comment\nw1 w2\n\nw3 w4\n")
    (tmp_path / "p.jsonl").write_text('{"prompt": "w1 w2"}\n{"prompt": "w3 w4", "note": 1}\n')
    (tmp_path / "p.csv").write_text('id,prompt\n1,w1 w2\n2,"w3 w4"\n')
    for name in ("p.txt", "p.jsonl", "p.csv"):
        items, model = expand(tmp_path / name, RunParams(), None)
        assert [i.request.prompt for i in items] == ["w1 w2", "w3 w4"] and model is None


def test_yaml_grid_multiplies_prompts_and_settings(tmp_path):
    (tmp_path / "more.txt").write_text("w5 w6\n")
    config = SweepConfig(
        prompts=["w1 w2"],
        prompts_file="more.txt",
        grid={"transcoders": ["plt", "clt"], "node_threshold": [0.8, 0.6]},
        params={"batch_size": 16, "targets": ["w3"]},
    )
    (tmp_path / "s.yaml").write_text(config.to_yaml())
    assert SweepConfig.from_yaml(tmp_path / "s.yaml") == config  # round-trips
    items, _ = expand(tmp_path / "s.yaml", RunParams(), None)
    assert len(items) == 2 * 2 * 2
    assert {(i.transcoders, i.request.params.node_threshold) for i in items} == {
        ("plt", 0.8),
        ("plt", 0.6),
        ("clt", 0.8),
        ("clt", 0.6),
    }
    assert all(
        i.request.params.batch_size == 16 and i.request.params.targets == ("w3",) for i in items
    )


@pytest.mark.parametrize(
    "name,text,message",
    [
        ("a.jsonl", '{"text": "w1"}\n', 'needs a "prompt" field'),
        ("b.jsonl", "not json\n", "not JSON"),
        ("c.csv", "text\nw1\n", "'prompt' column"),
        ("d.txt", "\n# nothing\n", "holds no prompts"),
        ("e.yaml", "prompts: [w1]\ncolour: red\n", "unknown keys"),
        ("f.yaml", "prompts: [w1]\ngrid: {batch_size: [1, 2]}\n", "the grid can vary"),
        ("g.yaml", "prompts: [w1]\nparams: {speed: 3}\n", "unknown params"),
    ],
)
def test_bad_sweep_files(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(SweepFileError, match=message):
        expand(tmp_path / name, RunParams(), None)


def test_the_shipped_sweep_config_reads():
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "configs" / "sweeps" / "capitals.yaml"
    items, model = expand(path, RunParams(), None)
    assert len(items) == 6 * 2 * 2 and model is None
