"""The pipeline declaration: a new stage is one declaration and its compute function."""

from dataclasses import dataclass

import pyarrow as pa
import pytest
import torch

from circuitflow.attribution.serialize import Record
from circuitflow.tasks import (
    PIPELINE,
    CatalogTable,
    RunRequest,
    Setup,
    Stage,
    catalog_tables,
    open_store,
)
from circuitflow.tasks.catalog import PipelineError, check_pipeline
from circuitflow.tasks.context import RunContext
from circuitflow.tasks.execute import execute_run


@dataclass
class TopNodes(Record):
    """The three most influential kept nodes of a pruned graph."""

    indices: torch.Tensor  # (3,) int64
    influence: torch.Tensor  # (3,)
    prompt: str


def top_nodes(run: RunContext) -> TopNodes:
    kept = run.record("prune").node_mask
    influence = run.record("influence").influence * kept
    values, indices = influence.topk(3)
    return TopNodes(indices, values, run.prompt)


def top_node_entries(run: RunContext) -> list[dict]:
    record, ids = run.record("top_nodes"), run.graph.node_ids()
    return [
        {"node_id": ids[i], "influence": v}
        for i, v in zip(record.indices.tolist(), record.influence.tolist(), strict=True)
    ]


TOP_NODES = Stage(
    name="top_nodes",
    version=1,
    inputs=("prune",),
    params=("prompt",),  # its own key input: the text (prune is keyed by the token digest)
    record=TopNodes,
    compute=top_nodes,
    tables=(CatalogTable("top_nodes", (("node_id", pa.string()), ("influence", pa.float64())),
                         top_node_entries),),
)  # fmt: skip
EXTENDED = [*PIPELINE, TOP_NODES]


@pytest.fixture
def setup(toy_model_dir, tmp_path):
    return Setup.resolve(str(toy_model_dir), "plt", str(tmp_path / "store"))


def status(outcome) -> dict[str, str]:
    return {s.stage: s.status for s in outcome.stages}


def test_an_extra_stage_keys_caches_and_fills_its_table(setup):
    first = execute_run(setup, RunRequest("w3 w1 w4 w1 w5"), pipeline=EXTENDED)
    assert first.status == "ok" and status(first)["top_nodes"] == "computed"

    again = execute_run(setup, RunRequest("w3 w1 w4 w1 w5"), pipeline=EXTENDED)
    assert set(status(again).values()) == {"cached"}

    # Same tokens, other text: everything from precompute to prune is shared, but the extra
    # stage's own parameter (the text) changed, so its key did and it computes.
    spaced = execute_run(setup, RunRequest("w3  w1 w4 w1 w5 "), pipeline=EXTENDED)
    assert status(spaced)["prune"] == "cached" and status(spaced)["top_nodes"] == "computed"
    keys = {o.run_id: next(s.key for s in o.stages if s.stage == "top_nodes")
            for o in (first, spaced)}  # fmt: skip
    assert len(set(keys.values())) == 2

    store = open_store(setup.store, EXTENDED)
    rows = store.query(
        "SELECT t.run_id, count(*) AS n, bool_and(n.kept) AS all_kept, max(t.influence) AS top, "
        "(SELECT max(influence) FROM nodes m WHERE m.run_id = t.run_id AND m.kept) AS best "
        "FROM top_nodes t JOIN nodes n ON n.run_id = t.run_id AND n.node_id = t.node_id "
        "GROUP BY t.run_id ORDER BY t.run_id"
    ).to_pylist()
    assert sorted(r["run_id"] for r in rows) == sorted({first.run_id, spaced.run_id})
    for row in rows:
        assert row["n"] == 3 and row["all_kept"]
        assert row["top"] == pytest.approx(row["best"])


def test_the_extra_table_is_registered_and_the_default_pipeline_is_untouched():
    assert "top_nodes" in catalog_tables(EXTENDED)
    assert "top_nodes" not in catalog_tables(PIPELINE)
    assert [s.name for s in PIPELINE] == [
        "tokenize", "precompute", "targets", "rows", "influence", "prune", "export", "validate",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "change,message",
    [
        ({"inputs": ("nowhere",)}, "reads 'nowhere', which does not run before it"),
        ({"params": ("speed",)}, "unknown setting 'speed'"),
        ({"name": "prune"}, "two stages are named 'prune'"),
        ({"identities": ("weather",)}, "unknown identity 'weather'"),
        ({"when": "batch_size"}, "runs when 'batch_size', which is not a switch"),
        ({"inputs": ("validate",)}, "reads 'validate', which runs only when 'validate'"),
    ],
)
def test_bad_declarations_are_refused(change, message):
    from dataclasses import replace

    with pytest.raises(PipelineError, match=message):
        check_pipeline([*PIPELINE, replace(TOP_NODES, **change)])
