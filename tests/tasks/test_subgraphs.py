"""Saved subgraphs: one catalog row per run and name, kept across saves, queryable in SQL."""

import threading

import pytest

from circuitflow.tasks.subgraphs import (
    Subgraph,
    SubgraphError,
    pick,
    save_subgraph,
    saved_subgraphs,
)


def test_saves_accumulate_replace_by_name_and_join_with_nodes(seed_run):
    run = seed_run.open()
    kept = (
        run.store.query(
            f"SELECT node_id FROM nodes WHERE run_id = '{run.run_id}' AND kept "
            "AND kind = 'feature' ORDER BY influence DESC LIMIT 3"
        )
        .column("node_id")
        .to_pylist()
    )
    save_subgraph(run.store, run.run_id, Subgraph("first", tuple(kept[:2])))
    save_subgraph(run.store, run.run_id, Subgraph("second", tuple(kept), (("top", *kept[:2]),)))
    again = save_subgraph(run.store, run.run_id, Subgraph("first", (kept[2],), (), kept[2]))
    assert [s.name for s in again] == ["second", "first"]  # oldest first; "first" re-saved
    assert again[1] == Subgraph("first", (kept[2],), (), kept[2])
    assert again[0].supernodes == (("top", *kept[:2]),)

    rows = run.store.query(
        "SELECT s.name, n.node_id, n.kept FROM saved_subgraphs s, unnest(s.pinned_ids) AS p(id) "
        "JOIN nodes n ON n.run_id = s.run_id AND n.node_id = p.id ORDER BY s.name, n.node_id"
    ).to_pylist()
    assert [(r["name"], r["node_id"]) for r in rows] == sorted(
        [("first", kept[2])] + [("second", i) for i in kept]
    )
    assert all(r["kept"] for r in rows)


def test_concurrent_saves_lose_nothing(seed_run):
    run = seed_run.open()
    names = [f"view-{i}" for i in range(8)]
    threads = [
        threading.Thread(target=save_subgraph, args=(run.store, run.run_id, Subgraph(name)))
        for name in names
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(s.name for s in saved_subgraphs(run.store, run.run_id)) == names


@pytest.mark.parametrize(
    "subgraph,message",
    [
        (Subgraph(" "), "needs a name"),
        (Subgraph("x" * 101), "needs a name"),
        (Subgraph("ok", supernodes=(("lonely",),)), "with a name and members"),
        (Subgraph("ok", ("1_2_3", "nope")), "not nodes of this run's graph: nope"),
    ],
)
def test_bad_subgraphs_are_refused(subgraph, message):
    with pytest.raises(SubgraphError, match=message):
        subgraph.check({"1_2_3"})


def test_pick_takes_the_named_or_the_newest():
    saved = [Subgraph("a"), Subgraph("b")]
    assert pick(saved, None).name == "b" and pick(saved, "a").name == "a"
    assert pick([], None) is None
    with pytest.raises(SubgraphError, match="no saved subgraph 'c'.*'a', 'b'"):
        pick(saved, "c")
