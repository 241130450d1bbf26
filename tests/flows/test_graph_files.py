"""Graph files and graph directories (the layout circuit-tracer's local server reads)."""

import json

import pytest

from circuitflow.flows.graph_files import write_graph_dir, write_graph_file


def doc(slug: str, prompt: str = "p") -> dict:
    return {"metadata": {"slug": slug, "prompt": prompt}, "qParams": {}, "nodes": [], "links": []}


def test_a_directory_indexes_every_graph_once(tmp_path):
    write_graph_dir(doc("a"), tmp_path / "graphs")
    write_graph_dir(doc("b"), tmp_path / "graphs")
    write_graph_dir(doc("a", "again"), tmp_path / "graphs")
    index = json.loads((tmp_path / "graphs" / "graph-metadata.json").read_text())
    assert [(g["slug"], g["prompt"]) for g in index["graphs"]] == [("b", "p"), ("a", "again")]
    assert json.loads((tmp_path / "graphs" / "a.json").read_text()) == doc("a", "again")
    assert sorted(p.name for p in (tmp_path / "graphs").iterdir()) == [
        "a.json",
        "b.json",
        "graph-metadata.json",
    ]  # fmt: skip  (no temporary files left behind)


def test_a_broken_index_is_refused_not_overwritten(tmp_path):
    (tmp_path / "graph-metadata.json").write_text("not json")
    with pytest.raises(ValueError, match="not a graph index"):
        write_graph_dir(doc("a"), tmp_path)
    assert (tmp_path / "graph-metadata.json").read_text() == "not json"


def test_unwritable_places_raise(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        write_graph_file(doc("a"), tmp_path / "file" / "g.json")
    with pytest.raises(IsADirectoryError):
        write_graph_file(doc("a"), tmp_path)
    with pytest.raises(FileExistsError):
        write_graph_dir(doc("a"), tmp_path / "file")
