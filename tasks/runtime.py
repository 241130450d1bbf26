"""What a task needs besides keys: the setup of a run, and models loaded once per process.

A `Setup` names the model, the transcoder set and the store: small strings that travel to any
worker (a Dask worker on another machine included). Each worker process loads the model and
transcoders the first time a stage needs them and keeps them, keyed by the setup
(`loaded(setup)`). HookedTransformer keeps its hooks as model state, so two threads must never
run one model at once: every use of the model holds `Loaded.lock`.

Identities (the digests that go into keys) come from the files on disk, hashed once per file
change through the store's digest cache, so a worker needs neither the model nor the tensors to
know whether a stage is already stored.
"""

from __future__ import annotations

import gc
import json
import re
import sys
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

from circuitflow.attribution import ReplacementModel, load_model, load_transcoders
from circuitflow.attribution.hub import HubError, model_revision, snapshot_identity
from circuitflow.attribution.models import ModelLoadError
from circuitflow.attribution.transcoder_formats import (
    FormatError,
    cached_file_identity,
    listed_files,
)
from circuitflow.attribution.transcoders import TranscoderError, transcoder_directory
from circuitflow.models import BUILTIN_MODEL
from circuitflow.store import DigestCache, model_digest, transcoder_digest
from circuitflow.store.fs import default_root
from circuitflow.store.keys import canonical_json, sha256_hex

TRANSCODER_PRESETS = ("plt", "clt")
# circuit-tracer's legacy short names for two hosted sets, so its users' command lines carry over.
TRANSCODER_SHORTCUTS = {
    "gemma": "mwhanna/gemma-scope-transcoders",
    "llama": "mntss/transcoder-Llama-3.2-1B",
}
DEVICE_HELP = (
    "auto (CUDA when there is a GPU, else CPU), cpu, cuda, cuda:N or mps. The device is not "
    "part of the stored stages' keys: CPU and GPU results agree within float tolerance."
)


def resolve_device(device: str | None) -> str:
    """The torch device a run uses: 'auto' (or None) is 'cuda' when a GPU is there, else 'cpu'.

    An unavailable or malformed device is a ValueError with one line saying what is there.
    """
    name = (device or "auto").strip().lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError("device 'mps' is not available here (no Apple GPU): use --device cpu")
        return name
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if not match:
        raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps, got {device!r}")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ValueError(f"device {device!r} is not available here (no CUDA GPU): use --device cpu")
    if match.group(1) is not None and int(match.group(1)) >= count:
        raise ValueError(f"device {device!r} does not exist: this machine has {count} GPU(s)")
    return name


def gpu_count(device: str) -> int:
    """How many GPUs a sweep on `device` can spread over: all of them for 'cuda', else 0."""
    return torch.cuda.device_count() if device == "cuda" else 0


def process_device(device: str, worker: object | None, n_gpus: int) -> str:
    """The device this process uses for a setup's `device`.

    A sweep on 'cuda' starts one Dask worker per GPU, named 0, 1, ...; each worker takes the GPU
    of its number, so the workers do not all share the first GPU. Anything else is unchanged.
    """
    if device == "cuda" and isinstance(worker, int) and n_gpus > 1:
        return f"cuda:{worker % n_gpus}"
    return device


def _worker_name() -> object | None:
    """This process's Dask worker name, or None outside a Dask worker."""
    # A worker process has imported distributed already; importing it to find out costs 1.3 s.
    if "distributed" not in sys.modules:
        return None
    from distributed import get_worker

    try:
        return get_worker().name
    except ValueError:
        return None


@dataclass(frozen=True)
class MemoryOptions:
    """How a run may use memory. None of it enters a key: it changes where weights wait and
    which runs are refused, never what a run computes.

    max_memory:   bytes; a run whose estimated peak (`attribution.memory`) is larger is refused
                  before its backward passes start. None: no limit.
    offload:      "cpu" or "disk": where the transcoders' weights wait between uses (see
                  `attribution.transcoders`); None keeps them on the run's device.
    lazy_encoder: read each layer's encoder from its file when it is used.
    """

    max_memory: int | None = None
    offload: str | None = None
    lazy_encoder: bool = False


