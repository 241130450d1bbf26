"""Model directories: save, load, and what happens with a broken one."""

import json

import pytest
import torch

from circuitflow.attribution import ModelLoadError, load_model, save_model
from circuitflow.attribution.toy import FAMILIES, random_model


@pytest.mark.parametrize("family", FAMILIES)
def test_save_and_load_round_trip(family, tmp_path):
    model = random_model(family, start_id=0)
    save_model(model, tmp_path)
    loaded = load_model(tmp_path)
    tokens = model.to_tokens("w1 w2 w3")
    assert tokens[0, 0] == 0  # the start token, id 0
    torch.testing.assert_close(loaded(tokens), model(tokens))
    assert loaded.cfg.n_key_value_heads == model.cfg.n_key_value_heads
    assert loaded.tokenizer.convert_ids_to_tokens(5) == model.tokenizer.convert_ids_to_tokens(5)


def test_broken_directories(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        load_model(tmp_path / "missing")
    save_model(random_model("gpt2"), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(config | {"n_layers": 5}))
    with pytest.raises(ModelLoadError, match="does not match config.json"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config | {"colour": "blue"}))
    with pytest.raises(ModelLoadError, match="unknown fields"):
        load_model(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="lacks model.safetensors"):
        load_model(tmp_path)


def test_unknown_name_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="not a local model directory"):
        load_model("no-such-model-xyz")
