"""A sweep's local Dask cluster, started while the command is still starting up.

A Prefect `DaskTaskRunner` given cluster settings starts its cluster when the flow starts,
after the Prefect server is up; its workers then import PyTorch and load the model when the
first batch reaches them. Here the cluster starts in a background thread as soon as the
command knows it needs one, and each worker is sent a warm-up (`tasks.execute.warm_up`):
torch threads set to its share of the cores, the pipeline imported, the models loaded. All
of it overlaps the Prefect server's start; the flow then runs on the warm cluster through
`DaskTaskRunner(address=...)`.
"""

from __future__ import annotations

import os
import threading
from types import TracebackType


class WarmCluster:
    """A local cluster of `workers` single-threaded processes, started on entering, warmed up
    for the models given to `warm`. A context manager: leaving it closes the cluster."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._models: list = []
        self._known = threading.Event()
        self._cluster = None
        self._client = None
        self._warm: list = []
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._start, daemon=True)

    def warm(self, models: list) -> None:
        """Load these `(Setup, dtype)` models in every worker as soon as it is up."""
        self._models = models
        self._known.set()

    def __enter__(self) -> WarmCluster:
        self._thread.start()
        return self

    def _start(self) -> None:
        from distributed import Client, LocalCluster

        try:
            self._cluster = LocalCluster(
                n_workers=self.workers,
                threads_per_worker=1,  # the model is not thread-safe
                processes=True,
                dashboard_address=None,
            )
            self._client = Client(self._cluster)
            # Each worker's torch gets its share of the cores (Dask starts them at 1 thread).
            threads = max(1, (os.cpu_count() or 1) // self.workers)
            self._known.wait()
            if not self._models:  # the command ended before it knew them
                return
            from circuitflow.tasks.execute import warm_up

            for address in self._client.scheduler_info()["workers"]:
                self._warm.append(
                    self._client.submit(
                        warm_up, self._models, threads, workers=[address], pure=False
                    )
                )
        except BaseException as error:  # reported by `address`, in the command's thread
            self._error = error

    @property
    def address(self) -> str:
        """The scheduler's address, once the cluster is up (waits for it)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._cluster.scheduler_address

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._known.set()
        self._thread.join()
        for closing in (self._client, self._cluster):
            if closing is not None:
                closing.close()
