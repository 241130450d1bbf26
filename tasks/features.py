"""Feature dashboards in the store: computed in chunks, merged, and listed in the `features` table.

A `DashboardJob` is one model, one transcoder set, one corpus and the dashboard settings. Its
identity (and every stored key) comes from the model and transcoder digests, the corpus digest
and the settings, so the same job again costs nothing and any change computes anew:

    feature_chunk  one object per chunk of documents: `FeatureStats` of those documents
    features       the merged statistics, the direct logit effects, and the token strings

A chunk is computed only when the store lacks it, so an interrupted job resumes where it
stopped, and chunks can run on several workers at once (`flows.features`). Merging writes the
`features` catalog table: one row per feature, with its frequency, mean activation, automatic
label, and `label` (the newest human label where one exists, else the automatic one; see
`tasks.labels`, which keeps those rows current when a label is set).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch

from circuitflow.attribution.dashboards import (
    DashboardParams,
    FeatureStats,
    LogitEffects,
    batch_stats,
    logit_effects,
)
from circuitflow.store import QueryError, Store, StoredObject, StoreError, stage_key
from circuitflow.tasks.corpus import Corpus
from circuitflow.tasks.feature_table import FEATURES
from circuitflow.tasks.pipeline import open_store
from circuitflow.tasks.runtime import Setup, identity, loaded

VERSION = 1
CHUNK_STAGE, FEATURES_STAGE = "feature_chunk", "features"
LABEL_TOKENS = 3  # activating tokens named in an automatic label
QUANTILES = (0.5, 0.9, 0.99, 0.999)


@dataclass(frozen=True)
class DashboardJob:
    """What to compute dashboards of, and how (see the module docs)."""

    setup: Setup
    corpus: Corpus
    params: DashboardParams = DashboardParams()
    chunk_documents: int = 256

    @cached_property
    def inputs(self) -> dict[str, str]:
        return {
            "model": identity(self.setup, "model"),
            "transcoders": identity(self.setup, "transcoders"),
            "corpus": self.corpus.digest,
        }

    @property
    def key(self) -> str:
        return stage_key(FEATURES_STAGE, VERSION, self.params.to_dict(), self.inputs)

    @property
    def id(self) -> str:
        """The job's id in the catalog (the `run_id` of its `features` rows)."""
        return "features-" + self.key[:16]

    @property
    def n_chunks(self) -> int:
        return -(-len(self.corpus) // self.chunk_documents)

    def chunk_params(self, chunk: int) -> dict[str, Any]:
        return self.params.to_dict() | {"chunk": chunk, "chunk_documents": self.chunk_documents}

    def chunk_key(self, chunk: int) -> str:
        return stage_key(CHUNK_STAGE, VERSION, self.chunk_params(chunk), self.inputs)

    def documents(self, chunk: int) -> tuple[int, tuple[str, ...]]:
        """(index of the first document, the documents) of a chunk."""
        start = chunk * self.chunk_documents
        return start, self.corpus.documents[start : start + self.chunk_documents]


def store_of(job: DashboardJob) -> Store:
    return open_store(job.setup.store)


def chunk_done(job: DashboardJob, chunk: int) -> bool:
    return store_of(job).exists(CHUNK_STAGE, job.chunk_key(chunk))


def tokenize_documents(replacement, documents: tuple[str, ...], n_ctx: int) -> list[torch.Tensor]:
    """Each document as token ids (T,) with the start token first, cut at the context length.

    Unlike a prompt, a document with words the tokenizer does not know is kept (as its unknown
    token): a corpus is read, not judged.
    """
    from circuitflow.attribution.tokens import start_token_id

    tokenizer = replacement.tokenizer
    start = start_token_id(tokenizer)
    out = []
    for text in documents:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][: n_ctx - 1]
        out.append(torch.tensor([start, *ids], dtype=torch.long))
    return out


def compute_chunk(job: DashboardJob, chunk: int) -> str:
    """The chunk's statistics, computed and stored unless the store holds them; its key."""
    store, key = store_of(job), job.chunk_key(chunk)
    if store.exists(CHUNK_STAGE, key):
        return "cached"
    with store.computing(CHUNK_STAGE, key):
        if store.exists(CHUNK_STAGE, key):
            return "cached"
        model = loaded(job.setup)
        replacement = model.replacement
        first, documents = job.documents(chunk)
        tc = replacement.transcoders
        stats = FeatureStats.empty(tc.n_layers, tc.d_transcoder, job.params)
        size = job.params.batch_sequences
        with model.lock:
            sequences = tokenize_documents(replacement, documents, replacement.cfg.n_ctx)
            for start in range(0, len(sequences), size):
                batch = sequences[start : start + size]
                lengths = torch.tensor([len(s) for s in batch])
                tokens = torch.zeros(len(batch), int(lengths.max()), dtype=torch.long)
                for row, seq in enumerate(batch):
                    tokens[row, : len(seq)] = seq
                part = batch_stats(replacement, tokens, lengths, first + start, job.params)
                stats = stats.merge(part)
        _publish(store, CHUNK_STAGE, key, stats, job.chunk_params(chunk), job.inputs,
                 {"retention": "recompute"})  # fmt: skip
    return "computed"


