"""Named tensors and shapes read from safetensors files, errors raised as the caller's type."""

import pytest
import torch
from safetensors.torch import save_file

from circuitflow.attribution.safetensors_io import read_tensors, tensor_shape


class LoaderError(ValueError):
    pass


@pytest.fixture
def layer_file(tmp_path):
    path = tmp_path / "layer_0.safetensors"
    save_file({"W_enc": torch.arange(12.0).reshape(3, 4), "b_enc": torch.ones(3)}, str(path))
    return path


def test_only_the_named_tensors_that_exist_are_read(layer_file):
    got = read_tensors(layer_file, ["b_enc", "W_skip"])
    assert list(got) == ["b_enc"] and torch.equal(got["b_enc"], torch.ones(3))
    assert sorted(read_tensors(layer_file)) == ["W_enc", "b_enc"]
    assert tensor_shape(layer_file, "W_enc") == [3, 4]


def test_errors_name_the_file_in_the_callers_error_type(layer_file, tmp_path):
    with pytest.raises(LoaderError, match="missing transcoder file .*absent"):
        read_tensors(tmp_path / "absent.safetensors", error=LoaderError)
    with pytest.raises(LoaderError, match=r"lacks the tensor 'W_dec'"):
        tensor_shape(layer_file, "W_dec", LoaderError)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(layer_file.read_bytes()[:40])  # a header cut short
    with pytest.raises(LoaderError, match="cannot read .*broken"):
        read_tensors(broken, error=LoaderError)
