"""The built-in model: a 4-layer language model of a world of capitals, with its transcoders.

`capitals-4l/` holds the model directory (config.json, model.safetensors, tokenizer/), its
per-layer (`transcoders/plt`) and cross-layer (`transcoders/clt`) transcoder sets and its model
card. It ships inside the package, so an installed circuitflow runs offline from any directory.
`circuitflow train-demo` regenerates it (see `circuitflow.training`).
"""

from pathlib import Path

BUILTIN_MODEL = Path(__file__).resolve().parent / "capitals-4l"
