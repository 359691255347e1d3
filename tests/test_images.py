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


def _is_255(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value in (255, 255.0)


def _conversions_outside_images(tree: ast.AST, interpolate_allowed: bool = False) -> list[int]:
    """Lines that divide or multiply by 255 (the uint8 <-> float conversion), or resize with F.interpolate or
    cv2.resize (``interpolate_allowed``: F.interpolate on something that is not an image, e.g. a flow field)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Div, ast.Mult)) and (
                _is_255(node.left) or _is_255(node.right)):
            lines.append(node.lineno)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name, owner = node.func.attr, node.func.value
            if name in ("div", "div_", "mul", "mul_") and any(_is_255(a) for a in node.args):
                lines.append(node.lineno)
            resizes = (owner.id, name) == ("cv2", "resize") or (
                (owner.id, name) == ("F", "interpolate") and not interpolate_allowed) if isinstance(owner, ast.Name) else False
            if resizes:
                lines.append(node.lineno)
    return sorted(set(lines))


#: Modules that may do what the check looks for, because what they convert or resize is not an image.
NOT_IMAGES = {
    "flow": "the Middlebury colour wheel (floor(255 * c), its own rule) and flow fields (F.interpolate in resize_flow)",
    "network": "F.interpolate is the decoder's nearest-neighbour upsampling layer, inside the network",
    "metrics": "F.interpolate enlarges a valid mask for the error display (metrics.py is edited under issue #20)",
}
MODULES = sorted(p.stem for p in LIBRARY.glob("*.py") if p.stem not in ("images", "__init__", "__main__"))


@pytest.mark.parametrize("module", MODULES)
def test_image_conversion_and_resizing_are_written_only_in_the_images_module(module):
    tree = ast.parse((LIBRARY / f"{module}.py").read_text())
    lines = _conversions_outside_images(tree, interpolate_allowed=module in NOT_IMAGES)
    if module == "flow":  # the colour wheel's own rule (floor, not round) in its two functions, and nothing else
        text = (LIBRARY / "flow.py").read_text()
        wheel = {n for f in ast.walk(tree)
                 if isinstance(f, ast.FunctionDef) and f.name in ("wheel_hues", "_flow_to_rgb_batch")
                 for n in range(f.lineno, f.end_lineno + 1)}
        assert [n for n in lines if n not in wheel] == [], text.splitlines()[lines[0] - 1]
        return
    assert lines == [], f"{module}.py converts or resizes images itself (lines {lines}); use reconet_lib.images"


def test_the_check_finds_a_hand_written_conversion_and_resize():
    source = "x = frame / 255.0\ny = (img * 255).round()\nz = t.div(255)\nw = cv2.resize(a, (2, 2))\nv = F.interpolate(a)\n"
    assert _conversions_outside_images(ast.parse(source)) == [1, 2, 3, 4, 5]


def test_numpy_conversions_agree_with_the_tensor_ones():
    pixels = np.random.default_rng(0).integers(0, 256, size=(2, 5, 7, 3), dtype=np.uint8)
    unit = images.unit_array(pixels)
    assert unit.dtype == np.float64 and np.allclose(unit, images.to_float(pixels).movedim(-3, -1).numpy(), atol=1e-7)
    values = np.random.default_rng(1).uniform(-0.2, 1.2, size=(5, 7, 3)).astype(np.float32)
    from_tensor = images.to_uint8(torch.from_numpy(values).permute(2, 0, 1))
    assert np.array_equal(images.uint8_array(values), from_tensor)  # clip, times 255, round half to even: the same
    assert images.uint8_array(np.array([0.5 / 255, 1.5 / 255, 2.5 / 255])).tolist() == [0, 2, 2]
    with pytest.raises(UserInputError):
        images.unit_array(unit)
    with pytest.raises(UserInputError):
        images.uint8_array(pixels)


def test_live_camera_frames_are_resized_by_the_images_filter():
    from reconet_lib import live

    frame = np.random.default_rng(2).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    assert np.array_equal(live._resize(frame, 32), images.resize_pixels(frame, (24, 32)))
    assert live._resize(frame, None) is frame