def _publish(store: Store, stage: str, key: str, record, params, inputs, attrs) -> None:
    tensors, meta, files = record.to_parts()
    with store.writer(stage, key, version=VERSION, params=params, inputs=inputs,
                      attrs=attrs | {"record": meta}) as writer:  # fmt: skip
        for name, tensor in tensors.items():
            writer.put_tensor(name, tensor)
        for name, data in files.items():
            writer.put_file(name, data)


def _read_stats(obj: StoredObject) -> FeatureStats:
    tensors = {name: obj.torch(name) for name in obj.tensors}
    return FeatureStats.from_parts(tensors, obj.attrs["record"])


# ------------------------------------------------------------------------------ the dashboards


@dataclass
class Dashboards:
    """A finished job's dashboards, as read back from the store.

    stats: the merged FeatureStats; effects: the direct logit effects; vocab: token id -> text
    for every token the dashboards show; info: the job's model, transcoders and corpus.
    """

    key: str
    stats: FeatureStats
    effects: LogitEffects
    vocab: dict[int, str]
    info: dict[str, Any]

    def token(self, token_id: int) -> str:
        return self.vocab.get(int(token_id), f"<{int(token_id)}>")

    def contexts(self, layer: int, feature: int, limit: int | None = None) -> list[dict]:
        """Top activating contexts, strongest first: tokens, activations, the marked index."""
        s = self.stats
        out = []
        for slot in range(s.top_values.shape[-1]):
            value = float(s.top_values[layer, feature, slot])
            if value <= 0 or (limit is not None and len(out) >= limit):
                break
            ids = s.window_ids[layer, feature, slot].tolist()
            acts = s.window_acts[layer, feature, slot].tolist()
            shown = [i for i, t in enumerate(ids) if t >= 0]
            marked = self.info["params"]["before"] - shown[0]  # the window is centred there
            document, position = s.top_where[layer, feature, slot].tolist()
            out.append(
                {
                    "tokens": [self.token(ids[i]) for i in shown],
                    "acts": [acts[i] for i in shown],
                    "marked": marked,
                    "activation": value,
                    "document": document,
                    "position": position,
                }
            )
        return out

    def logits(self, layer: int, feature: int) -> tuple[list[str], list[str]]:
        """(promoted tokens, suppressed tokens), strongest first."""
        e = self.effects
        up = [self.token(t) for t in e.promoted_ids[layer, feature].tolist()]
        down = [self.token(t) for t in e.suppressed_ids[layer, feature].tolist()]
        return up, down

    def top_tokens(self, layer: int, feature: int) -> list[str]:
        """The activating tokens of its top contexts, by summed activation, distinct."""
        weight: Counter[str] = Counter()
        for context in self.contexts(layer, feature):
            weight[context["tokens"][context["marked"]].strip()] += context["activation"]
        return [token for token, _ in weight.most_common() if token]

    def auto_label(self, layer: int, feature: int) -> str:
        """A short label: its commonest activating tokens, then the logit it promotes most,
        e.g. "Dallas / Houston / Lubbock → Austin"."""
        tokens = self.top_tokens(layer, feature)[:LABEL_TOKENS]
        if not tokens:
            return ""
        promoted = self.logits(layer, feature)[0][:1]
        head = " / ".join(tokens)
        return f"{head} → {promoted[0].strip()}" if promoted else head

    def summary(self, layer: int, feature: int, contexts: int = 5) -> dict:
        """What the viewer shows on hover: statistics, top contexts and logits."""
        s = self.stats
        up, down = self.logits(layer, feature)
        return {
            "frequency": float(s.frequency[layer, feature]),
            "mean_activation": float(s.mean_activation[layer, feature]),
            "max_activation": float(s.act_max[layer, feature]),
            "contexts": self.contexts(layer, feature, contexts),
            "promoted": up[:5],
            "suppressed": down[:5],
            "auto_label": self.auto_label(layer, feature),
        }


def merge_job(job: DashboardJob) -> Dashboards:
    """Merge the chunks (all computed), add logit effects and token strings, store the result
    under the job's key, and write the job's `features` rows; returns the dashboards."""
    store = store_of(job)
    stored = store.get(FEATURES_STAGE, job.key)
    if stored is None:
        with store.computing(FEATURES_STAGE, job.key):
            stored = store.get(FEATURES_STAGE, job.key)
            if stored is None:
                _merge_and_publish(job, store)
                stored = store.open(FEATURES_STAGE, job.key)
    dashboards = read_dashboards(stored)
    if not store.catalog.state().latest.get((FEATURES.name, job.id)):
        write_feature_rows(store, job, dashboards)
    return dashboards


