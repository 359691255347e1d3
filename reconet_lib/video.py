"""Reading a clip from any source: a video file, a frame folder, or frames in memory.

:func:`read_timed_frames` (and :func:`read_frames`, the frames alone) and :func:`probe` accept three kinds of
source:

* a video file (mp4, mov, mkv, avi, webm ...), decoded by PyAV with each frame's presentation time
  (:mod:`reconet_lib.codec`); rotated phone videos come out upright;
* a folder of frames (:mod:`reconet_lib.frame_folders`), with the times recorded beside them when it was written
  by this library;
* a list of ``(H, W, 3)`` ``uint8`` arrays, or one array ``(T, H, W, 3)``, evenly spaced at
  :data:`~reconet_lib.frames.DEFAULT_FPS`.

Writing lives where the format lives: :func:`reconet_lib.codec.write_video` (H.264 MP4) and
:func:`reconet_lib.frame_folders.write_frames` (PNG frames); the frame rules (channels, resizing, padding) in
:mod:`reconet_lib.frames`.
"""
from __future__ import annotations

import contextlib
import os
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .codec import decode_file, probe_file
from .errors import UserInputError
from .frame_folders import probe_folder, read_timed_folder
from .frames import DEFAULT_FPS, VideoInfo, constant_times, resize_frame, to_rgb_uint8
from .sizes import Size, check_size


def probe(source) -> VideoInfo:
    """Describe a video file, frame folder or list/array of frames without decoding the frames.

    Raises:
        UserInputError: the source is missing, unreadable, not a video, or holds no frames; the message names
            the path and what to do.
    """
    if _is_path(source):
        path = Path(source)
        if path.is_dir():
            return probe_folder(path)
        _require_file(path)
        return probe_file(path)
    frames = _in_memory_frames(source)
    return VideoInfo(fps=None, frame_count=len(frames), size=frames[0].shape[:2], has_audio=False, path=None)


def read_frames(source, *, size: Size | None = None, allow_short: bool = False) -> Iterator[np.ndarray]:
    """Yield the frames of a video file, a frame folder or a list/array of frames (see :func:`read_timed_frames`)."""
    with contextlib.closing(read_timed_frames(source, size=size, allow_short=allow_short)) as timed:
        for _, frame in timed:
            yield frame


def read_timed_frames(source, *, size: Size | None = None,
                      allow_short: bool = False) -> Iterator[tuple[Fraction, np.ndarray]]:
    """Yield ``(presentation time in seconds, frame)`` for every frame of a source, in order.

    Args:
        source: path of a video file or of a folder of frames, or ``(H, W, 3)`` uint8 arrays (see module doc).
        size: ``None`` keeps the frames' size; an int makes the longer side that many pixels (aspect kept);
            ``(h, w)`` resizes to exactly that (see :mod:`reconet_lib.sizes`).
        allow_short: accept a video file that yields fewer frames than its container announces (a damaged or
            truncated file); by default that is an error, raised after the last frame that could be decoded.
    Yields:
        ``(Fraction seconds, (H, W, 3) uint8 RGB array)``; grey frames are repeated to three channels, RGBA loses
        its alpha. Sources without times (arrays, folders without a times file) are evenly spaced at
        :data:`~reconet_lib.frames.DEFAULT_FPS`.
    Raises:
        UserInputError: missing, unreadable or empty source, frames of different sizes, or frames lost.
    """
    check_size(size)
    if _is_path(source):
        path = Path(source)
        if path.is_dir():
            timed = read_timed_folder(path)
        else:
            _require_file(path)
            timed = decode_file(path, allow_short=allow_short)
        name = str(path)
    else:
        step = constant_times(DEFAULT_FPS)[1]
        timed = ((index * step, frame) for index, frame in enumerate(_in_memory_frames(source)))
        name = "the given frames"
    first_shape = None
    with contextlib.closing(timed):
        for index, (seconds, frame) in enumerate(timed):
            frame = to_rgb_uint8(frame, what=f"frame {index} of {name}")
            if first_shape is None:
                first_shape = frame.shape
            elif frame.shape != first_shape:
                raise UserInputError(
                    f"frame {index} of {name} is {frame.shape[1]}x{frame.shape[0]} but the first frame is "
                    f"{first_shape[1]}x{first_shape[0]}; all frames of a video must have the same size"
                )
            yield seconds, resize_frame(frame, size)
    if first_shape is None:
        raise UserInputError(f"{name} holds no frames; give a video or a folder with at least one frame")


def _is_path(source) -> bool:
    return isinstance(source, (str, os.PathLike))


def _require_file(path: Path) -> None:
    if not path.exists():
        raise UserInputError(f"input {path} does not exist; check the path (a video file or a folder of frames)")
    if not path.is_file():
        raise UserInputError(f"input {path} is neither a file nor a folder; pass a video file or a folder of frames")
    if not os.access(path, os.R_OK):
        raise UserInputError(f"input {path} cannot be read (permission denied); check its permissions")
    if path.stat().st_size == 0:
        raise UserInputError(f"input {path} is an empty file (0 bytes); pass a video with at least one frame")


def _in_memory_frames(source) -> Sequence[np.ndarray]:
    if isinstance(source, np.ndarray):
        if source.ndim not in (3, 4):
            raise UserInputError(f"an array of frames must be (T, H, W, 3) or (T, H, W), not {source.shape}")
        frames: Sequence = source
    elif isinstance(source, (list, tuple)):
        frames = source
    else:
        raise UserInputError(
            f"cannot read frames from a {type(source).__name__}; pass a video path, a frame folder, "
            "a list of (H, W, 3) uint8 arrays or a (T, H, W, 3) array"
        )
    if len(frames) == 0:
        raise UserInputError("the given list of frames is empty; pass at least one frame")
    to_rgb_uint8(frames[0], what="frame 0 of the given frames")
    return frames
