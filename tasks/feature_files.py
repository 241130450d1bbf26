"""Per-feature JSON files in the format circuit-tracer's and Neuronpedia's graph frontends fetch.

Those frontends show a hovered feature's details by fetching `<base>/<index>.json`, where
`<base>` is the graph's `metadata.feature_details.feature_json_base_url` (Neuronpedia) or the
scan's feature folder (circuit-tracer), and `<index>` is the node's `feature` field: the Cantor
pairing of layer and feature. Each file holds (circuit-tracer's `feature_models.Model`):

    transcoder_id, index, act_min, act_max, activation_frequency,
    quantile_values, histogram (counts of positive activations per bin),
    top_logits, bottom_logits (tokens),
    examples_quantiles: [{quantile_name, examples: [{tokens, tokens_acts_list,
                                                     train_token_ind, is_repeated_datapoint}]}]
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from circuitflow.tasks.features import QUANTILES, Dashboards


def cantor(layer: int, feature: int) -> int:
    """The field's single number for (layer, feature) (a graph node's `feature` field)."""
    return (layer + feature) * (layer + feature + 1) // 2 + feature


def feature_document(dashboards: Dashboards, layer: int, feature: int) -> dict:
    """One feature's file (see the module docs)."""
    s = dashboards.stats
    up, down = dashboards.logits(layer, feature)
    examples = []
    seen: set[tuple[str, ...]] = set()
    for context in dashboards.contexts(layer, feature):
        text = tuple(context["tokens"])
        examples.append(
            {
                "tokens": context["tokens"],
                "tokens_acts_list": context["acts"],
                "train_token_ind": context["marked"],
                "is_repeated_datapoint": text in seen,
            }
        )
        seen.add(text)
    return {
        "transcoder_id": f"{dashboards.info['transcoders']}/{layer}",
        "index": cantor(layer, feature),
        "layer": layer,
        "feature": feature,
        "examples_quantiles": [{"quantile_name": "Top activations", "examples": examples}],
        "top_logits": up,
        "bottom_logits": down,
        "act_min": 0.0,
        "act_max": float(s.act_max[layer, feature]),
        "quantile_values": s.quantiles(layer, feature, QUANTILES),
        "histogram": [float(c) for c in s.histogram[layer, feature].tolist()],
        "activation_frequency": float(s.frequency[layer, feature]),
    }


def write_feature_files(dashboards: Dashboards, directory: str | os.PathLike) -> int:
    """Write `<directory>/<index>.json` for every feature that was ever active; returns how
    many files were written."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    count = dashboards.stats.count
    written = 0
    for layer, feature in count.nonzero().tolist():
        doc = feature_document(dashboards, layer, feature)
        path = out / f"{doc['index']}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc))
        tmp.replace(path)
        written += 1
    return written
