"""Transcoder sets listed file by file: circuit-tracer's `transcoders:` config and what it lists.

Some published sets do not keep their weights beside their `config.yaml`. Instead the config
names one file per layer, usually in another hub repository:

    model_kind: transcoder_set              # or cross_layer_transcoder
    feature_input_hook: hook_resid_mid
    feature_output_hook: hook_mlp_out
    transcoders:
      - hf://google/gemma-scope-2b-pt-transcoders/layer_0/width_16k/average_l0_76/params.npz
      - hf://google/gemma-scope-2b-pt-transcoders/layer_1/width_16k/average_l0_65/params.npz
      - ...

Entry i is layer i. An entry is `hf://user/repo/path/in/repo[?revision=REV]`, resolved through
the local hub cache (downloaded when online, see `hub.cached_snapshot`), or a local path,
absolute or relative to the config's directory.

Each file is recognised by what it holds, so a set loads whatever repository it came from
(shapes: F features, d = d_model, L layers; "(d, F)" means stored transposed from ours):

- **Gemma Scope** (`.npz`, numpy): `W_enc` (d, F), `W_dec` (F, d), `b_enc` (F), `b_dec` (d),
  `threshold` (F). JumpReLU. Decoders are held in memory (a zip member cannot be sliced).
- **Gemma Scope 2, per layer** (safetensors, lowercase keys): `w_enc` (d, F), `w_dec` (F, d),
  `b_enc`, `b_dec`, `threshold`, optional `affine_skip_connection` (d, d), which maps x to
  x @ affine_skip_connection. JumpReLU. Decoder rows are read lazily.
- **Gemma Scope 2, cross-layer** (the same keys under `model_kind: cross_layer_transcoder`):
  `w_dec` is (F, L, d), a feature's row for every layer of the model; a feature of layer i
  writes to layers i..L-1 only, so rows before i are dropped. Held in memory.
- **circuit-tracer's own per-layer file** (safetensors): `W_enc` (F, d), `W_dec` (F, d),
  `b_enc`, `b_dec`, optional `activation_function.threshold` and `W_skip` (d, d).

The activation is JumpReLU where thresholds exist; otherwise `activation` in config.yaml
(`relu`, or `topk` with `k`), as for the directory layout.

Nothing here builds a `Transcoders`: `read_listed` returns the tensors, and `transcoders.py`
assembles them, so this module imports nothing of ours but the hub helper and `safetensors_io`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import torch

from circuitflow.attribution.safetensors_io import read_tensors, tensor_shape

LISTED = "transcoders"  # the config key holding the per-layer file list
CROSS_LAYER = "cross_layer_transcoder"


class FormatError(ValueError):
    """A listed file that is missing, unreachable or not in any layout we read."""


@dataclass(frozen=True)
class HubFile:
    """A file named `hf://repo_id/path_in_repo[?revision=REV]`."""

    repo_id: str
    path_in_repo: str
    revision: str | None = None

    @classmethod
    def parse(cls, uri: str) -> HubFile:
        parsed = urlparse(uri)
        repo_name, _, path_in_repo = parsed.path.lstrip("/").partition("/")
        if parsed.scheme != "hf" or not parsed.netloc or not repo_name or not path_in_repo:
            raise FormatError(f"{uri!r} is not a hub file: expected hf://user/repo/path/to/file")
        revision = parse_qs(parsed.query).get("revision", [None])[0]
        return cls(f"{parsed.netloc}/{repo_name}", path_in_repo, revision or None)


# ------------------------------------------------------------------------------- the file list


def listed_files(directory: str | os.PathLike, config: dict | None = None) -> list[Path] | None:
    """The local files a listed set is made of, layer by layer; None when `directory`'s config
    has no `transcoders:` list (the weights then sit in the directory itself)."""
    directory = Path(directory)
    if config is None:
        config = _config_of(directory)
    if not isinstance(config, dict) or LISTED not in config:
        return None
    entries = config[LISTED]
    if not isinstance(entries, list) or not entries:
        raise FormatError(
            f"{directory}/config.yaml: '{LISTED}' must be a non-empty list of files, one per layer"
        )
    return [_local_file(str(entry), directory) for entry in entries]


def _config_of(directory: Path) -> dict | None:
    """The directory's config.yaml, read (None without one)."""
    import yaml

    config_path = directory / "config.yaml"
    if not config_path.is_file():
        return None
    try:
        return yaml.safe_load(config_path.read_text())
    except yaml.YAMLError as error:
        problem = " ".join(str(error).split())  # one line: PyYAML's message spans several
        raise FormatError(f"{config_path} is not valid YAML: {problem}") from None


