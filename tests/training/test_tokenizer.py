"""The word-level tokenizer: special token ids, no unknowns, and TransformerLens round trips."""

import pytest

from circuitflow.training import tokenizer as T
from circuitflow.training import world


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tok")
    T.save_tokenizer(T.build_tokenizer(world.all_sentences(world.split_facts(0))), directory)
    return T.load_tokenizer(directory)


def test_special_token_ids(tok):
    assert (tok.pad_token_id, tok.unk_token_id, tok.eos_token_id, tok.bos_token_id) == (0, 1, 2, 3)
    assert tok.bos_token_id in tok.all_special_ids
    assert len(tok) != 128  # differs from d_model


def test_every_world_sentence_tokenizes_without_unknowns(tok):
    for sentence in world.all_sentences(world.split_facts(0)):
        T.encode_words(tok, sentence + " .")
    with pytest.raises(ValueError, match="Zurich"):
        T.encode_words(tok, "Zurich is a city")


def test_answer_token_with_or_without_space(tok):
    (austin,) = T.encode_words(tok, " Austin")
    assert T.encode_words(tok, "Austin") == [austin]
    assert tok.convert_ids_to_tokens(austin) == "Austin"
    ids = T.encode_words(tok, world.SEED_PROMPT + " Austin")
    assert tok.decode(ids) == world.SEED_PROMPT + " Austin"


def test_transformer_lens_prepends_bos(tok):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=1, d_model=8, n_heads=1, d_head=8, n_ctx=16, d_vocab=len(tok), act_fn="gelu",
        normalization_type="RMS", positional_embedding_type="rotary", rotary_dim=8,
    )  # fmt: skip
    model = HookedTransformer(cfg, tokenizer=tok)
    tokens = model.to_tokens(world.SEED_PROMPT)
    assert tokens[0, 0].item() == 3
    assert model.to_str_tokens(world.SEED_PROMPT) == ["<bos>", *world.SEED_PROMPT.split()]
    assert model.to_single_token(" Austin") == model.to_single_token("Austin")
    assert model.to_string(tokens[0, 1:]) == world.SEED_PROMPT
