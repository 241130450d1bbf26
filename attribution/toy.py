"""Small random models and transcoders, built offline, for tests, benchmarks and experiments.

Three model families cover the architectures attribution must handle:

- "gpt2":   LayerNorm, learned positions, GELU MLP
- "llama":  RMSNorm, rotary positions, gated MLP, grouped-query attention
- "gemma2": RMSNorm before and after attention and MLP, rotary, gated MLP, grouped-query
            attention, attention-score and output-logit softcapping

The tokenizer is word-level over the words w0, w1, ... so any list of token ids has a text form.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from circuitflow.attribution.transcoders import (
    CROSS_LAYER,
    PER_LAYER,
    Activation,
    Transcoders,
    load_transcoders,
    save_transcoders,
)

FAMILIES = ("gpt2", "llama", "gemma2")
SPECIALS = ("<pad>", "<unk>", "<eos>", "<bos>")


def word_tokenizer(d_vocab: int, start_id: int = 3, directory: str | Path | None = None):
    """A word-level transformers tokenizer with `d_vocab` ids; '<bos>' has id `start_id`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    n_words = d_vocab - len(SPECIALS)
    names = [f"w{i}" for i in range(n_words)]
    order = list(SPECIALS[:3]) + names
    order.insert(start_id, "<bos>")
    vocab = {token: index for index, token in enumerate(order)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    directory = Path(directory or tempfile.mkdtemp(prefix="circuitflow-tok-"))
    fast.save_pretrained(str(directory))
    # TransformerLens needs a tokenizer loaded from a directory.
    return AutoTokenizer.from_pretrained(str(directory))


def model_config(family: str, **overrides) -> HookedTransformerConfig:
    """A small HookedTransformerConfig of one of the FAMILIES."""
    base = dict(n_layers=3, d_model=32, n_ctx=64, d_head=8, n_heads=4, d_mlp=64, d_vocab=50, seed=0)
    if family == "gpt2":
        base |= dict(
            act_fn="gelu_new", normalization_type="LN", positional_embedding_type="standard"
        )
    elif family == "llama":
        base |= dict(
            act_fn="silu",
            normalization_type="RMS",
            positional_embedding_type="rotary",
            rotary_dim=8,
            gated_mlp=True,
            n_key_value_heads=2,
            final_rms=True,
        )
    elif family == "gemma2":
        base |= dict(
            act_fn="gelu_pytorch_tanh",
            normalization_type="RMS",
            positional_embedding_type="rotary",
            rotary_dim=8,
            gated_mlp=True,
            n_key_value_heads=2,
            use_normalization_before_and_after=True,
            attn_scores_soft_cap=50.0,
            output_logits_soft_cap=30.0,
            final_rms=True,
        )
    else:
        raise ValueError(f"unknown family {family!r}; choose from {FAMILIES}")
    return HookedTransformerConfig(**(base | overrides))


def random_model(
    family: str, *, start_id: int = 3, seed: int = 0, **overrides
) -> HookedTransformer:
    """A randomly initialised model of `family` with a word-level tokenizer."""
    torch.manual_seed(seed)
    cfg = model_config(family, **overrides)
    model = HookedTransformer(
        cfg, tokenizer=word_tokenizer(cfg.d_vocab, start_id), move_to_device=False
    )
    _enlarge_weights(model, seed)
    model.eval()
    return model


def _enlarge_weights(model: HookedTransformer, seed: int) -> None:
    """TransformerLens's default init gives near-identity blocks; wider weights make every path
    (attention mixing across positions, skip connections) carry real signal in tests."""
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(
                ("W_Q", "W_K", "W_V", "W_O", "W_in", "W_gate", "W_out", "W_E", "W_pos", "W_U")
            ):
                fan_in = param.shape[-2] if param.ndim >= 2 else param.shape[0]
                param.copy_(torch.randn(param.shape, generator=generator) / fan_in**0.5)


def random_transcoders(
    model: HookedTransformer,
    *,
    kind: str = PER_LAYER,
    d_transcoder: int = 48,
    activation: Activation | None = None,
    skip: bool = False,
    seed: int = 0,
    directory: str | Path | None = None,
    feature_input_hook: str | None = None,
) -> Transcoders:
    """Random transcoders for `model`, written in the public layout and read back lazily."""
    activation = activation or Activation()
    cfg = model.cfg
    L, d, F = cfg.n_layers, cfg.d_model, d_transcoder
    g = torch.Generator().manual_seed(seed + 7)
    W_enc = torch.randn(L, F, d, generator=g) / d**0.5
    b_enc = -0.3 * torch.rand(L, F, generator=g)
    b_dec = 0.1 * torch.randn(L, d, generator=g)
    if kind == PER_LAYER:
        W_dec = torch.randn(L, F, d, generator=g) / F**0.5
        hook = feature_input_hook or "ln2.hook_normalized"
    else:
        W_dec = [torch.randn(F, L - i, d, generator=g) / (F * (L - i)) ** 0.5 for i in range(L)]
        hook = feature_input_hook or "hook_resid_mid"
    threshold = 0.2 * torch.rand(L, F, generator=g) if activation.kind == "jumprelu" else None
    W_skip = 0.3 * torch.randn(L, d, d, generator=g) / d**0.5 if skip else None
    directory = Path(directory or tempfile.mkdtemp(prefix="circuitflow-tc-"))
    save_transcoders(
        directory,
        kind=kind,
        W_enc=W_enc,
        W_dec=W_dec,
        b_enc=b_enc,
        b_dec=b_dec,
        feature_input_hook=hook,
        activation=activation,
        threshold=threshold,
        W_skip=W_skip,
    )
    return load_transcoders(directory, dtype=cfg.dtype)


__all__ = [
    "CROSS_LAYER",
    "FAMILIES",
    "PER_LAYER",
    "model_config",
    "random_model",
    "random_transcoders",
    "word_tokenizer",
]
