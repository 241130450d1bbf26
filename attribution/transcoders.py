"""Transcoders: sparse replacements for a model's MLPs, and how to read them from disk.

A transcoder reads the MLP's input at a hook (`feature_input_hook`, e.g. `ln2.hook_normalized`)
and predicts the MLP's output at another (`feature_output_hook`, usually `hook_mlp_out`):

    pre_activation = x @ W_enc.T + b_enc            x: (..., d_model), W_enc: (F, d_model)
    activation     = act_fn(pre_activation)         (..., F), sparse: few features > 0
    reconstruction = activation @ W_dec + b_dec (+ x @ W_skip.T for a skip connection)

Two kinds exist, and both are read from the public layout circuit-tracer's hosted sets use:

- A **per-layer set** (`model_kind: transcoder_set`): one transcoder per layer, in
  `layer_{i}.safetensors` with `W_enc` (F, d), `W_dec` (F, d), `b_enc` (F), `b_dec` (d), optional
  `activation_function.threshold` (F) meaning JumpReLU and optional `W_skip` (d, d).
- A **cross-layer transcoder** (`model_kind: cross_layer_transcoder`): features read at layer i
  and write to every layer j >= i. `W_enc_{i}.safetensors` holds `W_enc_{i}` (F, d), `b_enc_{i}`,
  `b_dec_{i}`, optional `threshold_{i}`; `W_dec_{i}.safetensors` holds `W_dec_{i}` (F, L - i, d).

A config.yaml may instead list one file per layer (`transcoders:`, local paths or `hf://` files),
as circuit-tracer's Gemma Scope and Gemma Scope 2 configs do: `transcoder_formats.py` reads those.

Both are presented through one interface, `Transcoders`, in which every feature of layer i has a
stack of decoder rows, one per output layer it writes to: a single row for a per-layer set,
L - i rows for a cross-layer transcoder. Decoder rows are read lazily (safetensors slices) because
real sets are tens of gigabytes and attribution only ever needs the rows of active features.

Memory options, as in the reference: `lazy_encoder` leaves the encoders in their files too (a
layer's encoder is read when that layer is encoded, feature targets read only their rows), and
`offload` says where the weights wait between uses: "cpu" keeps them in host memory and moves a
layer to the device when it is used (on a CPU-only run they are already there, so it changes
nothing), "disk" reads encoders and decoders from the set's own files on every use (the files
are already on disk, so nothing is copied).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from safetensors import safe_open

from circuitflow.attribution.safetensors_io import read_tensors, tensor_shape

PER_LAYER = "transcoder_set"
OFFLOADS = ("cpu", "disk")
# Decoders up to this size are read into memory by default: a small set's rows are then looked
# up instead of read from their files (32-40 us a lookup against 300-350 us, built-in model).
IN_MEMORY_DECODER_BYTES = 256 << 20
CROSS_LAYER = "cross_layer_transcoder"


class TranscoderError(ValueError):
    """A transcoder directory or file that cannot be used, with what to do about it."""


@dataclass(frozen=True)
class Activation:
    """The activation function applied to pre-activations.

    kind: "relu", "jumprelu" (x if x > threshold else 0, per-feature thresholds) or "topk"
    (keep the k largest pre-activations of each token, then ReLU, so "active" always means > 0).
    """

    kind: str = "relu"
    k: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("relu", "jumprelu", "topk"):
            raise TranscoderError(
                f"unknown activation {self.kind!r}: expected relu, jumprelu or topk"
            )
        if self.kind == "topk" and (self.k is None or self.k < 1):
            raise TranscoderError("a topk activation needs a positive integer k in config.yaml")

    def __call__(self, pre: torch.Tensor, threshold: torch.Tensor | None) -> torch.Tensor:
        if self.kind == "jumprelu":
            assert threshold is not None
            return pre * (pre > threshold)
        if self.kind == "topk":
            k = min(self.k, pre.shape[-1])
            kept = torch.zeros_like(pre).scatter(-1, pre.topk(k, dim=-1).indices, 1.0)
            return torch.relu(pre * kept)
        return torch.relu(pre)


class Transcoders:
    """A transcoder for every layer of a model, per-layer or cross-layer, behind one interface.

    Biases, thresholds and skips are held in memory; encoders too unless they are read from
    `encoder_files` (lazy encoder); decoder rows come from `decoder_rows`, read from disk on
    demand unless `W_dec` is given. With `offload="cpu"` the weights stay in host memory and a
    layer moves to the device when used.
    """

    def __init__(
        self,
        *,
        kind: str,
        W_enc: torch.Tensor | None,  # (L, F, d), or None to read `encoder_files` on use
        b_enc: torch.Tensor,  # (L, F)
        b_dec: torch.Tensor,  # (L, d)
        feature_input_hook: str,
        feature_output_hook: str,
        activation: Activation,
        threshold: torch.Tensor | None = None,  # (L, F) for JumpReLU
        W_skip: torch.Tensor | None = None,  # (L, d, d), applied as x @ W_skip[l].T
        W_dec: list[torch.Tensor] | None = None,  # per layer (F, n_out, d), when held in memory
        decoder_files: list[tuple[str, str]] | None = None,  # per layer (path, tensor name)
        encoder_files: list[tuple[str, str]] | None = None,  # per layer (path, tensor name)
        offload: str | None = None,
        name: str = "",
        path: str | None = None,
    ) -> None:
        if kind not in (PER_LAYER, CROSS_LAYER):
            raise TranscoderError(
                f"unknown model_kind {kind!r}: expected {PER_LAYER} or {CROSS_LAYER}"
            )
        if W_dec is None and decoder_files is None:
            raise TranscoderError("transcoders need decoder weights or decoder files")
        if W_enc is None and encoder_files is None:
            raise TranscoderError("transcoders need encoder weights or encoder files")
        if offload not in (None, *OFFLOADS):
            raise TranscoderError(f"offload must be cpu or disk, got {offload!r}")
        self.kind = kind
        self.W_enc, self.b_enc, self.b_dec = W_enc, b_enc, b_dec
        self.threshold, self.W_skip = threshold, W_skip
        self.activation = activation
        self.feature_input_hook = _relative_hook(feature_input_hook)
        self.feature_output_hook = _relative_hook(feature_output_hook)
        self._W_dec = W_dec
        self._decoder_files = decoder_files
        self._encoder_files = encoder_files
        self.offload = offload
        self.name = name
        self.path = path
        self.n_layers, self.d_transcoder = b_enc.shape
        self.d_model = b_dec.shape[1]
        if activation.kind == "jumprelu" and threshold is None:
            raise TranscoderError("a jumprelu activation needs thresholds")

    # ----------------------------------------------------------------------------- structure
    @property
    def cross_layer(self) -> bool:
        return self.kind == CROSS_LAYER

    @property
    def has_skip(self) -> bool:
        return self.W_skip is not None

    @property
    def device(self) -> torch.device:
        return self.b_enc.device

    @property
    def dtype(self) -> torch.dtype:
        return self.b_enc.dtype

    @property
    def lazy_encoder(self) -> bool:
        return self.W_enc is None

    @property
    def lazy_decoder(self) -> bool:
        return self._W_dec is None

    def decoder_elements(self) -> int:
        """How many numbers the decoders hold (read from the file headers when lazy)."""
        if self._W_dec is not None:
            return sum(w.numel() for w in self._W_dec)
        shapes = [
            tensor_shape(Path(path), name, TranscoderError) for path, name in self._decoder_files
        ]
        return sum(math.prod(shape) for shape in shapes)

    def read_decoders(self) -> None:
        """Read every layer's decoder into memory; rows are looked up from then on."""
        if self._W_dec is None:
            self._W_dec = [
                read_tensors(Path(path), [name], TranscoderError)[name]
                for path, name in self._decoder_files
            ]

    def input_hook(self, layer: int) -> str:
        return f"blocks.{layer}.{self.feature_input_hook}"

    def output_hook(self, layer: int) -> str:
        return f"blocks.{layer}.{self.feature_output_hook}"

    def n_output_layers(self, layer: int) -> int:
        """How many output layers a feature of `layer` writes to (layer, layer + 1, ...)."""
        return self.n_layers - layer if self.cross_layer else 1

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        """Move the in-memory tensors; lazily read rows follow on read. With `offload="cpu"`
        the encoder and decoder weights change dtype but stay in host memory."""
        move = lambda t: None if t is None else t.to(device=device, dtype=dtype)  # noqa: E731
        weights_device = "cpu" if self.offload == "cpu" else device
        move_weights = lambda t: None if t is None else t.to(weights_device, dtype)  # noqa: E731
        self.b_enc, self.b_dec = move(self.b_enc), move(self.b_dec)
        self.threshold, self.W_skip = move(self.threshold), move(self.W_skip)
        self.W_enc = move_weights(self.W_enc)
        if self._W_dec is not None:
            self._W_dec = [move_weights(w) for w in self._W_dec]
        return self

    # ----------------------------------------------------------------------------- the maths
    def encoder(self, layer: int) -> torch.Tensor:
        """The encoder of `layer` (F, d) on the device: from memory, or read from its file."""
        if self.W_enc is not None:
            weights = self.W_enc[layer]
        else:
            path, tensor_name = self._encoder_files[layer]
            with safe_open(path, framework="pt") as f:
                weights = f.get_tensor(tensor_name)
        return weights.to(device=self.device, dtype=self.dtype)

    def encoder_rows(self, features: torch.Tensor) -> torch.Tensor:
        """Encoder rows (n, d) of features given as (n, 3) (layer, position, feature) rows."""
        features = features.to("cpu", torch.long)
        if self.W_enc is not None:
            rows = self.W_enc[
                features[:, 0].to(self.W_enc.device), features[:, 2].to(self.W_enc.device)
            ]
            return rows.to(device=self.device, dtype=self.dtype)
        rows = torch.zeros(len(features), self.d_model, device=self.device, dtype=self.dtype)
        for layer in features[:, 0].unique().tolist():
            index = torch.nonzero(features[:, 0] == layer).flatten()
            path, tensor_name = self._encoder_files[layer]
            with safe_open(path, framework="pt") as f:
                read = f.get_slice(tensor_name)[features[index, 2].tolist()]
            rows[index.to(self.device)] = read.to(device=self.device, dtype=self.dtype)
        return rows

    def pre_activations(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """x: (..., d_model) at the feature input hook -> (..., F) before the activation."""
        return x.to(self.dtype) @ self.encoder(layer).T + self.b_enc[layer]

    def activate(self, layer: int, pre: torch.Tensor) -> torch.Tensor:
        threshold = None if self.threshold is None else self.threshold[layer]
        return self.activation(pre, threshold)

    def encode(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """x: (..., d_model) -> feature activations (..., F)."""
        return self.activate(layer, self.pre_activations(layer, x))

    def skip(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """The linear skip path's output (zero without a skip). x: (..., d) -> (..., d)."""
        if self.W_skip is None:
            return torch.zeros_like(x)
        return x @ self.W_skip[layer].T

    def decoder_rows(self, layer: int, features: torch.Tensor) -> torch.Tensor:
        """Decoder rows of the given features of `layer`: (n,) -> (n, n_output_layers, d).

        Row j of a feature is what one unit of its activation adds at output layer layer + j.
        """
        features = features.to("cpu", torch.long)
        if self._W_dec is not None:
            rows = self._W_dec[layer][features.to(self._W_dec[layer].device)]
        else:
            path, tensor_name = self._decoder_files[layer]
            with safe_open(path, framework="pt") as f:
                rows = f.get_slice(tensor_name)[features.tolist()] if len(features) else None
            if rows is None:
                rows = torch.zeros(0, self.n_output_layers(layer), self.d_model)
        if rows.ndim == 2:  # a per-layer file stores (F, d)
            rows = rows[:, None, :]
        return rows.to(device=self.device, dtype=self.dtype)

    def decoded_outputs(
        self,
        active: torch.Tensor,  # (n, 3) int64 (layer, position, feature)
        values: torch.Tensor,  # (n,) activations (or changes of activation)
    ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """What the given features write, grouped by the layer they write at.

        Yields (output layer, index (m,) into `active`, vectors (m, d_model)) where each vector is
        value x decoder row. A per-layer feature writes once, at its own layer; a cross-layer
        feature of layer i writes at every layer i, i + 1, ..., L - 1. This is the one place that
        knows that: reconstruction, the sources of the edges and interventions all go through it.
        """
        for layer in range(self.n_layers):
            index = torch.nonzero(active[:, 0] == layer).flatten()
            if len(index) == 0:
                continue
            rows = self.decoder_rows(layer, active[index, 2])  # (m, n_out, d)
            scaled = (
                rows * values[index.to(values.device)].to(self.device, self.dtype)[:, None, None]
            )
            for offset in range(rows.shape[1]):
                yield layer + offset, index, scaled[:, offset]

    def reconstruct(
        self,
        active: torch.Tensor,  # (n, 3) int64 (layer, position, feature)
        values: torch.Tensor,  # (n,) activations
        inputs: torch.Tensor,  # (L, n_pos, d) at the feature input hook
    ) -> torch.Tensor:
        """The transcoders' prediction of every MLP output: (L, n_pos, d).

        Sums activation x decoder row over the given active features at each output layer, then
        adds the decoder bias and the skip path.
        """
        n_layers, n_pos, d = inputs.shape
        out = torch.zeros(n_layers * n_pos, d, device=self.device, dtype=self.dtype)
        for out_layer, index, vectors in self.decoded_outputs(active, values):
            positions = active[index, 1].to(self.device)
            out.index_add_(0, out_layer * n_pos + positions, vectors)
        out = out.view(n_layers, n_pos, d) + self.b_dec[:, None, :]
        for layer in range(n_layers):
            out[layer] += self.skip(layer, inputs[layer].to(self.dtype))
        return out


def _relative_hook(hook: str) -> str:
    """'blocks.3.ln2.hook_normalized' or 'ln2.hook_normalized' -> 'ln2.hook_normalized'."""
    parts = hook.split(".")
    if len(parts) > 2 and parts[0] == "blocks" and parts[1].isdigit():
        return ".".join(parts[2:])
    return hook


# --------------------------------------------------------------------------------- reading


def load_transcoders(
    path: str | os.PathLike,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    lazy_decoder: bool | None = None,
    lazy_encoder: bool = False,
    offload: str | None = None,
) -> Transcoders:
    """Read a transcoder set from a directory in the public layout (or a hub repo id).

    `path` is a local directory holding `config.yaml` and the safetensors files, or a hub
    reference `user/repo[/subfolder][@revision]`, which is downloaded through huggingface_hub when
    online (offline, only what is already in the local hub cache resolves).

    With `lazy_decoder` decoder rows stay on disk and are read by feature; by default (None)
    they do only when the decoders would take more than 256 MB in `dtype`, else they are read
    into memory. With `lazy_encoder` the encoders stay on disk too, a layer at a time.
    `offload`: "cpu" keeps the weights in host memory and moves a layer to `device` on use;
    "disk" is both lazy readings.
    """
    if offload not in (None, *OFFLOADS):
        raise TranscoderError(f"offload must be cpu or disk, got {offload!r}")
    if offload == "disk":
        lazy_decoder = lazy_encoder = True
    decide = lazy_decoder is None  # load lazily, then read small decoders in
    lazy_decoder = True if decide else lazy_decoder
    directory = _resolve_directory(path)
    config = _read_config(directory)
    kind = config.get("model_kind")
    activation = _activation_from_config(config)
    name = str(config.get("name") or config.get("scan") or Path(directory).name)
    common = dict(
        feature_input_hook=_required(config, "feature_input_hook", directory),
        feature_output_hook=_required(config, "feature_output_hook", directory),
        name=name,
        path=str(directory),
    )
    common["offload"] = offload
    if "transcoders" in config and kind in (PER_LAYER, CROSS_LAYER):
        # Listed files (Gemma Scope and others) keep their encoders in memory: lazy_encoder
        # applies to the safetensors layouts only.
        tc = _load_listed(directory, config, activation, lazy_decoder, common)
    elif kind == PER_LAYER:
        tc = _load_per_layer(directory, activation, (lazy_decoder, lazy_encoder), common)
    elif kind == CROSS_LAYER:
        tc = _load_cross_layer(directory, activation, (lazy_decoder, lazy_encoder), common)
    else:
        raise TranscoderError(
            f"{directory}/config.yaml: model_kind is {kind!r}; expected {PER_LAYER!r} "
            f"or {CROSS_LAYER!r}"
        )
    if decide and tc.decoder_elements() * dtype.itemsize <= IN_MEMORY_DECODER_BYTES:
        tc.read_decoders()
    return tc.to(device=device, dtype=dtype)


def _resolve_directory(path: str | os.PathLike) -> Path:
    local = Path(path).expanduser()
    if local.is_dir():
        return local
    text = str(path)
    if local.exists() or text.startswith((".", "/", "~")) or text.count("/") < 1:
        raise TranscoderError(
            f"transcoder directory {text!r} not found: give a directory holding config.yaml "
            "and the layer files, or a hub repo id user/repo[/subfolder][@revision]"
        )
    return _download_from_hub(text)


def transcoder_directory(path: str | os.PathLike) -> Path:
    """The local directory of a transcoder set: `path` itself, or the hub snapshot (downloaded
    when online) of a reference `user/repo[/subfolder][@rev]`."""
    return _resolve_directory(path)


def _download_from_hub(reference: str) -> Path:
    """Resolve `user/repo[/subfolder][@rev]` to a local snapshot directory."""
    from circuitflow.attribution.hub import HubError, cached_snapshot

    reference, _, revision = reference.partition("@")
    parts = reference.split("/")
    repo_id, subfolder = "/".join(parts[:2]), "/".join(parts[2:])
    patterns = [f"{subfolder}/*"] if subfolder else None
    try:
        root = cached_snapshot(repo_id, revision=revision or None, patterns=patterns)
    except HubError as error:
        raise TranscoderError(f"could not fetch transcoders {reference!r}: {error}") from None
    return Path(root) / subfolder if subfolder else Path(root)


def _read_config(directory: Path) -> dict:
    config_path = directory / "config.yaml"
    if not config_path.is_file():
        raise TranscoderError(f"{directory} has no config.yaml: it is not a transcoder directory")
    try:
        config = yaml.safe_load(config_path.read_text())
    except yaml.YAMLError as error:
        problem = " ".join(str(error).split())  # one line: PyYAML's message spans several
        raise TranscoderError(f"{config_path} is not valid YAML: {problem}") from error
    if not isinstance(config, dict):
        raise TranscoderError(f"{config_path} must hold a mapping of settings")
    return config


def _required(config: dict, key: str, directory: Path) -> str:
    if not config.get(key):
        raise TranscoderError(f"{directory}/config.yaml lacks {key!r}")
    return str(config[key])


def _activation_from_config(config: dict) -> Activation:
    kind = str(config.get("activation", "relu")).lower().replace("_", "")
    return Activation(kind=kind, k=config.get("k"))


def _load_per_layer(directory: Path, activation: Activation, lazy: tuple, common: dict):
    lazy_decoder, lazy_encoder = lazy
    files = sorted(directory.glob("layer_*.safetensors"))
    n_layers = len(files)
    if n_layers == 0:
        raise TranscoderError(f"{directory} holds no layer_*.safetensors files")
    per_layer = []
    for layer in range(n_layers):
        path = directory / f"layer_{layer}.safetensors"
        names = ["b_enc", "b_dec", "activation_function.threshold", "W_skip"]
        names += [] if lazy_encoder else ["W_enc"]
        tensors = read_tensors(
            path, names + ([] if lazy_decoder else ["W_dec"]), error=TranscoderError
        )
        for key in ("b_enc", "b_dec"):
            if key not in tensors:
                raise TranscoderError(f"{path} lacks the tensor {key!r}")
        enc_shape, dec_shape = (
            tensor_shape(path, "W_enc", TranscoderError),
            tensor_shape(path, "W_dec", TranscoderError),
        )
        if dec_shape != enc_shape:
            raise TranscoderError(f"{path}: W_dec has shape {dec_shape} but W_enc has {enc_shape}")
        tensors["shape"] = enc_shape
        per_layer.append((path, tensors))
    has_threshold = "activation_function.threshold" in per_layer[0][1]
    if has_threshold and activation.kind == "relu":
        activation = Activation("jumprelu")
    has_skip = "W_skip" in per_layer[0][1]
    stack = lambda key: torch.stack([t[key] for _, t in per_layer])  # noqa: E731
    _check_same_shapes(per_layer, directory)
    return Transcoders(
        kind=PER_LAYER,
        W_enc=None if lazy_encoder else stack("W_enc"),
        encoder_files=[(str(p), "W_enc") for p, _ in per_layer],
        b_enc=stack("b_enc"),
        b_dec=stack("b_dec"),
        threshold=stack("activation_function.threshold") if has_threshold else None,
        W_skip=stack("W_skip") if has_skip else None,
        activation=activation,
        W_dec=None if lazy_decoder else [t["W_dec"] for _, t in per_layer],
        decoder_files=[(str(p), "W_dec") for p, _ in per_layer],
        **common,
    )


def _load_listed(directory: Path, config: dict, activation: Activation, lazy: bool, common: dict):
    """A config listing one file per layer (Gemma Scope and others): transcoder_formats.py."""
    from circuitflow.attribution.transcoder_formats import FormatError, read_listed

    try:
        tensors = read_listed(directory, config, lazy_decoder=lazy)
    except FormatError as error:
        raise TranscoderError(str(error)) from None
    if tensors["threshold"] is not None and activation.kind == "relu":
        activation = Activation("jumprelu")
    return Transcoders(activation=activation, **tensors, **common)


def _check_same_shapes(per_layer: list, directory: Path) -> None:
    shape = per_layer[0][1]["shape"]
    for layer, (_, tensors) in enumerate(per_layer):
        if tensors["shape"] != shape:
            raise TranscoderError(
                f"{directory}: layer {layer} has W_enc of shape {tensors['shape']}, "
                f"layer 0 has {shape}; every layer must have the same width and d_model"
            )


def _load_cross_layer(directory: Path, activation: Activation, lazy: tuple, common: dict):
    lazy_decoder, lazy_encoder = lazy
    n_layers = len(list(directory.glob("W_enc_*.safetensors")))
    if n_layers == 0:
        raise TranscoderError(f"{directory} holds no W_enc_*.safetensors files")
    enc, enc_files, dec_files, dec = [], [], [], []
    for layer in range(n_layers):
        enc_path = directory / f"W_enc_{layer}.safetensors"
        names = [f"{key}_{layer}" for key in ("b_enc", "b_dec", "threshold", "W_skip")]
        tensors = read_tensors(
            enc_path, names + ([] if lazy_encoder else [f"W_enc_{layer}"]), error=TranscoderError
        )
        for key in (f"b_enc_{layer}", f"b_dec_{layer}"):
            if key not in tensors:
                raise TranscoderError(f"{enc_path} lacks {key!r}")
        n_features, d_model = tensor_shape(enc_path, f"W_enc_{layer}", TranscoderError)
        enc.append(tensors)
        enc_files.append((str(enc_path), f"W_enc_{layer}"))
        dec_path = directory / f"W_dec_{layer}.safetensors"
        shape = tensor_shape(dec_path, f"W_dec_{layer}", TranscoderError)
        if shape != [n_features, n_layers - layer, d_model]:
            raise TranscoderError(
                f"{dec_path}: W_dec_{layer} has shape {shape}, expected "
                f"[{n_features}, {n_layers - layer}, {d_model}] (a feature at layer {layer} "
                f"writes to the {n_layers - layer} layers from {layer} on)"
            )
        dec_files.append((str(dec_path), f"W_dec_{layer}"))
        if not lazy_decoder:
            dec.append(read_tensors(dec_path, error=TranscoderError)[f"W_dec_{layer}"])
    has_threshold = f"threshold_{0}" in enc[0]
    if has_threshold and activation.kind == "relu":
        activation = Activation("jumprelu")
    has_skip = "W_skip_0" in enc[0]
    pick = lambda key: torch.stack([t[f"{key}_{i}"] for i, t in enumerate(enc)])  # noqa: E731
    return Transcoders(
        kind=CROSS_LAYER,
        W_enc=None if lazy_encoder else pick("W_enc"),
        encoder_files=enc_files,
        b_enc=pick("b_enc"),
        b_dec=pick("b_dec"),
        threshold=pick("threshold") if has_threshold else None,
        W_skip=pick("W_skip") if has_skip else None,
        activation=activation,
        W_dec=None if lazy_decoder else dec,
        decoder_files=dec_files,
        **common,
    )


# --------------------------------------------------------------------------------- writing


def save_transcoders(
    directory: str | os.PathLike,
    *,
    kind: str,
    W_enc: torch.Tensor,  # (L, F, d)
    W_dec: list[torch.Tensor] | torch.Tensor,  # per-layer (L, F, d); cross-layer [(F, L - i, d)]
    b_enc: torch.Tensor,  # (L, F)
    b_dec: torch.Tensor,  # (L, d)
    feature_input_hook: str,
    feature_output_hook: str = "hook_mlp_out",
    activation: Activation | None = None,
    threshold: torch.Tensor | None = None,  # (L, F)
    W_skip: torch.Tensor | None = None,  # (L, d, d)
    extra_config: dict | None = None,
) -> Path:
    """Write transcoders in the public layout that `load_transcoders` (and circuit-tracer) read."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    activation = activation or Activation()
    config = {
        "model_kind": kind,
        "feature_input_hook": feature_input_hook,
        "feature_output_hook": feature_output_hook,
        "activation": activation.kind,
        **({"k": activation.k} if activation.kind == "topk" else {}),
        **(extra_config or {}),
    }
    (directory / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    plain = lambda t: t.detach().to("cpu").contiguous()  # noqa: E731
    for layer in range(W_enc.shape[0]):
        if kind == PER_LAYER:
            tensors = {
                "W_enc": W_enc[layer],
                "W_dec": W_dec[layer],
                "b_enc": b_enc[layer],
                "b_dec": b_dec[layer],
            }
            if threshold is not None:
                tensors["activation_function.threshold"] = threshold[layer]
            if W_skip is not None:
                tensors["W_skip"] = W_skip[layer]
            save_file(
                {k: plain(v) for k, v in tensors.items()}, directory / f"layer_{layer}.safetensors"
            )
        else:
            tensors = {
                f"W_enc_{layer}": W_enc[layer],
                f"b_enc_{layer}": b_enc[layer],
                f"b_dec_{layer}": b_dec[layer],
            }
            if threshold is not None:
                tensors[f"threshold_{layer}"] = threshold[layer]
            if W_skip is not None:
                tensors[f"W_skip_{layer}"] = W_skip[layer]
            save_file(
                {k: plain(v) for k, v in tensors.items()}, directory / f"W_enc_{layer}.safetensors"
            )
            save_file(
                {f"W_dec_{layer}": plain(W_dec[layer])}, directory / f"W_dec_{layer}.safetensors"
            )
    return directory
