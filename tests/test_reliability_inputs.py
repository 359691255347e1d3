"""Inputs that used to pass silently or end in torch's words: each is now one line naming the thing and the fix."""
from __future__ import annotations

import os
import pickle

import pytest
import torch

from reconet_lib.checkpoint import load_checkpoint, load_model, model_checkpoint, save_checkpoint
from reconet_lib.errors import UserInputError
from reconet_lib.losses import VGGFeatures, gram_matrix, tv_loss


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def test_gram_matrix_of_empty_features_is_an_error_not_nan():
    with pytest.raises(UserInputError, match="empty features"):
        gram_matrix(torch.zeros(1, 0, 4, 4))


@pytest.mark.parametrize("bad, fragment", [(torch.full((1, 3, 8, 8), 200.0), "divide 0..255"),
                                           (torch.full((1, 3, 8, 8), float("nan")), "NaN")])
def test_vgg_features_and_tv_loss_refuse_0_255_and_nan_images(bad, fragment):
    with pytest.raises(UserInputError, match=fragment):
        VGGFeatures(weights=None, layers=("relu1_2",))(bad)
    with pytest.raises(UserInputError, match=fragment):
        tv_loss(bad)


def test_slightly_overshooting_network_outputs_are_still_accepted():
    x = torch.linspace(-0.3, 1.3, 3 * 64).reshape(1, 3, 8, 8)
    assert torch.isfinite(tv_loss(x))
    VGGFeatures(weights=None, layers=("relu1_2",))(x)


@pytest.mark.parametrize("write", ["torch.save", "legacy pickle"])
def test_a_checkpoint_holding_code_is_named_as_such_without_torch_warnings(tmp_path, capfd, write):
    path = tmp_path / "evil.pt"
    if write == "torch.save":
        torch.save({"model": {}, "hook": _RunsCode()}, path)
    else:
        path.write_bytes(pickle.dumps({"hook": _RunsCode()}, protocol=2))
    with pytest.raises(UserInputError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "holds code" in message and str(path) in message and "damaged" not in message
    assert "weights_only=False" not in message and "\n" not in message
    out, err = capfd.readouterr()
    assert err == "" and "must never run" not in out


def test_vgg_weights_that_are_not_weights_never_advise_unsafe_loading(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# a text file\n")
    with pytest.raises(UserInputError) as info:
        VGGFeatures(weights=readme)
    assert str(readme) in str(info.value) and "text file" in str(info.value)
    assert "weights_only=False" not in str(info.value)


def test_a_state_dict_shape_mismatch_names_the_key_and_the_shapes(tmp_path):
    from reconet_lib.network import ReCoNet

    payload = model_checkpoint(ReCoNet.from_preset("tiny"), "random", "0" * 64)
    key = next(k for k, v in payload["model"].items() if v.dim() == 4)
    payload["model"][key] = torch.zeros(1, 1, 1, 1)
    path = save_checkpoint(tmp_path / "changed.pt", payload)
    with pytest.raises(UserInputError) as info:
        load_model(path)
    message = str(info.value)
    assert key in message and "torch.Size([1, 1, 1, 1])" in message and "\n" not in message, message
