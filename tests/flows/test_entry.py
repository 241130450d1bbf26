"""The console script's quick exit (flows/entry.py): nothing left for the end is lost."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

DRIVER = textwrap.dedent(
    """
    import atexit, sys
    from pathlib import Path
    import circuitflow.flows.cli as cli
    from circuitflow.flows import entry

    def command():
        # Registered after entry's own handler, as Prefect's are during a command.
        atexit.register(lambda: Path(sys.argv[1]).write_text("ran"))
        for _ in range(100_000):  # the last few kB still sit in stdout's buffer at exit
            sys.stdout.write("x" * 10)
        sys.exit(int(sys.argv[2]))

    cli.main = command
    entry.run()
    """
)


def test_the_exit_code_the_output_and_later_handlers_survive_the_quick_exit(tmp_path) -> None:
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    for code in (0, 3):
        marker = tmp_path / f"handler-{code}"
        done = subprocess.run(
            [sys.executable, "-c", DRIVER, str(marker), str(code)],
            capture_output=True,
            env=buffered,
        )
        assert done.returncode == code, done.stderr.decode()[-2000:]
        assert len(done.stdout) == 1_000_000
        assert marker.read_text() == "ran"


def test_an_exception_that_escapes_a_command_still_exits_1(tmp_path) -> None:
    driver = DRIVER.replace("sys.exit(int(sys.argv[2]))", "raise RuntimeError('boom')")
    done = subprocess.run(
        [sys.executable, "-c", driver, str(tmp_path / "m"), "0"], capture_output=True, text=True
    )
    assert done.returncode == 1
    assert "RuntimeError: boom" in done.stderr


def test_the_real_command_group_keeps_click_s_exit_codes() -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "circuitflow.flows", "--help"], capture_output=True, text=True
    )
    assert ok.returncode == 0 and "attribute" in ok.stdout
    usage = subprocess.run(
        [sys.executable, "-m", "circuitflow.flows", "no-such-command"],
        capture_output=True,
        text=True,
    )
    assert usage.returncode == 2 and "No such command" in usage.stderr
