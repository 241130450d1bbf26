"""Write errors during a publish: a full disk (a size-limited tmpfs where this process may mount
one, else a file-size limit that makes big writes fail with EFBIG) ends the run with one
StoreWriteError naming the store, leaves no partial object or batch, and the next run
recovers."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from circuitflow.store import StoreWriteError
from circuitflow.tasks import RunRequest, Setup
from circuitflow.tasks.execute import execute_run
from tests.conftest import SEED
from tests.faults.checks import assert_sound

FREE = 300_000  # bytes left free: less than one run's objects (about 1 MB), more than none


@contextlib.contextmanager
def _full_disk(base: Path) -> Iterator[tuple[Path, Callable[[], None]]]:
    """(a directory where writes fail after about FREE bytes, a function that makes room)."""
    mount = base / "tmpfs"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode == 0:
        filler = mount / "filler"
        stat = os.statvfs(mount)
        filler.write_bytes(b"\0" * max(0, stat.f_bavail * stat.f_frsize - FREE))
        try:
            yield mount, filler.unlink
        finally:
            subprocess.run(["umount", "-l", str(mount)], check=False)
        return
    # No mount allowed here: every file write past FREE / 4 bytes fails instead (EFBIG).
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    def lift() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)

    resource.setrlimit(resource.RLIMIT_FSIZE, (FREE // 4, hard))
    try:
        yield mount, lift
    finally:
        lift()


def test_full_disk_names_the_store_leaves_nothing_partial_and_the_next_run_recovers(
    tmp_path: Path,
) -> None:
    with _full_disk(tmp_path) as (disk, make_room):
        root = str(disk / "store")
        setup = Setup.resolve(None, "plt", root)
        with pytest.raises(StoreWriteError) as failure:
            execute_run(setup, RunRequest(SEED))
        message = str(failure.value)
        assert root in message and "\n" not in message
        # Nothing half-written stays: the temporary copies were removed, and every published
        # object is whole (checked by verify below).
        assert list(Path(root, "tmp").glob("obj-*")) == []
        assert list(Path(root, "tmp").glob("batch*")) == []
        make_room()
        outcome = execute_run(setup, RunRequest(SEED))
        assert outcome.status == "ok", outcome.error
        assert_sound(root, [SEED])
