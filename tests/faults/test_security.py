"""Names from user input cannot leave the store root, and nothing in a sweep file or config
runs code (see README, "Faults, bad input and security")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from circuitflow.flows.sweep_files import SweepConfig, SweepFileError
from circuitflow.store import Store, stage_key
from circuitflow.tasks.recorded import UnknownRunError, check_run_id

ESCAPES = ["..", "../x", "a/../../b", "/etc/passwd", "a\\..\\b", ".hidden", "", "x" * 300]


def test_names_keys_and_run_ids_cannot_escape_the_store_root(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    key = stage_key("rows", 1, {})
    for name in ESCAPES:
        with pytest.raises(ValueError):
            store.object_path(name, key)
        with pytest.raises(ValueError):
            store.object_path("rows", name)
        with pytest.raises(UnknownRunError):
            check_run_id(name)
        with store.writer("rows", key, version=1) as writer, pytest.raises(ValueError):
            writer.put_tensor(name, np.zeros(2, np.float32))
        with pytest.raises(ValueError):
            writer.put_file(name, b"x")
    # Everything written stayed inside the store root.
    outside = [p for p in tmp_path.rglob("*") if not p.is_relative_to(tmp_path / "store")]
    assert outside == []


def test_a_sweep_yaml_cannot_run_code(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    sweep = tmp_path / "evil.yaml"
    sweep.write_text(f"prompts: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(SweepFileError, match="not valid YAML"):
        SweepConfig.from_yaml(sweep)
    assert not marker.exists()
