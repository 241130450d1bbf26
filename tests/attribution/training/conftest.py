"""Fixtures for the built-in model's tests: the shipped files, loaded once per session."""

from pathlib import Path

import pytest

SHIPPED = Path(__file__).resolve().parents[3] / "models" / "capitals-4l"


@pytest.fixture(scope="session")
def shipped_dir() -> Path:
    """The committed built-in model directory."""
    if not (SHIPPED / "model.safetensors").exists():
        pytest.skip("models/capitals-4l is not built yet")
    return SHIPPED


@pytest.fixture(scope="session")
def shipped_model(shipped_dir):
    """The shipped HookedTransformer, loaded offline."""
    from attribution import load_model

    return load_model(shipped_dir)


@pytest.fixture(scope="session")
def split():
    """The fact split the shipped model was trained with (seed 0, the default config)."""
    from attribution.training.world import split_facts

    return split_facts(0, 0.2)


@pytest.fixture(scope="session")
def eval_tokens(shipped_model):
    """A small fixed set of held-out text: 32 sequences of 48 tokens from the eval stream."""
    from attribution.training.config import TrainDemoConfig
    from attribution.training.pipeline import token_batches

    return token_batches(shipped_model, TrainDemoConfig(), "eval", 32)[0]
