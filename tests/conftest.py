"""Test-session settings (offline, quiet, deterministic) and shared fixtures."""

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="circuitflow-test-prefect-"))
os.environ.setdefault("CIRCUITFLOW_CACHE_DIR", tempfile.mkdtemp(prefix="circuitflow-test-cache-"))
os.environ.setdefault(
    "PREFECT_SERVER_DATABASE_CONNECTION_URL",
    f"sqlite+aiosqlite:///{tempfile.mkdtemp(prefix='circuitflow-test-db-')}/prefect.db",
)

from circuitflow.flows.settings import configure  # noqa: E402

configure()

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def prefect_api():
    """One Prefect test server for the whole session; yields its API URL (for subprocesses)."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    from circuitflow.flows.settings import quiet_flows

    with prefect_test_harness(server_startup_timeout=120), quiet_flows():
        yield PREFECT_API_URL.value()


@pytest.fixture(scope="session")
def toy_model_dir(tmp_path_factory):
    """A small random Llama-style model directory with per-layer and cross-layer transcoders."""
    from circuitflow.attribution import save_model
    from circuitflow.attribution.toy import CROSS_LAYER, random_model, random_transcoders

    directory = tmp_path_factory.mktemp("toy-model")
    model = random_model("llama")
    save_model(model, directory)
    random_transcoders(model, directory=directory / "transcoders" / "plt")
    random_transcoders(model, kind=CROSS_LAYER, directory=directory / "transcoders" / "clt")
    return directory


@pytest.fixture(scope="session")
def builtin():
    """The built-in model with its per-layer ("plt") or cross-layer ("clt") transcoders, as a
    ReplacementModel, loaded once per session: builtin("plt")."""
    from circuitflow.attribution import ReplacementModel, load_model, load_transcoders
    from circuitflow.models import BUILTIN_MODEL

    model = load_model(BUILTIN_MODEL)
    loaded = {}

    def get(kind: str = "plt") -> ReplacementModel:
        if kind not in loaded:
            transcoders = load_transcoders(BUILTIN_MODEL / "transcoders" / kind)
            loaded[kind] = ReplacementModel(model, transcoders)
        return loaded[kind]

    return get
