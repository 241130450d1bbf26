"""What `attribute` prints on stderr: stage lines, and the backward passes as plain lines
when stderr is not a terminal (a log file, a pipe), where no live bar can draw."""

import io

from rich.console import Console

from circuitflow.flows.progress import StageProgress


def test_backward_passes_show_as_lines_off_a_terminal():
    out = io.StringIO()
    with StageProgress(Console(file=out, force_terminal=False, width=200)) as shown:
        shown.stage("rows", "computing")
        for done in range(7, 71, 7):  # ten passes of 7 rows; the total grows once, as budgets do
            shown.steps("rows", done, 63 if done < 63 else 70)
        shown.stage("rows", "computed", 1.5)
        shown.stage("rows", "computing")  # a second run of the stage starts its lines afresh
        shown.steps("rows", 70, 70)
    lines = out.getvalue().splitlines()
    steps = [line for line in lines if line.endswith("edge-matrix rows")]
    # one line per tenth reached: none repeats, the last says the work is done
    assert steps[:2] == ["rows: 7/63 edge-matrix rows", "rows: 14/63 edge-matrix rows"]
    assert len(steps) == len(set(steps)) + 1 and steps[-1] == "rows: 70/70 edge-matrix rows"
    assert len(steps) <= 12
    assert lines[0] == "rows: computing" and "rows: computed in 1.50 s" in lines


def test_a_terminal_gets_the_bar_not_lines():
    out = io.StringIO()
    with StageProgress(Console(file=out, force_terminal=True, width=100)) as shown:
        shown.steps("rows", 3, 10)
        assert shown.tasks  # the live bar holds the stage; it is drawn, then cleared (transient)
    assert "rows: 3/10 edge-matrix rows" not in out.getvalue()
