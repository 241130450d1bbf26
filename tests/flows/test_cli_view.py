"""`circuitflow view` as a person runs it: the address it prints, the static file, bad input."""

import json
import re
import subprocess
import sys
import urllib.request

import pytest
from click.testing import CliRunner

from circuitflow.flows.cli import main


def view(seed_run, *args):
    return CliRunner().invoke(main, ["view", *args, "--store", seed_run.store])


@pytest.mark.slow
def test_serves_on_loopback_and_prints_its_address(seed_run):
    command = [sys.executable, "-m", "circuitflow.flows.cli", "view", seed_run.run_id,
               "--port", "0", "--store", seed_run.store]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        address = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert address, line + server.stderr.read()
        with urllib.request.urlopen(address[0] + "api/overview", timeout=30) as reply:
            assert json.loads(reply.read())["run"]["run_id"] == seed_run.run_id
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_static_page_is_written(seed_run, tmp_path):
    result = view(seed_run, seed_run.run_id, "--static", "-o", str(tmp_path / "g.html"))
    assert result.exit_code == 0, result.output
    page = (tmp_path / "g.html").read_text()
    assert '"mode":"static"' in page and seed_run.run_id in page


def one_line_error(result, text):
    """A bad value: one line. (A wrong combination of options is a usage error: Click's usage
    lines, then the one line.)"""
    lines = result.output.strip().splitlines()
    if result.exit_code == 2:
        lines = lines[-1:]
    assert result.exit_code in (1, 2) and "Traceback" not in result.output
    assert len(lines) == 1 and text in lines[0], result.output


@pytest.mark.parametrize(
    "args,message",
    [
        (['"{rid}"'], "remove the quotes"),
        (["x/{rid}"], "looks like a path"),
        (["feedfeedfeedfeedfeed"], "no successful run"),
        (["{rid}", "--static"], "--static needs -o FILE"),
        (["{rid}", "-o", "x.html"], "add --static"),
        (["{rid}", "--static", "-o", "/proc/x.html"], "cannot write /proc/x.html"),
        (["{rid}", "--port", "70000"], "0 (any free port) to 65535"),
    ],
)
def test_bad_input_gets_one_line(seed_run, args, message):
    one_line_error(view(seed_run, *(a.format(rid=seed_run.run_id) for a in args)), message)
