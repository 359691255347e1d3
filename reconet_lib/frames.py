"""Video frames as arrays, and what is known about a clip before decoding it.

Frames are ``uint8`` arrays ``(H, W, 3)``, RGB, at the I/O boundary of the library (files, video, widgets); the
stylising pipeline converts them to and from the network's ``(B, 3, H, W)`` [0, 1] images. A frame's presentation
time is an exact :class:`~fractions.Fraction` of seconds (``Fraction(1, 10)``, not 0.1) so that a time written at
the source's time base is the same integer tick it was read as. This module holds the rules every reader and
writer shares: channel conversion, resizing, padding to even size for H.264, and the frame-rate check.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import UserInputError
from .sizes import Size, resolve_size

#: Frame rate used for outputs whose source has none (frame folders without times, arrays).
DEFAULT_FPS = 25.0
#: Frame rates outside this range are refused (:func:`check_fps`): frames per second.
MIN_FPS, MAX_FPS = 0.1, 1000.0


@dataclass(frozen=True)
class VideoInfo:
    """What is known about a source before decoding it.

    Attributes:
        fps: frames per second (the average over the clip when frames are not evenly spaced), or ``None`` for
            frame folders and arrays without recorded times.
        frame_count: number of frames (for video files counted from the container's packets without
            decoding), or ``None`` when the container does not tell.
        size: ``(H, W)`` of the frames as they are read (before any ``size=`` resize).
        has_audio: whether the source has an audio track.
        path: the file or folder, or ``None`` for in-memory frames.
        time_base: the unit, in seconds, of the source's frame times (``1/10240`` for a typical MP4); ``None``
            when the source records no times (its frames are then ``1 / fps`` apart).
    """

    fps: float | None
    frame_count: int | None
    size: tuple[int, int]
    has_audio: bool
    path: Path | None
    time_base: Fraction | None = None


def constant_times(rate: float | Fraction) -> tuple[Fraction, Fraction]:
    """``(time base, seconds per frame)`` of evenly spaced frames at ``rate`` frames per second.

    The rate is taken as an exact fraction (``29.97`` as ``30000/1001``); frame ``i`` is at ``i * step`` seconds.
    """
    exact = Fraction(rate).limit_denominator(1001)
    return 1 / exact, 1 / exact


def to_rgb_uint8(frame, *, what: str = "frame") -> np.ndarray:
    """Convert a grey ``(H, W)``/``(H, W, 1)``, RGB or RGBA ``(H, W, 4)`` uint8 array to ``(H, W, 3)`` RGB."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise UserInputError(
            f"{what} has dtype {frame.dtype}; frames must be uint8 (0..255). "
            "Convert a [0, 1] float image with (img * 255).round().astype(np.uint8)"
        )
    if frame.ndim == 2:
        frame = frame[..., None]
    if frame.ndim != 3 or frame.shape[2] not in (1, 3, 4) or min(frame.shape[:2]) < 1:
        raise UserInputError(f"{what} has shape {frame.shape}; expected (H, W, 3) RGB (or grey / RGBA)")
    if frame.shape[2] == 1:
        frame = np.repeat(frame, 3, axis=2)
    elif frame.shape[2] == 4:
        frame = frame[..., :3]
    return np.ascontiguousarray(frame)


def resize_frame(frame: np.ndarray, size: Size | None) -> np.ndarray:
    """Resize a ``(H, W, 3)`` uint8 frame: ``size`` is ``None`` (keep), the longer side, or ``(h, w)``.

    The filter is the library's one resize (:func:`reconet_lib.images.resize`: bilinear with antialiasing, so
    shrinking averages instead of aliasing).
    """
    if size is None:
        return frame
    # here, not at the top: the resize runs in torch, and decoding without resizing (the OpenVINO backend)
    # must not import it
    from . import images

    return images.resize_pixels(frame, resolve_size(size, frame.shape[:2]))


def target_size(frame_size: tuple[int, int], size: Size | None) -> tuple[int, int]:
    """``(h, w)`` that :func:`resize_frame` produces for frames of ``frame_size`` ``(H, W)``.

    Kept for the notebooks; the rule itself is :func:`reconet_lib.sizes.resolve_size`.
    """
    return resolve_size(size, frame_size)


def pad_to_even(frame: np.ndarray) -> np.ndarray:
    """Pad an ``(H, W, 3)`` frame to even height and width by repeating its last row/column (bottom/right).

    H.264 in ``yuv420p`` stores colour at half resolution and needs even sizes; padding keeps every original
    pixel where it was, whereas resizing would blur the whole frame.
    """
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def check_fps(fps, *, what: str = "fps") -> float:
    """A frame rate as a float, refused unless finite and between :data:`MIN_FPS` and :data:`MAX_FPS`.

    Raises:
        UserInputError: not a number, NaN, infinite, zero, negative or absurd (``0.0001``).
    """
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real):
        raise UserInputError(f"{what}={fps!r} is not a frame rate; give frames per second, e.g. 25 or 29.97")
    value = float(fps)
    if not math.isfinite(value) or not MIN_FPS <= value <= MAX_FPS:
        raise UserInputError(
            f"{what}={fps!r} is not a usable frame rate; give a number of frames per second between "
            f"{MIN_FPS:g} and {MAX_FPS:g} (e.g. 25 or 29.97), or leave it out to keep the source's"
        )
    return value


def short_reason(exc: BaseException) -> str:
    """The last non-empty line of an error message (ffmpeg's reason), shortened."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1][:160] if lines else type(exc).__name__
