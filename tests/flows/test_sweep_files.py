"""Reading sweep files: text, JSONL, CSV and YAML with a grid."""

import pytest

from circuitflow.attribution import RunParams
from circuitflow.flows.sweep_files import SweepConfig, SweepFileError, expand


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
        ("a.jsonl", '{"text": "w1"}\n', 'needs a "prompt" string'),
        ("b.jsonl", "not json\n", "not JSON"),
        ("c.csv", "text\nw1\n", "'prompt' column"),
        ("d.txt", "\n# nothing\n", "holds no prompts"),
        ("e.yaml", "prompts: [w1]\ncolour: red\n", r"e.yaml:2: unknown key 'colour'"),
        ("f.yaml", "prompts: [w1]\ngrid:\n  speed: [1, 2]\n", r"f.yaml:3: the grid can vary"),
        ("g.yaml", "prompts: [w1]\nparams: {speed: 3}\n", r"g.yaml:2: params.speed is not"),
        (
            "h.yaml",
            "prompts: [w1]\nparams:\n  batch_size: 8\n  node_threshold: 1.5\n",
            r"h.yaml:4: params.node_threshold must be in \(0, 1\], got 1.5",
        ),
        ("i.yaml", "prompts: [w1]\ngrid:\n  edge_threshold: [0.9, 0]\n", r"i.yaml:3: grid.edge_"),
        ("j.yaml", "prompts: [w1]\nparams: {batch_size: '8'}\n", "positive integer, got '8'"),
        ("k.yaml", "prompts: [w1]\nparams: {node_threshold: .nan}\n", r"in \(0, 1\]"),
        ("l.yaml", "prompts: [w1]\ngrid: {node_threshold: 0.5}\n", "must be a non-empty list"),
        ("m.yaml", "prompts: [w1\n", "not valid YAML"),
        ("n.yaml", "- w1\n- w2\n", "a sweep YAML is a mapping"),
        (
            "o.yaml",
            "prompts: [w1]\nparams:\n  targets: [{logit_diff: [w1, w1]}]\n",
            r"o.yaml:3: params.targets: 'logit_diff' needs two different tokens",
        ),
        ("p.yaml", "prompts: [w1]\ngrid:\n  targets: [[{direction: d}]]\n", "needs a 'vector'"),
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
    assert "flows/" not in path.read_text()  # no stale references to files that moved
    assert len(items) == 6 * 2 * 2 and model is None


def test_bytes_that_are_not_text(tmp_path):
    (tmp_path / "bin.txt").write_bytes(b"\x00\x01\x02PNG")
    with pytest.raises(SweepFileError, match="binary file"):
        expand(tmp_path / "bin.txt", RunParams(), None)
    (tmp_path / "latin.txt").write_bytes(b"w1 w2\ncaf\xe9\n")
    with pytest.raises(SweepFileError, match=r"latin.txt:2: not UTF-8"):
        expand(tmp_path / "latin.txt", RunParams(), None)


def test_csv_with_a_byte_order_mark_and_newlines_in_quotes(tmp_path):
    text = 'prompt,id\n"w1\nw2",1\nw3,2\n'
    (tmp_path / "p.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    items, _ = expand(tmp_path / "p.csv", RunParams(), None)
    assert [i.request.prompt for i in items] == ["w1\nw2", "w3"]


def test_every_run_setting_is_a_sweep_key(tmp_path):
    """params and grid accept exactly the RunParams fields (grid: plus transcoders)."""
    defaults = RunParams().to_dict()
    lines = "\n".join(
        f"  {k}: {v if v != [] else '[w1]'}" for k, v in defaults.items() if v is not None
    )
    (tmp_path / "all.yaml").write_text(f"prompts: [w1]\nparams:\n{lines}\n")
    items, _ = expand(tmp_path / "all.yaml", RunParams(), None)
    assert items[0].request.params.targets == ("w1",)


def test_targets_in_a_sweep_yaml(tmp_path):
    """Tokens, logit differences and directions, as a sweep file writes them."""
    (tmp_path / "t.yaml").write_text(
        "prompts: [w1 w2]\n"
        "grid:\n"
        "  targets:\n"
        "    - [w3]\n"
        "    - [{logit_diff: [w3, w4]}, {token: w5}]\n"
        "    - [{direction: up, vector: [1, 0, 2], weight: 0.5}]\n"
    )
    items, _ = expand(tmp_path / "t.yaml", RunParams(), None)
    assert [i.request.params.targets for i in items] == [
        ("w3",),
        ({"logit_diff": ["w3", "w4"]}, "w5"),
        ({"direction": "up", "vector": [1.0, 0.0, 2.0], "weight": 0.5},),
    ]
