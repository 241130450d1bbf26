"""Fixtures for the built-in model's tests: the shipped files, loaded once per session."""

from pathlib import Path

import pytest

from circuitflow.models import BUILTIN_MODEL


@pytest.fixture(scope="session")
def shipped_dir() -> Path:
    """The built-in model directory that ships with the package (it must be there)."""
    assert (BUILTIN_MODEL / "model.safetensors").is_file(), f"{BUILTIN_MODEL} is missing"
    return BUILTIN_MODEL


@pytest.fixture(scope="session")
def shipped_model(shipped_dir):
    """The shipped HookedTransformer, loaded offline."""
    from circuitflow.attribution import load_model

    return load_model(shipped_dir)


@pytest.fixture(scope="session")
def split():
    """The fact split the shipped model was trained with (seed 0, the default config)."""
    from circuitflow.training.world import split_facts

    return split_facts(0, 0.2)


@pytest.fixture(scope="session")
def eval_tokens(shipped_model):
    """A small fixed set of held-out text: 32 sequences of 48 tokens from the eval stream."""
    from circuitflow.training.config import TrainDemoConfig
    from circuitflow.training.pipeline import token_batches

    return token_batches(shipped_model, TrainDemoConfig(), "eval", 32)[0]
