"""Devices and precision of a run's setup: which device, which GPU a sweep worker takes, and
what the precision changes (keys, and the graph within a rounding tolerance)."""

import subprocess
import sys

import pytest
import torch

from circuitflow.attribution import RunParams
from circuitflow.tasks import RunRequest, Setup
from circuitflow.tasks.context import RunContext
from circuitflow.tasks.execute import execute_run
from circuitflow.tasks.recorded import open_run
from circuitflow.tasks.runtime import _worker_name, loaded, process_device, resolve_device

HAS_CUDA = torch.cuda.is_available()


def test_auto_is_cuda_when_there_is_a_gpu_else_cpu() -> None:
    assert resolve_device("auto") == ("cuda" if HAS_CUDA else "cpu")
    assert resolve_device(None) == resolve_device("auto")
    assert resolve_device("CPU") == "cpu"


def test_devices_that_are_not_there_or_not_devices_are_one_line_errors() -> None:
    with pytest.raises(ValueError, match="auto, cpu, cuda, cuda:N or mps"):
        resolve_device("gpu:1")
    with pytest.raises(ValueError, match="does not exist|not available"):
        resolve_device("cuda:99")
    if HAS_CUDA:
        assert resolve_device("cuda:0") == "cuda:0"
    else:
        with pytest.raises(ValueError, match="no CUDA GPU.*--device cpu"):
            resolve_device("cuda")


def test_each_sweep_worker_takes_the_gpu_of_its_number() -> None:
    assert process_device("cuda", 0, 4) == "cuda:0"
    assert process_device("cuda", 3, 4) == "cuda:3"
    assert process_device("cuda", 5, 4) == "cuda:1"
    assert process_device("cuda", None, 4) == "cuda"  # not a Dask worker
    assert process_device("cuda", 1, 1) == "cuda"  # one GPU: nothing to spread
    assert process_device("cuda:2", 0, 4) == "cuda:2"  # the user chose a GPU
    assert process_device("cpu", 1, 4) == "cpu"


def test_a_process_knows_its_dask_worker_name_without_importing_dask_outside_one() -> None:
    check = (
        "import sys; from circuitflow.tasks.runtime import _worker_name; "
        "assert _worker_name() is None; assert 'distributed' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", check], check=True)
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=1, processes=False, dashboard_address=None)
    with cluster, Client(cluster) as client:
        name = client.submit(_worker_name, pure=False).result()
    assert name == 0


def test_a_setup_names_its_resolved_device(toy_model_dir, tmp_path) -> None:
    setup = Setup.resolve(str(toy_model_dir), "plt", str(tmp_path), device="cpu")
    assert setup.device == "cpu"
    assert Setup.resolve(str(toy_model_dir), "plt", str(tmp_path)).device == resolve_device("auto")


def test_the_model_loads_in_the_runs_precision(toy_model_dir, tmp_path) -> None:
    setup = Setup.resolve(str(toy_model_dir), "plt", str(tmp_path), device="cpu")
    half = loaded(setup, "bfloat16").replacement
    full = loaded(setup, "float32").replacement
    assert half.model.W_E.dtype == half.transcoders.dtype == torch.bfloat16
    assert full.model.W_E.dtype == full.transcoders.dtype == torch.float32
    assert half.device.type == "cpu"


def test_precision_is_in_the_keys_and_bfloat16_stays_near_float32(toy_model_dir, tmp_path) -> None:
    setup = Setup.resolve(str(toy_model_dir), "plt", str(tmp_path / "store"), device="cpu")
    prompt, graphs, keys = "w1 w2 w3 w4 w5", {}, {}
    for dtype in ("float32", "bfloat16"):
        outcome = execute_run(setup, RunRequest(prompt, RunParams(dtype=dtype)))
        assert outcome.status == "ok", outcome.error
        run: RunContext = open_run(setup.store, outcome.run_id)
        keys[dtype] = {name: out.key for name, out in run.outputs.items()}
        graphs[dtype] = run.graph
    assert keys["float32"]["tokenize"] == keys["bfloat16"]["tokenize"]
    assert keys["float32"]["precompute"] != keys["bfloat16"]["precompute"]
    assert keys["float32"]["rows"] != keys["bfloat16"]["rows"]
    full, half = graphs["float32"], graphs["bfloat16"]
    if torch.equal(full.active_features, half.active_features):
        scale = full.adjacency.abs().max()
        # bfloat16 keeps 8 bits of mantissa: each weight rounds at about 0.4%, and a backward
        # pass sums many of them
        assert (full.adjacency - half.adjacency).abs().max() <= 0.05 * scale
    else:  # rounding moved features across zero: only a few
        ours = {tuple(f) for f in half.active_features.tolist()}
        same = sum(tuple(f) in ours for f in full.active_features.tolist())
        assert same >= 0.95 * len(full.active_features)


def test_circuit_tracers_short_transcoder_names_stand_for_their_hub_sets(tmp_path, monkeypatch):
    setup = Setup.resolve("google/gemma-2-2b", "gemma", str(tmp_path / "store"))
    assert setup.transcoders == "mwhanna/gemma-scope-transcoders"
    assert Setup.resolve("x/y", "llama", str(tmp_path)).transcoders.startswith("mntss/")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gemma").mkdir()  # a directory of that name is the user's own set
    assert Setup.resolve("x/y", "gemma", str(tmp_path)).transcoders == str(tmp_path / "gemma")
