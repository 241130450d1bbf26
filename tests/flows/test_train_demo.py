"""`train-demo --quick` runs every step through the real Prefect engine in seconds."""

import json

from click.testing import CliRunner

from attribution import load_model, load_transcoders
from flows.train_demo import train_demo_command


def test_quick_train_demo_end_to_end(prefect_api, tmp_path):
    out = tmp_path / "tiny"
    result = CliRunner().invoke(train_demo_command, ["--out", str(out), "--quick", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    for name in ["config.json", "model.safetensors", "tokenizer/tokenizer.json",
                 "train_config.yaml", "metrics.json", "MODEL_CARD.md"]:  # fmt: skip
        assert (out / name).is_file(), name
    for kind, files in [("plt", "layer_1.safetensors"), ("clt", "W_dec_1.safetensors")]:
        assert (out / "transcoders" / kind / "config.yaml").is_file()
        assert (out / "transcoders" / kind / files).is_file()
        assert load_transcoders(out / "transcoders" / kind).n_layers == 2
    model = load_model(out)
    assert model.cfg.n_layers == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["transcoders"]) == {"plt", "clt"}
    assert metrics["transcoders"]["plt"]["attribution"]["n_nodes"] > 0
    card = (out / "MODEL_CARD.md").read_text()
    for heading in ["## Model", "## Transcoders", "## Attribution", "## Files and time"]:
        assert heading in card


def test_config_and_quick_are_exclusive(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("seed: 0\n")
    result = CliRunner().invoke(train_demo_command, ["--quick", "--config", str(cfg)])
    assert result.exit_code != 0