def _merge_and_publish(job: DashboardJob, store: Store) -> None:
    replacement = loaded(job.setup).replacement
    tc = replacement.transcoders
    stats = FeatureStats.empty(tc.n_layers, tc.d_transcoder, job.params)
    for chunk in range(job.n_chunks):
        stats = stats.merge(_read_stats(store.open(CHUNK_STAGE, job.chunk_key(chunk))))
    effects = logit_effects(replacement, job.params.n_logits)
    used = torch.cat([stats.window_ids.flatten(), effects.promoted_ids.flatten(),
                      effects.suppressed_ids.flatten()]).unique()  # fmt: skip
    used = used[used >= 0].tolist()
    vocab = {str(t): replacement.tokenizer.decode([t]) for t in used}
    info = {
        "model": job.setup.model_label,
        "transcoders": job.setup.transcoders_label,
        "corpus": job.corpus.source,
        "n_documents": len(job.corpus),
        "params": job.params.to_dict(),
        **{f"{name}_digest": digest for name, digest in job.inputs.items()},
    }
    tensors, meta, _ = stats.to_parts()
    with store.writer(FEATURES_STAGE, job.key, version=VERSION, params=job.params.to_dict(),
                      inputs=job.inputs, attrs={"record": meta, "info": info,
                                                "retention": "keep"}) as writer:  # fmt: skip
        for name, tensor in tensors.items():
            writer.put_tensor(name, tensor)
        for name, tensor in effects.to_parts()[0].items():
            writer.put_tensor(f"logits_{name}", tensor)
        writer.put_file("vocab", json.dumps(vocab).encode())


def read_dashboards(obj: StoredObject) -> Dashboards:
    """The dashboards stored in a `features` object."""
    tensors = {name: obj.torch(name) for name in obj.tensors}
    stats = FeatureStats.from_parts(
        {n: t for n, t in tensors.items() if not n.startswith("logits_")}, obj.attrs["record"]
    )
    effects = LogitEffects.from_parts(
        {n[len("logits_") :]: t for n, t in tensors.items() if n.startswith("logits_")}, {}
    )
    vocab = {int(k): v for k, v in json.loads(obj.blob("vocab")).items()}
    return Dashboards(obj.key, stats, effects, vocab, dict(obj.attrs["info"]))


def feature_rows(job_info: dict, key: str, dashboards: Dashboards, human: dict) -> list[dict]:
    """The `features` rows of a job: one per feature; `human` maps (layer, feature) to the
    newest human label."""
    s = dashboards.stats
    frequency, mean = s.frequency.tolist(), s.mean_activation.tolist()
    act_max = s.act_max.tolist()
    rows = []
    for layer in range(s.count.shape[0]):
        for feature in range(s.count.shape[1]):
            auto = dashboards.auto_label(layer, feature) if s.count[layer, feature] else ""
            up, down = dashboards.logits(layer, feature)
            rows.append(
                job_info
                | {
                    "layer": layer,
                    "feature": feature,
                    "frequency": frequency[layer][feature],
                    "mean_activation": mean[layer][feature],
                    "max_activation": act_max[layer][feature],
                    "top_tokens": dashboards.top_tokens(layer, feature)[:10],
                    "promoted": [t.strip() for t in up],
                    "suppressed": [t.strip() for t in down],
                    "auto_label": auto,
                    "label": human.get((layer, feature)) or auto,
                    "object_key": key,
                }
            )
    return rows


def write_feature_rows(store: Store, job: DashboardJob, dashboards: Dashboards) -> None:
    from circuitflow.tasks.labels import human_labels

    digest = job.inputs["transcoders"]
    info = {
        "model": job.setup.model,
        "model_digest": job.inputs["model"],
        "transcoders": job.setup.transcoders,
        "transcoders_digest": digest,
        "corpus_digest": job.corpus.digest,
    }
    rows = feature_rows(info, dashboards.key, dashboards, human_labels(store, digest))
    store.catalog.write(FEATURES.name, job.id, rows, final=False)


def find_dashboards(store: Store, transcoders_digest: str) -> Dashboards | None:
    """The newest dashboards of a transcoder set listed in the catalog, if any."""
    if FEATURES.name not in store.catalog.table_names():
        return None
    try:
        found = store.query(
            "SELECT object_key FROM features WHERE transcoders_digest = "
            f"'{transcoders_digest}' AND object_key IS NOT NULL "
            "ORDER BY created_at DESC LIMIT 1"
        ).to_pylist()
    except (QueryError, StoreError):  # a table written without these columns: no dashboards
        return None
    if not found:
        return None
    stored = store.get(FEATURES_STAGE, found[0]["object_key"])
    return None if stored is None else read_dashboards(stored)
