"""The prune stage's catalog tables (tasks/stages/prune.py), read back against its own records."""

from __future__ import annotations

import pytest
import torch


def test_influence_traces_rows_are_each_steps_magnitudes(seed_run) -> None:
    run = seed_run.open()
    rows = run.store.catalog.read("influence_traces", run.run_id).to_pylist()
    traces = {"node": run.record("influence").trace, "edge": run.record("prune").edge_trace}
    assert {r["phase"] for r in rows} == set(traces)
    for phase, trace in traces.items():
        mine = sorted((r for r in rows if r["phase"] == phase), key=lambda r: r["iteration"])
        assert [r["iteration"] for r in mine] == list(range(len(trace)))
        for row, step in zip(mine, trace, strict=True):  # one step: (N,)
            # A float32 sum in some order, against one in float64: within float32 rounding.
            assert row["l1"] == pytest.approx(float(step.double().abs().sum()), rel=1e-6)
            assert row["max"] == float(step.abs().max())
            assert row["nnz"] == int(torch.count_nonzero(step))
