"""The analysis points of attribution: where each fires, and the values it offers.

An analysis point is a named place inside the attribution code where attached functions may look
at the local values (see `analysis.py` for attaching them). This module is the documentation of
every point, kept as data so that tests can check that each point fires with exactly these values
and shapes, and `docs/analysis-points.md` is generated from it.

Shapes use these dimensions:

    n_pos         prompt tokens, the start token included
    n_layers      layers of the model;  d_model, d_vocab: its widths
    d_transcoder  features per layer of the transcoders
    n_active      active features, every layer and position (position 0 excluded)
    n_out         decoder vectors of the active features: n_active for per-layer transcoders; a
                  cross-layer feature of layer i writes to n_layers - i layers, one vector each
    n_logits      target logits
    n_cols        columns of the edge rows: n_active + (n_layers + 1) * n_pos (features, errors
                  layer-major, tokens); a logit's node number in `row_nodes` is n_cols + its rank
    n_rows        rows computed: n_logits + n_sel
    n_sel         feature nodes: the features visited (all of them without a budget)
    n_queue       features queued for the next batches after a ranking refresh
    N             nodes of the graph: n_sel + (n_layers + 1) * n_pos + n_logits
    M             nodes of the matrix an influence series runs on: N in phase "node", n_kept in
                  phase "edge"
    n_kept        nodes kept by node pruning (before edge pruning)
    n_steps       terms of an influence series
    n_edges       edges kept by pruning

dtype "float" means the model's dtype (float32 for the built-in model); a shape of None means a
plain Python value (int, float, str, list).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Value:
    """One value a point offers: its name, shape (dimension names or sizes), dtype, meaning."""

    name: str
    shape: tuple[str | int, ...] | None
    dtype: str
    doc: str


@dataclass(frozen=True)
class Point:
    """A named analysis point.

    fired_by: the function that fires it;  when: when it fires, in words
    seed:     the seed notebook's injected analysis point(s) that it replaces
    """

    name: str
    fired_by: str
    when: str
    values: tuple[Value, ...]
    seed: str = ""

    def value(self, name: str) -> Value:
        return next(v for v in self.values if v.name == name)


def _v(name: str, shape: tuple[str | int, ...] | None, dtype: str, doc: str) -> Value:
    return Value(name, shape, dtype, doc)


PHASE = _v("phase", None, "str", '"node" (the whole graph) or "edge" (the node-pruned graph)')

DECLARED: tuple[Point, ...] = (
    Point(
        "precompute_end",
        "attribution.precompute.precompute",
        "after the forward pass: every node found, errors and reconstruction computed",
        (
            _v("tokens", ("n_pos",), "int64", "prompt token ids, start token first"),
            _v("logits", ("n_pos", "d_vocab"), "float", "the model's logits at every position"),
            _v(
                "mlp_inputs",
                ("n_layers", "n_pos", "d_model"),
                "float",
                "the residual at each layer's feature input hook (what the transcoders read)",
            ),
            _v(
                "mlp_outputs",
                ("n_layers", "n_pos", "d_model"),
                "float",
                "the true MLP outputs at each layer's feature output hook",
            ),
            _v(
                "active_features",
                ("n_active", 3),
                "int64",
                "(layer, position, feature) of every active feature, lexicographic",
            ),
            _v("activation_values", ("n_active",), "float", "their activations"),
            _v(
                "activation_matrix",
                ("n_layers", "n_pos", "d_transcoder"),
                "float",
                "the same as a sparse COO tensor (the seed's ctx.activation_matrix)",
            ),
            _v(
                "encoder_vectors",
                ("n_active", "d_model"),
                "float",
                "each active feature's encoder row: the vector its edge row injects",
            ),
            _v(
                "decoder_vectors",
                ("n_out", "d_model"),
                "float",
                "activation x decoder row: what each active feature writes, per output layer",
            ),
            _v("decoder_layers", ("n_out",), "int64", "the output layer of each decoder vector"),
            _v(
                "decoder_features",
                ("n_out",),
                "int64",
                "the row of active_features each decoder vector belongs to (the seed's "
                "encoder_to_decoder_map)",
            ),
            _v(
                "reconstruction",
                ("n_layers", "n_pos", "d_model"),
                "float",
                "the transcoders' prediction of every MLP output",
            ),
            _v(
                "error_vectors",
                ("n_layers", "n_pos", "d_model"),
                "float",
                "MLP output minus reconstruction (zero at position 0)",
            ),
            _v("token_vectors", ("n_pos", "d_model"), "float", "token embeddings at hook_embed"),
            _v("row_size", None, "int", "n_cols: the length of an edge row"),
        ),
        "ap_setup_attribution_end, ap_compute_attribution_end, ap_precomputation_phase_end",
    ),
    Point(
        "targets_end",
        "attribution.attribute.choose_targets",
        "after the logit targets are chosen and their vectors built",
        (
            _v("mode", None, "str", '"salient" (most probable tokens) or "explicit" (given)'),
            _v("last_logits", ("d_vocab",), "float", "logits at the last position"),
            _v("token_ids", ("n_logits",), "int64", "the target tokens"),
            _v("probabilities", ("n_logits",), "float32", "their probabilities (logit weights)"),
            _v(
                "vectors",
                ("n_logits", "d_model"),
                "float",
                "demeaned unembedding columns: what each logit row injects",
            ),
            _v("token_strings", None, "list[str]", "the decoded target tokens"),
        ),
        "ap_build_input_vectors_end",
    ),
    Point(
        "rows_forward_end",
        "attribution.rows.compute_rows",
        "after the linearised forward pass of the prompt (one copy: backward passes batch targets)",
        (
            _v("batch_size", None, "int", "targets per backward pass"),
            _v(
                "feature_inputs",
                ("n_layers", "n_pos", "d_model"),
                "float",
                "the residual at each feature input site",
            ),
            _v(
                "mlp_outputs",
                ("n_layers", "n_pos", "d_model"),
                "float",
                "each MLP output site, where sources write",
            ),
            _v("embed", ("n_pos", "d_model"), "float", "the embeddings (token sites)"),
            _v(
                "final_residual",
                ("n_pos", "d_model"),
                "float",
                "the final normalised residual, where logit targets read",
            ),
        ),
        "ap_forward_pass_end",
    ),
    Point(
        "rows_logits_end",
        "attribution.rows.compute_rows",
        "after the backward passes from the logit targets",
        (
            _v(
                "logit_rows",
                ("n_logits", "n_cols"),
                "float32",
                "edges into each logit from every feature, error and token",
            ),
            _v("logit_vectors", ("n_logits", "d_model"), "float", "the injected vectors"),
        ),
        "ap_compute_logit_attribution_end",
    ),
    Point(
        "rows_feature_ranking",
        "attribution.rows.compute_rows",
        "with a feature budget only: each time the features are ranked again",
        (
            _v(
                "estimate",
                ("n_cols + n_logits",),
                "float32",
                "every node's influence estimated from the rows computed so far",
            ),
            _v(
                "queue",
                ("n_queue",),
                "int64",
                "the features (rows of active_features) to visit next, in order",
            ),
            _v("n_visited", None, "int", "features visited before this ranking"),
        ),
    ),
    Point(
        "rows_features_end",
        "attribution.rows.compute_rows",
        "after the last feature row: the whole edge matrix",
        (
            _v(
                "matrix",
                ("n_rows", "n_cols"),
                "float32",
                "every computed row (logits first, then features in visiting order)",
            ),
            _v(
                "row_nodes",
                ("n_rows",),
                "int64",
                "each row's node: a row of active_features, or n_cols + rank for a logit",
            ),
            _v(
                "selected_features",
                ("n_sel",),
                "int64",
                "features that became nodes (rows of active_features, ascending)",
            ),
            _v("n_visited", None, "int", "features visited"),
        ),
        "ap_compute_feature_attributions_end",
    ),
    Point(
        "graph_assembled",
        "attribution.graph.assemble",
        "after the rows are placed into the square adjacency",
        (
            _v("adjacency", ("N", "N"), "float32", "rows are targets, columns sources"),
            _v(
                "selected_features",
                ("n_sel",),
                "int64",
                "feature nodes, as rows of active_features",
            ),
            _v("logit_token_ids", ("n_logits",), "int64", "the logit nodes' tokens"),
            _v("logit_probabilities", ("n_logits",), "float32", "their weights"),
            _v("error_start", None, "int", "first error node"),
            _v("token_start", None, "int", "first token node"),
            _v("logit_start", None, "int", "first logit node"),
        ),
        "ap_graph_creation_start",
    ),
    Point(
        "influence_start",
        "attribution.influence.influence_series",
        'before the influence series of phase "node" (influence stage) or "edge" (prune stage)',
        (
            PHASE,
            _v(
                "matrix",
                ("M", "M"),
                "float32",
                "the adjacency the series runs on, signed and not normalised; normalised it is "
                "|matrix| / row_sums[:, None]",
            ),
            _v("row_sums", ("M",), "float32", "sum of |matrix| along each row (floored)"),
            _v("weights", ("M",), "float32", "logit weights: probabilities on the logit nodes"),
        ),
        "ap_node_compute_influence_init",
    ),
    Point(
        "influence_iteration",
        "attribution.influence.influence_series",
        "after each term of the influence series w A + w A^2 + ...",
        (
            PHASE,
            _v("iteration", None, "int", "0-based; the term carries paths of iteration + 1 edges"),
            _v("term", ("M",), "float32", "this term: the influence carried by those paths"),
            _v("total", ("M",), "float32", "the influence summed so far, this term included"),
        ),
        "ap_node_compute_influence (trace_dict)",
    ),
    Point(
        "influence_end",
        "attribution.influence.influence_series",
        "when the series has converged (the next term is zero)",
        (
            PHASE,
            _v("influence", ("M",), "float32", "every node's influence on the logits"),
            _v("trace", ("n_steps", "M"), "float32", "every term, stacked"),
            _v("n_steps", None, "int", "terms in the series"),
        ),
        "ap_node_compute_influence (iteration)",
    ),
    Point(
        "prune_nodes_end",
        "attribution.prune.prune_with_details",
        "after the nodes are pruned by influence",
        (
            _v("influence", ("N",), "float32", "every node's influence"),
            _v("node_threshold", None, "float", "the share of influence to keep"),
            _v("cut", None, "float", "the influence at which that share is reached"),
            _v("node_mask", ("N",), "bool", "nodes kept (tokens and logits always)"),
            _v("kept", ("n_kept",), "int64", "their indices: the rows of the next points"),
        ),
        "ap_graph_prune_node_influence_end",
    ),
    Point(
        "prune_edges_raw",
        "attribution.prune.prune_with_details",
        "edge scores before normalisation: the node-pruned adjacency",
        (
            _v("matrix", ("n_kept", "n_kept"), "float32", "adjacency among kept nodes, signed"),
            _v("weights", ("n_kept",), "float32", "their logit weights"),
            _v("kept", ("n_kept",), "int64", "the graph nodes of its rows and columns"),
        ),
        "(new: the edge pruning's input, before any normalisation)",
    ),
    Point(
        "prune_edge_scores",
        "attribution.prune.prune_with_details",
        "edge scores after normalisation, before the edge mask",
        (
            _v(
                "scores",
                ("n_kept", "n_kept"),
                "float32",
                "|matrix| / row sums x (target influence + target logit weight)",
            ),
            _v("influence", ("n_kept",), "float32", "influence in the node-pruned graph"),
            _v("edge_threshold", None, "float", "the share of total score to keep"),
            _v("cut", None, "float", "the score at which that share is reached"),
        ),
        "ap_graph_prune_edge_influence_post_norm, ap_graph_prune_edge_influence_pre_mask",
    ),
    Point(
        "prune_edges_end",
        "attribution.prune.prune_with_details",
        "after the edge mask and the clean-up of nodes left without edges",
        (
            _v("node_mask", ("N",), "bool", "nodes kept"),
            _v("edge_mask", ("N", "N"), "bool", "edges kept (rows targets, columns sources)"),
            _v("kept_edges", ("n_edges", 2), "int64", "(target, source) of kept edges"),
            _v("edge_scores", ("n_edges",), "float32", "their scores"),
            _v(
                "cumulative_scores",
                ("N",),
                "float32",
                "share of influence held by nodes at least as influential",
            ),
        ),
        "ap_graph_prune_edge_influence_end",
    ),
)

POINTS: dict[str, Point] = {point.name: point for point in DECLARED}
