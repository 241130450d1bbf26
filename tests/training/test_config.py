"""TrainDemoConfig: YAML round trip, and configs/train_demo.yaml is the shipped recipe."""

from pathlib import Path

import pytest

from circuitflow.training.config import TrainDemoConfig

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "train_demo.yaml"


def test_yaml_round_trip(tmp_path):
    cfg = TrainDemoConfig.quick()
    cfg.to_yaml(tmp_path / "c.yaml")
    assert TrainDemoConfig.from_yaml(tmp_path / "c.yaml") == cfg


def test_partial_yaml_takes_defaults(tmp_path):
    (tmp_path / "c.yaml").write_text("seed: 3\nmodel:\n  steps: 5\n")
    cfg = TrainDemoConfig.from_yaml(tmp_path / "c.yaml")
    assert cfg.seed == 3 and cfg.model.steps == 5
    assert cfg.model.d_model == TrainDemoConfig().model.d_model


def test_unknown_keys_raise():
    with pytest.raises(TypeError):
        TrainDemoConfig.from_dict({"model": {"n_layer": 4}})


def test_default_config_file_matches_defaults():
    assert TrainDemoConfig.from_yaml(CONFIG) == TrainDemoConfig()