def _local_file(entry: str, directory: Path) -> Path:
    if entry.startswith("hf://"):
        return _hub_file(HubFile.parse(entry), entry)
    path = Path(entry).expanduser()
    path = path if path.is_absolute() else directory / path
    if not path.is_file():
        raise FormatError(f"{directory}/config.yaml lists {entry!r}, which is not a file")
    return path


def _hub_file(file: HubFile, uri: str) -> Path:
    from circuitflow.attribution.hub import HubError, cached_snapshot

    try:
        snapshot = cached_snapshot(
            file.repo_id, revision=file.revision, patterns=[file.path_in_repo]
        )
    except HubError as error:
        raise FormatError(f"cannot fetch {uri}: {error}") from None
    path = snapshot / file.path_in_repo
    if not path.is_file():
        # The snapshot is cached but this file of it was never fetched.
        raise FormatError(
            f"{uri} is not in the local hub cache: fetch it once online "
            f"(`hf download {file.repo_id} {file.path_in_repo}`, or unset HF_HUB_OFFLINE)"
        )
    return path


def cached_file_identity(path: str | os.PathLike) -> dict | None:
    """{"repo", "commit", "file", "blob"} of a file in a hub-cache snapshot, or None.

    The cache names a blob by its content (SHA-256 for large files, the git hash for small
    ones), so this identifies the bytes without reading them.
    """
    path = Path(path).absolute()
    for snapshot in path.parents:
        if snapshot.parent.name == "snapshots" and (snapshot.parent.parent / "blobs").is_dir():
            break
    else:
        return None
    if not path.is_symlink() or Path(os.readlink(path)).parent.name != "blobs":
        return None  # a copied file (no symlinks on the platform) is named by nothing
    return {
        "repo": snapshot.parent.parent.name,
        "commit": snapshot.name,
        "file": path.relative_to(snapshot).as_posix(),
        "blob": Path(os.readlink(path)).name,
    }


# ------------------------------------------------------------------------------- reading


def read_listed(directory: str | os.PathLike, config: dict, *, lazy_decoder: bool = True) -> dict:
    """The tensors of a listed set, as keyword arguments of `Transcoders`:

    kind, W_enc (L, F, d), b_enc (L, F), b_dec (L, d), threshold (L, F) or None, W_skip
    (L, d, d) applied as x @ W_skip[l].T, or None, and either W_dec (per layer (F, n_out, d) or
    (F, d)) or decoder_files (per layer (path, tensor name)) for lazily read rows.
    """
    directory = Path(directory)
    files = listed_files(directory, config)
    assert files is not None
    cross_layer = config.get("model_kind") == CROSS_LAYER
    layers = [_read_layer(path, i, cross_layer, len(files)) for i, path in enumerate(files)]
    for key in ("W_enc", "b_enc", "b_dec"):
        _check_same_shape(layers, files, key)
    for key in ("threshold", "W_skip"):
        present = [layer.get(key) is not None for layer in layers]
        if any(present) and not all(present):
            raise FormatError(f"{directory}: {key} is in some listed files but not in all")

    def stack(key: str) -> torch.Tensor | None:
        return None if layers[0].get(key) is None else torch.stack([t[key] for t in layers])

    lazy = lazy_decoder and all("decoder_file" in layer for layer in layers)
    return {
        "kind": config.get("model_kind"),
        "W_enc": stack("W_enc"),
        "b_enc": stack("b_enc"),
        "b_dec": stack("b_dec"),
        "threshold": stack("threshold"),
        "W_skip": stack("W_skip"),
        "W_dec": None if lazy else [_decoder(layer) for layer in layers],
        "decoder_files": [layer["decoder_file"] for layer in layers] if lazy else None,
    }


def _decoder(layer: dict) -> torch.Tensor:
    if "W_dec" in layer:
        return layer["W_dec"]
    from safetensors import safe_open

    path, name = layer["decoder_file"]
    with safe_open(path, framework="pt") as f:
        return f.get_tensor(name)


def _read_layer(path: Path, index: int, cross_layer: bool, n_layers: int) -> dict:
    """Listed file `index` -> {"W_enc": (F, d), "b_enc", "b_dec", "threshold", "W_skip",
    and "W_dec" (F, d) / (F, L - index, d) in memory or "decoder_file" (path, name)}."""
    if path.suffix == ".npz":
        if cross_layer:
            raise FormatError(f"{path}: a Gemma Scope .npz file is a per-layer transcoder")
        return _gemma_scope(path)
    keys = _safetensors_keys(path)
    if "w_enc" in keys:
        return _gemma_scope_2(path, keys, index if cross_layer else None, n_layers)
    if "W_enc" in keys and not cross_layer:
        return _circuit_tracer_layer(path, keys)
    expected = "w_enc (Gemma Scope 2)" if cross_layer else "w_enc (Gemma Scope 2) or W_enc"
    raise FormatError(f"{path} has no key {expected}: not a transcoder file we read")


