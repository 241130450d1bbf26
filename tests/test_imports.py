"""The import graph: no cycle, packages import one way, and the committed picture is current."""

import subprocess
import sys
from pathlib import Path

from scripts.import_graph import find_cycle, import_graph

REPO = Path(__file__).resolve().parents[1]

# Which packages each package may import (DESIGN.md: flows -> tasks -> (store, attribution);
# training sits above attribution; models is data).
ALLOWED = {
    "attribution": set(),
    "store": set(),
    "models": set(),
    "training": {"attribution"},
    "tasks": {"attribution", "store", "models", "training"},
    "flows": {"tasks", "store", "attribution", "training"},
}


def package(module: str) -> str:
    return module.split(".")[1]


def test_no_module_imports_itself_through_others():
    assert find_cycle(import_graph()) is None


def test_packages_import_one_way():
    wrong = [
        f"{source} imports {target}"
        for source, targets in import_graph().items()
        for target in targets
        if package(target) != package(source) and package(target) not in ALLOWED[package(source)]
    ]
    assert wrong == []


def test_the_committed_picture_is_current():
    done = subprocess.run(
        [sys.executable, "scripts/import_graph.py", "--check"],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout


def test_a_cycle_is_found():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
