"""Image and frame sizes: the one place where a size given by a user is parsed, checked and resolved.

A size has **one meaning** in every command and function of the library:

* ``N`` (an ``int``, or the text ``"512"``): the **longer side** becomes N pixels, the aspect ratio is kept
  (a 1280x720 video with ``N = 640`` becomes 640x360);
* ``WxH`` (the text ``"640x360"``): exactly W pixels **wide** and H pixels **tall**, as video players and
  ffmpeg write sizes. In Python such a size is the pair ``(H, W)`` (height first, as tensors are shaped).

Commands whose size must be exact (``train --crop`` / ``--resize``) accept only ``WxH`` and answer a bare ``N``
with a hint (:func:`parse_exact_size`): a square is written ``256x256``.

Functions here raise :class:`~reconet_lib.errors.UserInputError` (one line: what is wrong, how to fix it);
the ``*_arg`` variants raise :class:`argparse.ArgumentTypeError` so that argparse reports them as usage errors.
"""
from __future__ import annotations

import argparse
import numbers
import re

from .errors import UserInputError

#: A size as functions take it: ``None`` (keep), ``N`` (longer side) or ``(H, W)`` (exact).
Size = int | tuple[int, int]

_SIZE_TEXT = re.compile(r"\s*(-?\d+)\s*(?:[xX]\s*(-?\d+)\s*)?")
_HINT = "give the longer side N (e.g. 512) or WxH, width x height (e.g. 640x360)"


def parse_size(text: str) -> Size:
    """Read a size typed by a user: ``"512"`` -> 512 (longer side), ``"640x360"`` -> ``(360, 640)`` (H, W).

    Messages speak in the order the user typed: width first (``"0x10"`` is "width 0, height 10").

    Raises:
        UserInputError: not a size, or a zero or negative side.
    """
    match = _SIZE_TEXT.fullmatch(str(text))
    if not match:
        raise UserInputError(f"{text!r} is not a size; {_HINT}")
    first, second = int(match.group(1)), match.group(2)
    if second is None:
        return check_size(first, what=f"size {text!r}")
    width, height = first, int(second)
    if width < 1 or height < 1:
        raise UserInputError(
            f"size {text!r} must have a positive width and height; got width {width}, height {height} "
            "(WxH is width x height in pixels, e.g. 640x360)"
        )
    return height, width


def parse_exact_size(text: str) -> tuple[int, int]:
    """Read an exact ``WxH`` size (``"640x360"`` -> ``(360, 640)``); a bare ``N`` is refused with a hint."""
    size = parse_size(text)
    if isinstance(size, int):
        raise UserInputError(
            f"{text!r} is ambiguous here; this size must be exact: give WxH, e.g. {size}x{size} for a square"
        )
    return size


def size_arg(text: str) -> Size:
    """argparse ``type=`` for ``N`` (longer side) or ``WxH``; see :func:`parse_size`."""
    try:
        return parse_size(text)
    except UserInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def exact_size_arg(text: str) -> tuple[int, int]:
    """argparse ``type=`` for an exact ``WxH`` only; see :func:`parse_exact_size`."""
    try:
        return parse_exact_size(text)
    except UserInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def check_size(size, *, what: str = "size") -> Size | None:
    """Check a size given in Python: ``None``, a positive ``int`` N (longer side) or ``(H, W)`` of positive ints.

    Returns:
        ``None``, ``N`` as an ``int``, or ``(H, W)`` as a tuple of ``int``.
    Raises:
        UserInputError: anything else (floats, bools, zero or negative sides, wrong length); ``what`` names it.
    """
    if size is None:
        return None
    if _is_int(size):
        if size < 1:
            raise UserInputError(f"{what} must be a positive number of pixels; got {size}")
        return int(size)
    if isinstance(size, (tuple, list)) and len(size) == 2 and all(_is_int(s) for s in size):
        if min(size) < 1:
            raise UserInputError(
                f"{what} must be positive (height, width); got height {size[0]}, width {size[1]}"
            )
        return int(size[0]), int(size[1])
    raise UserInputError(f"{what} must be None, an int (longer side) or (height, width); got {size!r}")


def size_pair(size, what: str) -> tuple[int, int]:
    """Check an exact ``(height, width)`` pair of positive integers; ``what`` names the caller in the error."""
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError):
        raise UserInputError(f"{what}: size must be (height, width); got {size!r}") from None
    if h <= 0 or w <= 0:
        raise UserInputError(f"{what}: size must be positive; got height {h}, width {w}")
    return h, w


def resolve_size(size: Size | None, frame_size: tuple[int, int]) -> tuple[int, int]:
    """The ``(h, w)`` that frames of ``frame_size`` ``(H, W)`` get for ``size``.

    ``None`` keeps ``(H, W)``; ``N`` scales the longer side to N and the other side in proportion (rounded,
    at least 1 pixel); ``(h, w)`` is returned as it is.
    """
    size = check_size(size)
    h, w = (int(s) for s in frame_size)
    if size is None:
        return h, w
    if isinstance(size, int):
        scale = size / max(h, w)
        return max(1, round(h * scale)), max(1, round(w * scale))
    return size


def format_size(size: tuple[int, int]) -> str:
    """``(H, W)`` as users read it: ``"WxH"``."""
    return f"{size[1]}x{size[0]}"


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
