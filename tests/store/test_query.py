"""SQL over the catalog: views across runs, and a sandbox that only reads the store."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from circuitflow.store import QueryError, QuerySession, Store
from tests.store.tables import TABLES


@pytest.fixture
def filled(store: Store) -> Store:
    for i in range(3):
        store.catalog.write_run(
            f"run-{i}",
            {
                "nodes": {
                    "node_id": [f"n{j}" for j in range(4)],
                    "kind": ["feature", "feature", "token", "logit"],
                    "influence": [0.1 * (i + 1), 0.2, 0.3, 0.4],
                },
                "runs": [{"status": "ok", "prompt": f"prompt {i}"}],
            },
        )
    return store


def test_views_query_across_runs(filled: Store) -> None:
    rows = filled.query(
        "SELECT kind, count(*) AS n, round(sum(influence), 6) AS total "
        "FROM nodes GROUP BY kind ORDER BY kind"
    ).to_pylist()
    assert rows == [
        {"kind": "feature", "n": 6, "total": 1.2},
        {"kind": "logit", "n": 3, "total": 1.2},
        {"kind": "token", "n": 3, "total": 0.9},
    ]
    joined = filled.query(
        "SELECT r.prompt, count(*) AS n FROM runs r JOIN nodes USING (run_id) "
        "WHERE run_id = 'run-1' GROUP BY ALL"
    )
    assert joined.to_pylist() == [{"prompt": "prompt 1", "n": 4}]


def test_views_expose_exactly_the_schema_columns(filled: Store) -> None:
    with QuerySession(filled.catalog) as session:
        for table, spec in TABLES.items():  # empty tables included
            schema = spec.schema
            described = session.arrow(f"DESCRIBE {table}")
            assert described["column_name"].to_pylist() == schema.names
            assert session.arrow(f"SELECT * FROM {table} LIMIT 0").num_columns == len(schema)


def test_store_files_can_be_read_directly(filled: Store) -> None:
    pattern = f"{filled.root}/tables/batches/*/nodes.parquet"
    n = filled.query(f"SELECT count(*) AS n FROM read_parquet('{pattern}')").to_pylist()
    assert n == [{"n": 12}]


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("COPY (SELECT 1) TO '{outside}/out.csv'", "not COPY"),
        ("COPY nodes TO '{root}/tables/nodes/shard=0/evil.parquet'", "not COPY"),
        ("EXPORT DATABASE '{outside}/export'", "not EXPORT"),
        ("ATTACH '{outside}/other.duckdb' AS other", "not ATTACH"),
        ("ATTACH '{root}/inside.duckdb' AS other", "not ATTACH"),
        ("CREATE TABLE t AS SELECT 1", "not CREATE"),
        ("INSERT INTO nodes (run_id) VALUES ('x')", "not INSERT"),
        ("SET enable_external_access = true", "not SET"),
        ("INSTALL httpfs", "not"),
        ("SELECT 1; SELECT 2", "exactly one"),
        ("SELECT * FROM read_csv('/etc/passwd')", "only read the store"),
        ("SELECT * FROM read_text('{outside}/secret.txt')", "only read the store"),
        ("SELECT * FROM read_text('{root}/../secret.txt')", "only read the store"),
        ("SELECT * FROM read_parquet('{outside}/other.parquet')", "only read the store"),
        ("SELECT * FROM glob('/*')", "only read the store"),
    ],
)
def test_sandbox_refuses_writes_attaches_and_outside_reads(
    filled: Store, tmp_path: Path, sql: str, message: str
) -> None:
    outside = tmp_path  # the store lives in tmp_path/store
    (outside / "secret.txt").write_text("secret")
    pq.write_table(pa.table({"x": [1]}), outside / "other.parquet")
    before = sorted(p for p in tmp_path.rglob("*"))
    with pytest.raises(QueryError, match=message):
        filled.query(sql.format(outside=outside, root=filled.root))
    assert sorted(p for p in tmp_path.rglob("*")) == before


def test_invalid_sql_is_a_query_error(filled: Store) -> None:
    with pytest.raises(QueryError, match="invalid SQL|syntax"):
        filled.query("SELEC 1")
    with pytest.raises(QueryError, match="nodez"):
        filled.query("SELECT * FROM nodez")
