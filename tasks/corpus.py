"""Corpora for feature dashboards: a file of documents, or the built-in model's own text.

A corpus is a list of documents (strings), read from:

- a text file: one document per non-empty line;
- a JSONL file: one JSON object per line, its `text` field;
- a Parquet file: its `text` column;
- nothing: the built-in model's training text (the world's sentences, in the order the model
  saw them, each once; see `circuitflow.training.world`).

Its identity is the SHA-256 of the documents' canonical JSON: the same text, whatever file it
came from, keys the same dashboards.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from circuitflow.store import canonical_json
from circuitflow.store.keys import sha256_hex

BUILTIN_CORPUS_SIZE = 2048  # distinct sentences taken from the built-in model's training text


class CorpusError(ValueError):
    """A corpus that cannot be read, with what is wrong."""


@dataclass(frozen=True)
class Corpus:
    """Documents and where they came from ("builtin" or a path)."""

    source: str
    documents: tuple[str, ...]

    @cached_property
    def digest(self) -> str:
        return sha256_hex(canonical_json(list(self.documents)))

    def __len__(self) -> int:
        return len(self.documents)


def builtin_corpus(size: int = BUILTIN_CORPUS_SIZE) -> Corpus:
    """The first `size` distinct sentences of the built-in model's training text stream."""
    from circuitflow.models import BUILTIN_MODEL
    from circuitflow.training.config import TrainDemoConfig
    from circuitflow.training.world import sentence_stream, split_facts

    cfg = TrainDemoConfig.from_yaml(BUILTIN_MODEL / "train_config.yaml")
    # The seed of the model's training text stream (`training.pipeline.text_seed(cfg, "model")`).
    stream = sentence_stream(split_facts(cfg.seed, cfg.held_out_fraction), cfg.seed * 1000 + 1)
    seen: dict[str, None] = {}
    for drawn, sentence in enumerate(stream):
        seen.setdefault(sentence)
        if len(seen) >= size or drawn > 200 * size:
            break
    return Corpus("builtin", tuple(seen))


def read_corpus(path: str | None) -> Corpus:
    """The corpus in `path` (see the module docs), or the built-in one for None."""
    if path is None:
        return builtin_corpus()
    file = Path(path)
    if not file.is_file():
        raise CorpusError(f"no corpus file at {path}")
    suffix = file.suffix.lower()
    try:
        if suffix == ".parquet":
            documents = _parquet_texts(file)
        elif suffix in (".jsonl", ".ndjson"):
            documents = _jsonl_texts(file)
        else:
            documents = [line.strip() for line in file.read_text().splitlines()]
    except (OSError, UnicodeDecodeError) as error:
        raise CorpusError(f"cannot read corpus {path}: {error}") from None
    documents = [d for d in documents if d]
    if not documents:
        raise CorpusError(f"the corpus {path} holds no text")
    return Corpus(str(file.resolve()), tuple(documents))


def _jsonl_texts(file: Path) -> list[str]:
    texts = []
    for number, line in enumerate(file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            text = json.loads(line).get("text")
        except (json.JSONDecodeError, AttributeError):
            raise CorpusError(f"{file}:{number}: not a JSON object") from None
        if not isinstance(text, str):
            raise CorpusError(f'{file}:{number}: no "text" string')
        texts.append(text.strip())
    return texts


def _parquet_texts(file: Path) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(file, columns=["text"])
    except (pa.ArrowException, KeyError) as error:
        raise CorpusError(f"{file}: needs a string column 'text' ({error})") from None
    return [str(t).strip() for t in table["text"].to_pylist() if t is not None]
