"""Test-session settings (offline, quiet, deterministic) and shared fixtures."""

import os
import tempfile

# Under pytest-xdist every worker inherits the controller's environment: give each worker its
# own Prefect home, database and cache, or two workers' temporary servers share one SQLite file.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER:
    for _name in (
        "PREFECT_HOME",
        "CIRCUITFLOW_CACHE_DIR",
        "PREFECT_SERVER_DATABASE_CONNECTION_URL",
    ):
        os.environ.pop(_name, None)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # commands show loading bars; test output stays plain
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="circuitflow-test-prefect-"))
os.environ.setdefault("CIRCUITFLOW_CACHE_DIR", tempfile.mkdtemp(prefix="circuitflow-test-cache-"))
os.environ.setdefault(
    "PREFECT_SERVER_DATABASE_CONNECTION_URL",
    f"sqlite+aiosqlite:///{tempfile.mkdtemp(prefix='circuitflow-test-db-')}/prefect.db",
)
# Prefect's temporary servers (the test harness's and the commands' own) start in 7-10 s on a
# quiet machine, but took over 50 s on a shared, loaded one: wait for them.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

from circuitflow.flows.settings import configure  # noqa: E402

configure()

import pytest  # noqa: E402
import torch  # noqa: E402

# Two xdist workers on two cores: one thread each, or they oversubscribe the cores.
torch.set_num_threads(1 if _WORKER else max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def prefect_api():
    """One Prefect test server for the whole session; yields its API URL (for subprocesses)."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    from circuitflow.flows.settings import quiet_flows

    with prefect_test_harness(server_startup_timeout=None), quiet_flows():
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


SEED = "The capital of the state containing Dallas is"


@pytest.fixture(scope="session")
def _seed_store(tmp_path_factory):
    """The built-in model's seed prompt, attributed once and recorded in a store of its own."""
    from circuitflow.tasks import RunRequest, Setup
    from circuitflow.tasks.execute import execute_run

    root = tmp_path_factory.mktemp("seed") / "store"
    outcome = execute_run(Setup.resolve(None, "plt", str(root)), RunRequest(SEED))
    assert outcome.status == "ok", outcome.error
    return root, outcome.run_id


@pytest.fixture
def seed_run(_seed_store, tmp_path):
    """A copy of the seed run's store for one test (which may save subgraphs into it):
    `.store` (its root), `.run_id`, and `.open()` for the run's RunContext."""
    import shutil
    from types import SimpleNamespace

    from circuitflow.tasks.recorded import open_run

    source, rid = _seed_store
    root = str(tmp_path / "seed-store")
    shutil.copytree(source, root)
    return SimpleNamespace(store=root, run_id=rid, open=lambda: open_run(root, rid))
