"""The installed project: one `circuitflow` namespace, a command that works anywhere.

A wheel is built from this checkout and installed, non-editable, into a fresh virtual
environment. The dependencies come from the test environment's site-packages (a path file, so
nothing is downloaded), never this checkout: the command must find its modules and the built-in
model inside the installed package.
"""

import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with circuitflow installed from a wheel; returns its bin directory."""
    root = tmp_path_factory.mktemp("install")
    wheels = root / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", str(wheels), str(REPO)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=True)  # ensurepip: offline
    bin_dir = env_dir / "bin"
    target = subprocess.run(
        [bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    # Dependencies: the test environment's packages, appended after the venv's own.
    (Path(target) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = next(wheels.glob("circuitflow-*.whl"))
    subprocess.run(
        [bin_dir / "python", "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         str(wheel)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return bin_dir


def run_in(bin_dir: Path, where: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PREFECT_API_URL")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    return subprocess.run(
        list(args), cwd=where, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_the_installed_command_attributes_the_builtin_model_from_an_empty_directory(
    installed, tmp_path
):
    empty = tmp_path / "empty"
    empty.mkdir()
    python = str(installed / "python")
    where = run_in(
        installed, empty, python, "-c", "import circuitflow.tasks as t; print(t.__file__)"
    )
    assert where.returncode == 0, where.stderr
    assert str(REPO) not in where.stdout and "site-packages" in where.stdout

    for bare in ("flows", "tasks", "store", "attribution"):
        found = run_in(installed, empty, python, "-c", f"import {bare}")
        assert found.returncode != 0 and "No module named" in found.stderr, bare

    done = run_in(
        installed, empty, str(installed / "circuitflow"), "attribute",
        "The capital of the state containing Dallas is", "--json", "--store", str(tmp_path / "s"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["top_logits"][0]["token"].strip() == "Austin"
    assert report["n_nodes_kept"] > 0

    # The viewer's page (its assets are package data) is written from the installed package.
    page = run_in(
        installed, empty, str(installed / "circuitflow"), "view", report["run_id"], "--static",
        "-o", str(tmp_path / "page.html"), "--store", str(tmp_path / "s"),
    )  # fmt: skip
    assert page.returncode == 0, page.stderr[-3000:]
    assert "use strict" in (tmp_path / "page.html").read_text()
    assert not any(empty.iterdir()) or (empty / ".circuitflow").is_dir()  # no stray files
