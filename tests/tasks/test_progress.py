"""Stage progress: every stage reports its start and end, the rows stage its backward passes."""

from circuitflow.attribution import RunParams
from circuitflow.tasks import RunRequest, Setup
from circuitflow.tasks.execute import execute_run
from circuitflow.tasks.progress import reporting, step_callback


class Collect:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def stage(self, name, status, seconds=None):
        self.events.append((name, status))

    def steps(self, name, done, total):
        self.events.append((name, "step", done, total))


def test_stages_report_start_end_and_backward_passes(toy_model_dir, tmp_path):
    setup = Setup.resolve(str(toy_model_dir), "plt", str(tmp_path / "store"), device="cpu")
    request = RunRequest("w1 w2 w3 w4", RunParams(batch_size=4))
    with reporting(Collect()) as seen:
        assert execute_run(setup, request).status == "ok"
    names = [e[0] for e in seen.events if e[1] == "computing"]
    assert names == ["tokenize", "precompute", "targets", "rows", "influence", "prune", "export"]
    for name in names:
        assert seen.events.index((name, "computing")) < seen.events.index((name, "computed"))
    steps = [e for e in seen.events if e[1] == "step"]
    assert len(steps) >= 2  # batches of 4 rows: several backward passes
    assert [e[2] for e in steps] == sorted(e[2] for e in steps)
    assert steps[-1][2] == steps[-1][3]  # the bar ends full
    rows_end = seen.events.index(("rows", "computed"))
    assert all(seen.events.index(s) < rows_end for s in steps)

    with reporting(Collect()) as again:  # all stored: every stage says so, no steps
        execute_run(setup, request)
    assert {e[1] for e in again.events} == {"cached"}


def test_nobody_watching_costs_nothing():
    assert step_callback("rows") is None
