"""Damage at rest: a corrupted Zarr zip, a truncated catalog Parquet file and a deleted
manifest are each found by `store verify`, quarantined, and rebuilt by the next run."""

from __future__ import annotations

from pathlib import Path

from circuitflow.store import Store
from circuitflow.store.maintenance import verify
from circuitflow.tasks import RunRequest, Setup
from circuitflow.tasks.execute import execute_run
from tests.conftest import SEED
from tests.faults.checks import assert_sound


def _damage_then_rerun(root: str, damaged: Path) -> tuple[list[str], dict[str, str]]:
    """verify finds the damage (naming the damaged file's directory), --quarantine moves it,
    and a rerun of the seed prompt leaves a sound store; returns (problems, stage statuses)."""
    store = Store(root)
    report = verify(store)
    problems = [str(p) for p in report.problems]
    assert not report.ok
    assert verify(store, quarantine=True).quarantined
    assert not damaged.exists()
    outcome = execute_run(Setup.resolve(None, "plt", root), RunRequest(SEED))
    assert outcome.status == "ok", outcome.error
    assert_sound(root, [SEED])
    return problems, {s.stage: s.status for s in outcome.stages}


def _object_dir(root: str, stage: str) -> Path:
    (found,) = Path(root, "objects", stage).glob("*/*")
    return found


def test_corrupted_zarr_zip_is_quarantined_and_recomputed(seed_run) -> None:
    packed = _object_dir(seed_run.store, "rows") / "zarr.zip"  # the edge matrix rows' arrays
    data = bytearray(packed.read_bytes())
    data[len(data) // 2] ^= 0xFF
    packed.write_bytes(bytes(data))
    problems, statuses = _damage_then_rerun(seed_run.store, packed)
    assert any("sha256" in p or "hash" in p or "digest" in p for p in problems), problems
    assert statuses["rows"] == "computed"
    assert statuses["precompute"] == "cached"


def test_deleted_manifest_is_quarantined_and_recomputed(seed_run) -> None:
    manifest = _object_dir(seed_run.store, "influence") / "manifest.json"
    manifest.unlink()
    problems, statuses = _damage_then_rerun(seed_run.store, manifest.parent)
    assert any("manifest.json is missing" in p for p in problems), problems
    assert statuses["influence"] == "computed"
    assert statuses["rows"] == "cached"


def test_truncated_catalog_file_is_quarantined_and_recorded_again(seed_run) -> None:
    (table,) = Path(seed_run.store, "tables", "batches").glob("*/nodes.parquet")
    table.write_bytes(table.read_bytes()[: table.stat().st_size // 2])
    problems, statuses = _damage_then_rerun(seed_run.store, table.parent)
    assert any("unreadable Parquet" in p for p in problems), problems
    assert set(statuses.values()) == {"cached"}  # the rows come back from the stored stages
    nodes = Store(seed_run.store).query("SELECT count(*) AS n FROM nodes").to_pylist()
    assert nodes[0]["n"] > 0
