"""The shipped language model: offline loading, the accuracy targets, and save/load."""

import json

import torch

from circuitflow.attribution import load_model
from circuitflow.training import evaluate, world
from circuitflow.training.language_model import (
    PackedBatches,
    save_language_model,
)


def test_shipped_files(shipped_dir):
    names = {p.name for p in shipped_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer", "MODEL_CARD.md"} <= names
    cfg = json.loads((shipped_dir / "config.json").read_text())
    assert cfg["dtype"] == "float32"
    assert cfg["n_layers"] == 4 and cfg["d_model"] == 128
    assert cfg["d_vocab"] != cfg["d_model"]
    total = sum(p.stat().st_size for p in shipped_dir.rglob("*") if p.is_file())
    assert total < 20e6


def test_accuracy_targets(shipped_model, split):
    assert evaluate.fact_accuracy(shipped_model, split.one_hop) >= 0.95
    assert evaluate.fact_accuracy(shipped_model, split.two_hop_train) >= 0.95
    assert evaluate.fact_accuracy(shipped_model, split.two_hop_held_out) >= 0.90


def test_seed_prompt(shipped_model):
    tokens = shipped_model.to_tokens(world.SEED_PROMPT)
    assert tokens[0, 0].item() == shipped_model.tokenizer.bos_token_id == 3
    logits = shipped_model(tokens)[0, -1]
    assert shipped_model.to_string(logits.argmax()) == "Austin"
    p = evaluate.answer_probability(shipped_model, world.SEED_PROMPT, " Austin")
    assert p >= 0.9


def test_padded_fact_batch_matches_single_prompts(shipped_model, split):
    facts = [split.one_hop[0], split.two_hop_train[0], split.two_hop_held_out[0]]
    batched = evaluate.last_logits(shipped_model, [f.prompt for f in facts])
    for f, row in zip(facts, batched, strict=True):
        single = shipped_model(shipped_model.to_tokens(f.prompt))[0, -1]
        torch.testing.assert_close(row, single, atol=1e-4, rtol=1e-4)


def test_save_and_load_round_trip(tmp_path, shipped_model):
    save_language_model(shipped_model, shipped_model.tokenizer, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "float32"
    again = load_model(tmp_path)
    tokens = shipped_model.to_tokens(world.SEED_PROMPT)
    torch.testing.assert_close(again(tokens), shipped_model(tokens))


def test_packed_batches_start_with_bos(shipped_model, split):
    packer = PackedBatches(shipped_model.tokenizer, world.sentence_stream(split, 5), 48)
    batch = packer.next_batch(4)
    assert batch.shape == (4, 48)
    assert (batch[:, 0] == 3).all()
    assert (batch[:, 1:] != shipped_model.tokenizer.unk_token_id).all()
