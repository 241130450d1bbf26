"""Circuits across runs, in SQL over the catalog: what many graphs share, and which graphs agree.

Every run's `nodes` table marks the nodes its pruning kept, and pruning keeps only nodes on a
path to the logits, so "lies on a kept path" is `nodes.kept`. A feature is the same feature in
every graph of one transcoder set: (transcoders_digest, layer, feature). So:

- `circuit_features_sql`: for each feature, in how many of the chosen runs it was kept, its
  mean influence there (summed over its positions in a graph, then averaged over graphs), its
  mean activation, the prompts it appears in and its label (from `features`, where dashboards
  exist), most shared first;
- `circuit_edges_sql`: the same for kept edges, with each end named position-free (a feature by
  layer and feature, an embedding or logit by its token, an error node by its layer);
- `similar_runs_sql`: the runs whose kept features overlap a given run's most, weighted by
  influence (weighted Jaccard: the sum over features of the smaller influence, over the sum of
  the larger).

`where` is a condition on the `runs` table (`prompt LIKE '%Texas%'`, `node_threshold = 0.8`)
that chooses the runs; the queries run in the catalog's read-only SQL sandbox.
"""

from __future__ import annotations

from circuitflow.store import QueryError


def _chosen(where: str | None) -> str:
    condition = f"({where})" if where and where.strip() else "TRUE"
    return (
        "chosen AS (SELECT run_id, prompt, transcoders_digest FROM runs "
        f"WHERE status = 'ok' AND {condition})"
    )


def _labels(store_tables: set[str]) -> str:
    if "features" in store_tables:
        return (
            "names AS (SELECT transcoders_digest, layer, feature, "
            "arg_max(label, created_at) AS label FROM features GROUP BY ALL)"
        )
    return (
        "names AS (SELECT NULL::VARCHAR AS transcoders_digest, NULL::BIGINT AS layer, "
        "NULL::BIGINT AS feature, NULL::VARCHAR AS label WHERE FALSE)"
    )


def circuit_features_sql(where: str | None, limit: int, tables: set[str]) -> str:
    return f"""
WITH {_chosen(where)}, {_labels(tables)},
per_graph AS (
  SELECT c.transcoders_digest, n.layer, n.feature, n.run_id, any_value(c.prompt) AS prompt,
         sum(n.influence) AS influence, max(n.activation) AS activation
  FROM nodes n JOIN chosen c USING (run_id)
  WHERE n.kept AND n.kind = 'feature'
  GROUP BY c.transcoders_digest, n.layer, n.feature, n.run_id
)
SELECT p.layer, p.feature, count(*) AS n_graphs, (SELECT count(*) FROM chosen) AS of_graphs,
       avg(p.influence) AS mean_influence, avg(p.activation) AS mean_activation,
       any_value(m.label) AS label, list(p.prompt ORDER BY p.influence DESC) AS prompts,
       p.transcoders_digest
FROM per_graph p LEFT JOIN names m
  ON m.transcoders_digest = p.transcoders_digest AND m.layer = p.layer AND m.feature = p.feature
GROUP BY p.transcoders_digest, p.layer, p.feature
ORDER BY n_graphs DESC, mean_influence DESC, p.layer, p.feature
LIMIT {int(limit)}
"""


_END = """CASE {n}.kind
    WHEN 'feature' THEN 'L' || {n}.layer || ' F' || {n}.feature
    WHEN 'error' THEN 'error L' || {n}.layer
    WHEN 'token' THEN 'embed ' || {n}.token
    ELSE 'logit ' || {n}.token END"""


def circuit_edges_sql(where: str | None, limit: int) -> str:
    return f"""
WITH {_chosen(where)},
kept_edges AS (
  SELECT e.run_id, c.prompt, {_END.format(n="s")} AS source, {_END.format(n="t")} AS target,
         sum(e.weight) AS weight
  FROM edges e JOIN chosen c USING (run_id)
  JOIN nodes s ON s.run_id = e.run_id AND s.node_id = e.source
  JOIN nodes t ON t.run_id = e.run_id AND t.node_id = e.target
  GROUP BY ALL
)
SELECT source, target, count(DISTINCT run_id) AS n_graphs,
       (SELECT count(*) FROM chosen) AS of_graphs, avg(weight) AS mean_weight,
       list(DISTINCT prompt) AS prompts
FROM kept_edges
GROUP BY source, target
ORDER BY n_graphs DESC, abs(mean_weight) DESC, source, target
LIMIT {int(limit)}
"""


def similar_runs_sql(run_id: str, where: str | None, limit: int) -> str:
    if not run_id.replace("-", "").isalnum():
        raise QueryError(f"{run_id!r} is not a run id")
    return f"""
WITH {_chosen(where)},
weights AS (
  SELECT n.run_id, n.layer, n.feature, sum(n.influence) AS w
  FROM nodes n WHERE n.kept AND n.kind = 'feature'
    AND (n.run_id = '{run_id}' OR n.run_id IN (SELECT run_id FROM chosen))
  GROUP BY ALL
),
mine AS (SELECT layer, feature, w FROM weights WHERE run_id = '{run_id}'),
totals AS (SELECT run_id, sum(w) AS total FROM weights GROUP BY run_id),
shared AS (
  SELECT o.run_id, sum(least(o.w, m.w)) AS overlap, count(*) AS n_shared
  FROM weights o JOIN mine m USING (layer, feature)
  WHERE o.run_id <> '{run_id}' GROUP BY o.run_id
)
SELECT s.run_id, r.prompt, s.overlap / (t.total + (SELECT sum(w) FROM mine) - s.overlap)
       AS similarity, s.n_shared
FROM shared s JOIN totals t USING (run_id) JOIN runs r USING (run_id)
ORDER BY similarity DESC, s.run_id
LIMIT {int(limit)}
"""
