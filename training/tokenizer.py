"""The built-in model's word-level tokenizer: build it from the world's sentences and save it.

Conventions (the rest of the project relies on them):

- One token per word or punctuation mark. The pre-tokenizer (`Whitespace`) splits text on
  whitespace and between word characters and punctuation, so "Texas." is ["Texas", "."].
- Tokens carry no spaces. "Austin" is the token; " Austin" and "Austin" both encode to it
  (leading spaces are dropped while splitting), and decoding joins tokens with single spaces.
  So the answer written " Austin" in the issue is the token "Austin".
- Case is kept: "The" and "the" are different tokens.
- Special tokens, in this order and with these ids: `<pad>` 0, `<unk>` 1, `<eos>` 2, `<bos>` 3.
  The start token's id is not 0 because circuit-tracer skips a start token whose id is 0.
- The tokenizer itself adds no special tokens; TransformerLens's `to_tokens` prepends `<bos>`
  (`prepend_bos=True`), as do our training batches.

The saved directory is a transformers tokenizer (`AutoTokenizer.from_pretrained(dir)` returns a
`PreTrainedTokenizerFast`), which is what TransformerLens needs.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD, UNK, EOS, BOS = "<pad>", "<unk>", "<eos>", "<bos>"
SPECIAL_TOKENS = (PAD, UNK, EOS, BOS)  # ids 0, 1, 2, 3


def _words(text: str) -> list[str]:
    """Split text exactly as the tokenizer's pre-tokenizer does."""
    return [w for w, _ in pre_tokenizers.Whitespace().pre_tokenize_str(text)]


def build_tokenizer(sentences: list[str], model_max_length: int = 64) -> PreTrainedTokenizerFast:
    """A word-level tokenizer whose vocabulary is every word of `sentences`, plus "." .

    Ids: the four special tokens first (see the module docstring), then words in sorted order, so
    the same sentences always give the same ids.
    """
    words = sorted({w for s in sentences for w in _words(s)} | {"."})
    vocab = {tok: i for i, tok in enumerate([*SPECIAL_TOKENS, *words])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    # No decoder: the tokenizers library then joins decoded tokens with single spaces.
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        unk_token=UNK,
        eos_token=EOS,
        bos_token=BOS,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, directory: str | Path) -> Path:
    """Write the tokenizer as a transformers tokenizer directory and return its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(directory))
    return directory


def load_tokenizer(directory: str | Path) -> PreTrainedTokenizerFast:
    """Load a saved tokenizer directory (offline; it is a local path)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory))


def encode_words(tokenizer: PreTrainedTokenizerFast, text: str) -> list[int]:
    """Token ids of `text` without special tokens; raises if any word is unknown."""
    ids = tokenizer(text, add_special_tokens=False).input_ids
    if tokenizer.unk_token_id in ids:
        unknown = [w for w in _words(text) if w not in tokenizer.get_vocab()]
        raise ValueError(f"words not in the vocabulary: {unknown}")
    return ids
