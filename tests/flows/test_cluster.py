"""The sweep's early local cluster: its workers come up with the models loaded and torch
threads set to their share of the cores, before any batch reaches them."""

import os

import pytest

from circuitflow.flows.cluster import WarmCluster
from circuitflow.tasks.runtime import Setup

pytestmark = pytest.mark.slow  # a Dask cluster of 2 processes


def _worker_state(setup: Setup) -> tuple[int, bool, int]:
    import torch

    from circuitflow.tasks import runtime

    return torch.get_num_threads(), (setup, "float32") in runtime._loaded, os.getpid()


def test_workers_start_warm(toy_model_dir, tmp_path) -> None:
    from distributed import Client

    setup = Setup.resolve(str(toy_model_dir), None, str(tmp_path / "store"), "cpu")
    with WarmCluster(2) as cluster:
        cluster.warm([(setup, "float32")])
        with Client(cluster.address) as client:
            workers = list(client.scheduler_info()["workers"])
            assert len(workers) == 2
            # One thread a worker: this runs after the warm-up on each of them.
            states = client.gather(
                [client.submit(_worker_state, setup, workers=[w], pure=False) for w in workers]
            )
    threads = max(1, (os.cpu_count() or 1) // 2)
    assert [(t, warm) for t, warm, _ in states] == [(threads, True)] * 2
    assert len({pid for *_, pid in states}) == 2 and os.getpid() not in {s[2] for s in states}