def _safetensors_keys(path: Path) -> set[str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return set(f.keys())
    except Exception as error:
        raise FormatError(f"cannot read {path} as safetensors: {error}") from None


def _require(present: set[str], path: Path, names: tuple[str, ...]) -> None:
    missing = [name for name in names if name not in present]
    if missing:
        raise FormatError(f"{path} lacks the tensor(s) {', '.join(missing)}")


def _gemma_scope(path: Path) -> dict:
    import numpy as np

    try:
        with np.load(path) as archive:
            tensors = {key: torch.from_numpy(archive[key]) for key in archive.files}
    except Exception as error:
        raise FormatError(f"cannot read {path} as a numpy .npz archive: {error}") from None
    _require(set(tensors), path, ("W_enc", "W_dec", "b_enc", "b_dec", "threshold"))
    layer = {
        "W_enc": tensors["W_enc"].T.contiguous(),  # stored (d, F)
        "W_dec": tensors["W_dec"],
        "b_enc": tensors["b_enc"],
        "b_dec": tensors["b_dec"],
        "threshold": tensors["threshold"],
    }
    _check_layer(layer, path, list(layer["W_dec"].shape))
    return layer


def _gemma_scope_2(path: Path, keys: set[str], cross_index: int | None, n_layers: int) -> dict:
    """A Gemma Scope 2 file: per-layer when `cross_index` is None, else layer `cross_index`
    of a cross-layer transcoder over `n_layers` layers."""
    _require(keys, path, ("w_enc", "w_dec", "b_enc", "b_dec", "threshold"))
    tensors = read_tensors(
        path, ["w_enc", "b_enc", "b_dec", "threshold", "affine_skip_connection"], error=FormatError
    )
    skip = tensors.get("affine_skip_connection")
    layer = {
        "W_enc": tensors["w_enc"].T.contiguous(),  # stored (d, F)
        "b_enc": tensors["b_enc"],
        "b_dec": tensors["b_dec"],
        "threshold": tensors["threshold"],
        # the file maps x to x @ affine; ours applies x @ W_skip.T
        "W_skip": None if skip is None else skip.T.contiguous(),
    }
    shape = tensor_shape(path, "w_dec", FormatError)
    if cross_index is None:
        _check_layer(layer, path, shape)
        return layer | {"decoder_file": (str(path), "w_dec")}
    n_features, d_model = layer["W_enc"].shape
    _check_layer(layer, path, [n_features, d_model])
    if shape != [n_features, n_layers, d_model]:
        raise FormatError(
            f"{path}: w_dec has shape {shape}, expected [{n_features}, {n_layers}, {d_model}] "
            f"(features x the {n_layers} listed layers x d_model)"
        )
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        # A feature of this layer writes to this layer and those after it only.
        return layer | {"W_dec": f.get_slice("w_dec")[:, cross_index:, :].contiguous()}


def _circuit_tracer_layer(path: Path, keys: set[str]) -> dict:
    _require(keys, path, ("W_enc", "W_dec", "b_enc", "b_dec"))
    names = ["W_enc", "b_enc", "b_dec", "activation_function.threshold", "W_skip"]
    tensors = read_tensors(path, names, error=FormatError)
    layer = {
        "W_enc": tensors["W_enc"],
        "b_enc": tensors["b_enc"],
        "b_dec": tensors["b_dec"],
        "threshold": tensors.get("activation_function.threshold"),
        "W_skip": tensors.get("W_skip"),
    }
    _check_layer(layer, path, tensor_shape(path, "W_dec", FormatError))
    return layer | {"decoder_file": (str(path), "W_dec")}


def _check_layer(layer: dict, path: Path, decoder_shape: list[int]) -> None:
    """Encoder, decoder and biases of one per-layer file agree on F and d."""
    n_features, d_model = layer["W_enc"].shape
    expected = {
        "decoder": ([n_features, d_model], decoder_shape),
        "b_enc": ([n_features], list(layer["b_enc"].shape)),
        "b_dec": ([d_model], list(layer["b_dec"].shape)),
    }
    for name, (want, got) in expected.items():
        if want != got:
            raise FormatError(
                f"{path}: {name} has shape {got}, expected {want} "
                f"(the encoder reads d_model={d_model} into {n_features} features)"
            )


def _check_same_shape(layers: list[dict], files: list[Path], key: str) -> None:
    shape = layers[0][key].shape
    for path, layer in zip(files, layers, strict=True):
        if layer[key].shape != shape:
            raise FormatError(
                f"{path}: {key} has shape {list(layer[key].shape)}, but {files[0].name} has "
                f"{list(shape)}; every layer must have the same width and d_model"
            )
