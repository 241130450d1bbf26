"""Training the built-in model: a small language model of a synthetic world, and its transcoders.

Pure PyTorch + tokenizers (no Prefect; `tasks/training.py` and `flows/train_demo.py` orchestrate).
Read in this order:

    world.py           the places, facts, held-out two-hop split and seeded training text
    tokenizer.py       the word-level tokenizer (special ids, how " Austin" is a token)
    config.py          TrainDemoConfig / ModelTrainConfig / TranscoderTrainConfig (YAML)
    language_model.py  the HookedTransformer: shape, training loop, saving
    transcoders.py     collecting MLP activations; training per-layer and cross-layer
                       transcoders; saving them in the public layout
    evaluate.py        fact accuracy, FVU, splicing, seed-prompt attribution, circuit check
    model_card.py      MODEL_CARD.md from the measured metrics
    pipeline.py        the steps of `circuitflow train-demo` over an output directory
"""
