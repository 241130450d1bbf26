"""The ready analysis functions and the summary they keep, on hand-made events."""

import pytest
import torch

from circuitflow.attribution import analysis
from circuitflow.attribution.analysis import AnalysisError, Event, Summary, summarize
from circuitflow.attribution.analysis_functions import shapes, topk, trace

MATRIX = torch.tensor([[0.5, -3.0, 2.0], [1.0, 0.0, -0.25]])


def test_summarize_by_hand():
    s = summarize(MATRIX, k=2)
    assert s.shape == (2, 3) and s.dtype == "float32"
    assert (s.min, s.max, s.mean, s.nnz) == (-3.0, 2.0, pytest.approx(0.25 / 6), 5)
    assert s.topk_values == (2.0, 1.0) and s.topk_indices == (2, 3)  # flat row-major indices
    by_size = summarize(MATRIX, k=2, absolute=True)
    assert by_size.topk_values == (-3.0, 2.0) and by_size.topk_indices == (1, 2)
    empty = summarize(torch.zeros(0, 4))
    assert empty.shape == (0, 4) and empty.min is None and empty.topk_values == ()
    assert summarize(torch.tensor([True, False, True])).nnz == 2


def event(**values) -> Event:
    return Event("influence_iteration", values)


def test_shapes_summarises_tensors_and_keeps_plain_values():
    out = shapes(event(phase="node", iteration=3, term=MATRIX[0]), k=1)
    assert out["phase"] == "node" and out["iteration"] == 3
    assert isinstance(out["term"], Summary) and out["term"].topk_values == (2.0,)
    assert list(shapes(event(a=MATRIX, b=1), values="b")) == ["b"]


def test_topk_ranks_chosen_rows_on_their_own():
    out = topk(event(matrix=MATRIX, scale=2.0), rows=[1, -2, 7], k=1)
    assert set(out) == {"matrix[1]", "matrix[-2]"}  # row 7 does not exist: skipped
    assert out["matrix[1]"].topk_values == (1.0,) and out["matrix[1]"].topk_indices == (0,)
    assert out["matrix[-2]"].topk_values == (2.0,)
    with pytest.raises(AnalysisError, match="rows need a 2-D value"):
        topk(event(v=MATRIX[0]), rows=[0])
    with pytest.raises(AnalysisError, match="offers no value 'w'; it offers: v"):
        topk(event(v=MATRIX), values=["w"])


def test_trace_keeps_copies_in_firing_order():
    term = torch.zeros(3)
    with analysis.attached({"influence_iteration": trace}) as capture:
        for step in range(3):
            term.fill_(float(step))  # the attribution reuses buffers: each firing is copied
            analysis.fire("influence_iteration", phase="node", iteration=step, term=term)
    kept = capture.values("influence_iteration", "term")
    assert [float(t[0]) for t in kept] == [0.0, 1.0, 2.0]
    assert [k.firing for k in capture.kept] == [0, 1, 2]
    assert capture.kept[1].labels == {"phase": "node", "iteration": 1}


def test_unusable_return_values_are_failures():
    with analysis.attached({"targets_end": lambda e: {"model": object(), "ok": [1, "a"]}}) as c:
        analysis.fire("targets_end", mode="salient")
    assert c.values("targets_end", "ok") == [[1, "a"]]
    assert "returned 'model': values of type object cannot be kept" in c.failures[0].error