@dataclass(frozen=True)
class Setup:
    """The model, transcoders and store of a run, resolved to paths or hub names.

    model_digest, transcoders_digest: identities known without the files (a graph imported
    from circuit-tracer: its model is not here to hash; see `tasks.imports`); None means
    "hash the files" (`identity`).
    """

    model: str
    transcoders: str
    store: str
    device: str = "cpu"
    memory: MemoryOptions = MemoryOptions()
    model_digest: str | None = None
    transcoders_digest: str | None = None

    @classmethod
    def resolve(
        cls,
        model: str | None = None,
        transcoders: str | None = None,
        store: str | None = None,
        device: str | None = None,
        memory: MemoryOptions | None = None,
    ) -> Setup:
        """Fill in defaults: the built-in model, its per-layer transcoders, the default store,
        the device ('auto': CUDA when there is a GPU).

        `transcoders` may name a preset of the model directory ('plt', 'clt': its
        transcoders/<name>/), a directory, a hub reference, or one of circuit-tracer's short
        names ('gemma', 'llama': the hosted sets they stand for).
        """
        if not model and not BUILTIN_MODEL.is_dir():
            raise ValueError(
                f"the built-in model is missing at {BUILTIN_MODEL}: regenerate it with "
                "`circuitflow train-demo`, or pass --model"
            )
        model_path = _existing_path(model) if model else str(BUILTIN_MODEL)
        name = transcoders or "plt"
        if name in TRANSCODER_SHORTCUTS and not Path(name).exists():
            name = TRANSCODER_SHORTCUTS[name]
        if name in TRANSCODER_PRESETS:
            if not Path(model_path).is_dir():
                raise ValueError(
                    f"transcoder preset {name!r} needs a model directory with transcoders/{name}/; "
                    f"{model_path!r} is a model name: pass --transcoders DIR"
                )
            tc_path = str(Path(model_path) / "transcoders" / name)
        else:
            tc_path = _existing_path(name)
        return cls(
            model=model_path,
            transcoders=tc_path,
            store=default_root(store),
            device=resolve_device(device),
            memory=memory or MemoryOptions(),
        )

    @property
    def model_label(self) -> str:
        """A short name for people: the directory name, or the hub name."""
        return Path(self.model).name if Path(self.model).is_dir() else self.model

    @property
    def transcoders_label(self) -> str:
        path = Path(self.transcoders)
        return path.name if path.is_dir() else self.transcoders


def _existing_path(text: str) -> str:
    """A directory given as a path is made absolute (workers may run elsewhere)."""
    path = Path(text).expanduser()
    return str(path.resolve()) if path.exists() else text


@dataclass
class Loaded:
    """A model and its transcoders in this process, with the lock that serialises their use."""

    replacement: ReplacementModel
    lock: threading.Lock


_loaded: dict[tuple[Setup, str], Loaded] = {}
_loading = threading.Lock()


def loaded(setup: Setup, dtype: str = "float32") -> Loaded:
    """The model and transcoders of `setup` in precision `dtype` (a RunParams.dtype name),
    loaded on first use in this process, on this process's device (see `process_device`)."""
    with _loading:
        if (setup, dtype) not in _loaded:
            n_gpus = torch.cuda.device_count() if setup.device == "cuda" else 0
            device = process_device(setup.device, _worker_name(), n_gpus)
            precision = getattr(torch, dtype)
            model = load_model(setup.model, device=device, dtype=precision)
            transcoders = load_transcoders(
                setup.transcoders,
                device=device,
                dtype=precision,
                lazy_encoder=setup.memory.lazy_encoder,
                offload=setup.memory.offload,
            )
            replacement = ReplacementModel(model, transcoders)
            _loaded[(setup, dtype)] = Loaded(replacement, threading.Lock())
            # The model and every module imported so far live as long as the process: out of
            # the cyclic collector's way, whose full passes walked them all (7 ms a run here).
            gc.freeze()
        return _loaded[(setup, dtype)]


@cache
def model_identity(model: str) -> str:
    """Digest of a model: its config.json and weight files (or, for a hub name, its weights)."""
    directory = Path(model)
    if directory.is_dir():
        config = json.loads((directory / "config.json").read_text())
        return model_digest(config, [directory / "model.safetensors"], cache=DigestCache())
    # A hub name: its revision names the weights; nothing is loaded or hashed here.
    try:
        return model_digest({"hub": model_revision(model)}, {})
    except HubError as error:
        raise ModelLoadError(str(error)) from None


@cache
def transcoders_identity(transcoders: str) -> str:
    """Digest of a transcoder set: for a hub snapshot, the commit and the cache's blob names
    (an LFS blob's name is its SHA-256); otherwise its files, hashed once per change."""
    path = transcoder_directory(transcoders)
    if (listed := _listed_files(path)) is not None:
        return _listed_identity([path / "config.yaml", *listed])
    if (snapshot := snapshot_identity(path)) is not None:
        return sha256_hex(canonical_json({"hub-transcoders": snapshot}))
    return transcoder_digest(path, cache=DigestCache())


def _listed_files(path: Path) -> list[Path] | None:
    """The files a `transcoders:`-listing config names (None for the directory layout)."""
    try:
        return listed_files(path)
    except FormatError as error:
        raise TranscoderError(str(error)) from None


def _listed_identity(files: list[Path]) -> str:
    """A listed set's files, each named by its hub blob when cached (no reading), else hashed."""
    digests = DigestCache()
    named = [cached_file_identity(f) or {"sha256": digests.digest(f)} for f in files]
    return sha256_hex(canonical_json({"listed-transcoders": named}))


def identity(setup: Setup, name: str) -> str:
    """The identity a stage's key may name: "model" or "transcoders"."""
    known = {"model": setup.model_digest, "transcoders": setup.transcoders_digest}.get(name)
    if known:
        return known
    if name == "model":
        return model_identity(setup.model)
    if name == "transcoders":
        return transcoders_identity(setup.transcoders)
    raise ValueError(f"unknown identity {name!r}: a stage may depend on 'model' or 'transcoders'")
