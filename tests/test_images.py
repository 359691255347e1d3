"""The one uint8 <-> float, HWC <-> CHW and resize home (reconet_lib.images) and that the library goes through it."""
from __future__ import annotations

import ast
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from reconet_lib import images
from reconet_lib.errors import UserInputError

LIBRARY = Path(__file__).resolve().parents[1] / "reconet_lib"


def test_uint8_pixels_round_trip_exactly_through_float_images():
    pixels = np.arange(2 * 5 * 7 * 3, dtype=np.int64).reshape(2, 5, 7, 3).astype(np.uint8)
    tensor = images.to_float(pixels)
    assert tensor.shape == (2, 3, 5, 7) and tensor.dtype == torch.float32
    assert float(tensor.min()) >= 0 and float(tensor.max()) <= 1
    assert torch.equal(tensor[1, 2], torch.from_numpy(pixels[1, :, :, 2]).float() / 255)
    assert np.array_equal(images.to_uint8(tensor), pixels)


def test_to_uint8_clamps_and_rounds_rather_than_truncating():
    values = torch.tensor([-0.5, 0.0, 0.4 / 255, 0.6 / 255, 127.5 / 255 + 1e-4, 1.0, 7.0]).view(1, 1, 7)
    assert images.to_uint8(values).ravel().tolist() == [0, 0, 0, 1, 128, 255, 255]


def test_read_only_arrays_and_other_dtypes():
    frozen = np.zeros((4, 4, 3), np.uint8)
    frozen.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns on stderr about read-only memory; notebooks must not
        assert images.to_float(frozen, torch.float16).dtype == torch.float16
        assert images.resize_pixels(frozen, (2, 2)).shape == (2, 2, 3)
    with pytest.raises(UserInputError, match="uint8"):
        images.to_float(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(UserInputError, match="float"):
        images.to_uint8(torch.zeros(3, 4, 4, dtype=torch.uint8))


@pytest.mark.parametrize("size", [(3, 5), (20, 9), (8, 8)])
def test_resize_gives_the_exact_size_keeps_dtype_and_range(size):
    image = torch.rand(2, 3, 8, 8)
    out = images.resize(image, size)
    assert out.shape == (2, 3, *size) and out.dtype == torch.float32
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    pixels = (np.random.default_rng(0).random((8, 8, 3)) * 255).astype(np.uint8)
    small = images.resize_pixels(pixels, size)
    assert small.shape == (*size, 3) and small.dtype == np.uint8


def test_shrinking_averages_instead_of_aliasing():
    """A one-pixel checkerboard halved becomes flat grey (antialiasing), not a copy of every other pixel."""
    board = (np.indices((16, 16)).sum(0) % 2 * 255).astype(np.uint8)[..., None].repeat(3, axis=2)
    half = images.resize_pixels(board, (8, 8)).astype(int)
    assert abs(half.mean() - 127.5) < 2 and half.std() < 3


def test_uint8_and_float_resizes_agree_to_one_level():
    pixels = (np.random.default_rng(1).random((30, 41, 3)) * 255).astype(np.uint8)
    via_uint8 = images.resize_pixels(pixels, (13, 17)).astype(int)
    via_float = images.to_uint8(images.resize(images.to_float(pixels), (13, 17))).astype(int)
    assert np.abs(via_uint8 - via_float).max() <= 1


def _conversions_outside_images(tree: ast.AST) -> list[int]:
    """Lines that divide or multiply by 255 (the uint8 <-> float conversion) or call F.interpolate/cv2.resize."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name = node.func.attr
            if name in ("div", "div_", "mul", "mul_") and any(
                    isinstance(a, ast.Constant) and a.value in (255, 255.0) for a in node.args):
                lines.append(node.lineno)
            if name == "resize" and isinstance(node.func.value, ast.Name) and node.func.value.id == "cv2":
                lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("module", ["pairs", "sintel", "metrics", "styles", "stylize", "frames", "codec",
                                   "frame_folders", "video", "video_pairs", "estimate"])
def test_image_conversion_and_resizing_are_written_only_in_the_images_module(module):
    tree = ast.parse((LIBRARY / f"{module}.py").read_text())
    assert _conversions_outside_images(tree) == [], f"{module}.py converts images itself; use reconet_lib.images"
