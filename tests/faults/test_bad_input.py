"""Bad input gets one clear line and no traceback: sweep files, settings, stores, run ids,
model and transcoder directories, very long prompts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from circuitflow.attribution.models import ModelLoadError, load_model
from circuitflow.attribution.tokens import PromptError, to_token_ids
from circuitflow.attribution.transcoders import TranscoderError, load_transcoders
from circuitflow.flows.cli import main
from circuitflow.tasks.runtime import BUILTIN_MODEL

SWEEP_FILES = {
    "binary.txt": (b"\x00\x01binary", "is a binary file"),
    "empty.txt": (b"", "holds no prompts"),
    "latin1.txt": (b"caf\xe9\n", ":1: not UTF-8 text"),
    "unknown.yaml": (b"prompts: [a]\nfoo: 1\n", ":2: unknown key 'foo'"),
    "wrong.yaml": (b"prompts: [a]\nparams:\n  batch_size: lots\n", ":3: params.batch_size"),
    "high.yaml": (b"prompts: [a]\nparams:\n  node_threshold: 1.5\n", ":3: params.node_threshold"),
    "nan.yaml": (b"prompts: [a]\ngrid:\n  edge_threshold: [.nan]\n", ":3: grid.edge_threshold"),
}


def _cli(*args: str) -> Result:
    """The command, in this process through click's runner (a fresh interpreter per case cost
    minutes on a loaded 2-core machine). These inputs are refused before any flow starts, so an
    API address that nothing serves keeps each command from booting a Prefect server."""
    return CliRunner().invoke(main, list(args), env={"PREFECT_API_URL": "http://127.0.0.1:9/api"})


def _one_line_error(done: Result, fragment: str) -> str:
    """The command failed with one 'Error: ...' line holding `fragment`, and no traceback."""
    assert done.exit_code != 0
    assert done.exception is None or isinstance(done.exception, SystemExit), done.exception
    assert "Traceback" not in done.output
    errors = [line for line in done.stderr.splitlines() if line.lower().startswith("error")]
    assert len(errors) == 1, done.stderr
    assert fragment in errors[0], errors[0]
    return errors[0]


def test_bad_sweep_files_and_stores_get_one_line(tmp_path: Path) -> None:
    for name, (data, fragment) in SWEEP_FILES.items():
        (tmp_path / name).write_bytes(data)
        _one_line_error(_cli("sweep", str(tmp_path / name), "--store", str(tmp_path)), fragment)
    good = tmp_path / "good.txt"
    good.write_text("The capital of the state containing Dallas is\n")
    (tmp_path / "a-file").write_text("")
    stores = {
        str(tmp_path / "a-file" / "store"): "is a file, not a directory",
        "s3://no-such-bucket/store": "cannot write to the store at s3://no-such-bucket/store",
    }
    for store, fragment in stores.items():
        _one_line_error(_cli("sweep", str(good), "--store", store), fragment)
    for option, value in (("--node-threshold", "0"), ("--edge-threshold", "1.5"),
                          ("--node-threshold", "nan")):  # fmt: skip
        line = _one_line_error(_cli("attribute", "a b", option, value), "must be in (0, 1]")
        assert option in line
    for quoted in ('"6d287675efd4c3221ebc"', "../../etc"):  # pasted from --format csv; a path
        _one_line_error(_cli("export", quoted, "--store", str(tmp_path)), "is not a run id")


def test_a_read_only_store_is_refused_before_anything_starts(tmp_path: Path) -> None:
    from circuitflow.store import StoreWriteError
    from circuitflow.store.fs import check_writable

    mount = tmp_path / "ro"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(mount)])
    if mounted.returncode != 0:  # not root: a directory without write permission instead
        mount.chmod(0o555)
    try:
        with pytest.raises(StoreWriteError, match="read-only"):
            check_writable(str(mount / "store"))
    finally:
        if mounted.returncode == 0:
            subprocess.run(["umount", "-l", str(mount)], check=False)
    check_writable(str(tmp_path / "fine" / "store"))  # a path to create is fine


def test_damaged_model_and_transcoder_directories_name_the_file(tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(BUILTIN_MODEL, model)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:10_000])
    with pytest.raises(ModelLoadError, match="model.safetensors cannot be read"):
        load_model(model)
    plt = model / "transcoders" / "plt"
    (plt / "layer_2.safetensors").unlink()
    with pytest.raises(TranscoderError, match="layer_2.safetensors"):
        load_transcoders(plt)


def test_a_transcoder_config_that_is_not_yaml_gets_one_line(tmp_path: Path) -> None:
    transcoders = tmp_path / "transcoders"
    shutil.copytree(BUILTIN_MODEL / "transcoders" / "plt", transcoders)
    (transcoders / "config.yaml").write_text("model_kind: [per-layer\n")
    done = _cli("attribute", "w1 w2", "-t", str(transcoders), "--store", str(tmp_path / "s"))
    line = _one_line_error(done, "config.yaml is not valid YAML")
    assert str(transcoders) in line and "line 2" in line
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_very_long_prompt_is_not_repeated_in_its_error() -> None:
    model = load_model(BUILTIN_MODEL)
    for prompt in ("x" * 120_000, "The " * 30_000):
        with pytest.raises(PromptError) as error:
            to_token_ids(prompt, model.tokenizer, n_ctx=model.cfg.n_ctx, d_vocab=model.cfg.d_vocab)
        assert len(str(error.value)) < 300
