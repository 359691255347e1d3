"""Sizes: one meaning of N (longer side) and WxH (exact width x height) everywhere."""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from reconet_lib import sizes
from reconet_lib.errors import UserInputError


def test_parse_size_reads_longer_side_or_width_x_height():
    assert sizes.parse_size("512") == 512
    assert sizes.parse_size("640x360") == (360, 640)  # (H, W): 640 wide, 360 tall
    assert sizes.parse_size(" 33 X 17 ") == (17, 33)
    for bad in ("0", "x3", "12x", "3.5", "0x5", "5x0", "-4", "", "4x4x4", "inf"):
        with pytest.raises(UserInputError, match="size"):
            sizes.parse_size(bad)


def test_size_arg_reports_bad_text_as_an_argparse_error():
    assert sizes.size_arg("640x360") == (360, 640)
    with pytest.raises(argparse.ArgumentTypeError, match="WxH"):
        sizes.size_arg("3.5")


def test_exact_sizes_refuse_a_bare_number_with_the_square_hint():
    assert sizes.parse_exact_size("320x240") == (240, 320)
    with pytest.raises(UserInputError, match="256x256"):
        sizes.parse_exact_size("256")
    with pytest.raises(argparse.ArgumentTypeError, match="256x256 for a square"):
        sizes.exact_size_arg("256")


def test_resolve_size_keeps_the_aspect_ratio_for_the_longer_side():
    assert sizes.resolve_size(None, (720, 1280)) == (720, 1280)
    assert sizes.resolve_size(640, (720, 1280)) == (360, 640)
    assert sizes.resolve_size(640, (1280, 720)) == (640, 360)  # portrait: the height is the longer side
    assert sizes.resolve_size(32, (48, 64)) == (24, 32)
    assert sizes.resolve_size(1, (2, 1000)) == (1, 1)  # never below one pixel
    assert sizes.resolve_size((17, 33), (48, 64)) == (17, 33)
    assert sizes.resolve_size(np.int64(32), (48, 64)) == (24, 32)


@pytest.mark.parametrize("bad", [0, -3, (10,), (0, 5), 2.5, True, "512", (2.0, 3)])
def test_check_size_refuses_what_is_not_a_size(bad):
    with pytest.raises(UserInputError, match="size"):
        sizes.check_size(bad)


def test_size_pair_checks_an_exact_height_width_pair():
    assert sizes.size_pair((3, 4), "x") == (3, 4)
    with pytest.raises(UserInputError, match="resize_flow: size must be positive"):
        sizes.size_pair((0, 4), "resize_flow")
    with pytest.raises(UserInputError, match="resize_flow: size must be"):
        sizes.size_pair(7, "resize_flow")


def test_format_size_writes_width_x_height():
    assert sizes.format_size((360, 640)) == "640x360"
    assert sizes.parse_size(sizes.format_size((17, 33))) == (17, 33)


@pytest.mark.parametrize("text, fragment", [
    ("0x10", "got width 0, height 10"),
    ("10x0", "got width 10, height 0"),
    ("640x-3", "got width 640, height -3"),
])
def test_size_messages_speak_in_the_width_x_height_order_typed(text, fragment):
    with pytest.raises(UserInputError, match="must have a positive width and height") as info:
        sizes.parse_size(text)
    assert fragment in str(info.value)
    with pytest.raises(argparse.ArgumentTypeError, match=fragment):
        sizes.size_arg(text)


def test_negative_sizes_are_called_not_positive():
    with pytest.raises(UserInputError, match="size '-5' must be a positive number of pixels; got -5"):
        sizes.parse_size("-5")


def test_python_size_pairs_name_height_and_width_in_errors():
    with pytest.raises(UserInputError, match="got height 10, width 0"):
        sizes.check_size((10, 0))
    with pytest.raises(UserInputError, match="got height 0, width 4"):
        sizes.size_pair((0, 4), "resize_flow")
