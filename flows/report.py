"""A finished run as people (and `--json`) see it, read back from the catalog and the store.

The numbers come from the run's catalog rows, so what the command prints is what SQL returns.
"""

from __future__ import annotations

from circuitflow.tasks import RunOutcome, Setup, open_store


def run_report(setup: Setup, outcome: RunOutcome, top_features: int = 10) -> dict:
    """Summary of a recorded run: logits, counts, scores, top features, stages, graph file."""
    store = open_store(setup.store)
    catalog = store.catalog
    run = catalog.read("runs", outcome.run_id).to_pylist()[0]
    logits = sorted(catalog.read("logits", outcome.run_id).to_pylist(), key=lambda r: r["rank"])
    nodes = catalog.read("nodes", outcome.run_id).to_pylist()
    features = sorted(
        (n for n in nodes if n["kind"] == "feature"), key=lambda n: n["influence"], reverse=True
    )[:top_features]
    exported = next(s for s in outcome.stages if s.stage == "export")
    return {
        "run_id": outcome.run_id,
        "status": run["status"],
        "prompt": run["prompt"],
        "model": setup.model_label,
        "transcoders": setup.transcoders_label,
        "top_logits": [
            {k: r.get(k) for k in ("token", "token_id", "prob", "name", "kind", "value", "weight")}
            for r in logits
        ],
        "n_tokens": run["n_tokens"],
        "n_active_features": run["n_active_features"],
        "n_selected_features": run["n_selected_features"],
        "max_feature_nodes": run["max_feature_nodes"],
        "feature_budget_cut": run["n_selected_features"] < run["n_active_features"],
        "n_nodes_kept": run["n_nodes_kept"],
        "n_edges_kept": run["n_edges_kept"],
        "node_threshold": run["node_threshold"],
        "edge_threshold": run["edge_threshold"],
        "replacement_score": run["replacement_score"],
        "completeness_score": run["completeness_score"],
        "top_features": [
            {k: f[k] for k in ("layer", "pos", "token", "feature", "activation", "influence")}
            for f in features
        ],
        "stages": [
            {"stage": s.stage, "status": s.status, "seconds": s.seconds, "key": s.key}
            for s in outcome.stages
        ],
        "graph_json": store.open("export", exported.key).blob_path("graph_json"),
        "store": setup.store,
    }
