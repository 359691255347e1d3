"""Folders of frame images: reading them in natural order, writing them atomically, with their times.

A frame folder holds ``.png``, ``.jpg``, ``.jpeg`` or ``.bmp`` files (any letter case), read in *natural* order
(``frame_2`` before ``frame_10``). :func:`write_frames` writes ``frame_00001.png``, ``frame_00002.png`` ... and,
beside them, ``frame_times.txt``, the presentation time of every frame:

    # reconet frame times: <file> <time in ticks of time_base seconds>
    time_base 1/10240
    frame_00001.png 0
    frame_00002.png 1024

so that a variable-frame-rate clip turned into frames and back into a video keeps every frame at its time. A
folder without that file (frames from elsewhere) has no times: its frames are taken as evenly spaced.
"""
from __future__ import annotations

import os
import re
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import UserInputError
from .files import atomic_folder, prepared_output, write_error
from .frames import DEFAULT_FPS, VideoInfo, constant_times, to_rgb_uint8

#: File name endings read as frames when the source is a folder (compared in lower case).
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
#: Name pattern of the PNG files :func:`write_frames` writes (numbered from 1).
FRAME_NAME = "frame_{:05d}.png"
#: The file that records the frames' presentation times (see the module doc).
TIMES_NAME = "frame_times.txt"
_TIMES_HEADER = "# reconet frame times: <file> <time in ticks of time_base seconds>"


def is_output_name(name: str) -> bool:
    """Whether ``name`` is a file that :func:`write_frames` writes (so an earlier output may be replaced)."""
    return bool(re.fullmatch(r"frame_\d+\.png", name)) or name == TIMES_NAME


def natural_key(name: str) -> tuple:
    """Sort key that orders the digit runs of a name by value: ``frame_2`` before ``frame_10``."""
    parts = re.split(r"(\d+)", name)
    return tuple((0, int(part), part) if part.isdigit() else (1, part.lower(), part) for part in parts)


def frame_files(folder: str | os.PathLike) -> list[Path]:
    """The frame images of a folder (see :data:`FRAME_SUFFIXES`) in natural order; hidden files are skipped.

    Raises:
        UserInputError: the folder cannot be listed or has no frame images.
    """
    folder = Path(folder)
    try:
        entries = list(folder.iterdir())
    except OSError as exc:
        raise UserInputError(f"cannot list the frame folder {folder} ({exc.strerror}); check its permissions") from None
    files = [p for p in entries if p.suffix.lower() in FRAME_SUFFIXES and not p.name.startswith(".") and p.is_file()]
    if not files:
        raise UserInputError(
            f"the folder {folder} holds no frames ({', '.join(FRAME_SUFFIXES)}); "
            "put the frames there or pass a video file"
        )
    return sorted(files, key=lambda p: natural_key(p.name))


def read_image(path: Path) -> np.ndarray:
    """One image file as an RGB uint8 ``(H, W, 3)`` array (16-bit images are scaled down to 8 bits)."""
    try:
        with Image.open(path) as image:
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                array = (np.asarray(image, dtype=np.int64) >> 8).clip(0, 255).astype(np.uint8)
            else:
                array = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UserInputError(f"cannot read the image {path} ({exc}); remove or replace the damaged file") from None
    return to_rgb_uint8(array, what=str(path))


def read_times(folder: Path, files: list[Path]) -> tuple[Fraction, list[Fraction]] | None:
    """``(time base, time of each file in seconds)`` from the folder's :data:`TIMES_NAME`, or None without one.

    Raises:
        UserInputError: the file is damaged or does not list exactly the frames of the folder.
    """
    path = folder / TIMES_NAME
    if not path.is_file():
        return None
    fix = f"delete {path} to read the frames as evenly spaced, or restore it"
    try:
        lines = [line.split() for line in path.read_text(encoding="utf-8").splitlines()
                 if line.strip() and not line.startswith("#")]
        if not lines or lines[0][0] != "time_base" or len(lines[0]) != 2:
            raise ValueError("no 'time_base' line")
        time_base = Fraction(lines[0][1])
        ticks = {name: int(tick) for name, tick in lines[1:]}
    except (OSError, ValueError, ZeroDivisionError, UnicodeDecodeError) as exc:
        raise UserInputError(f"the frame times file {path} is damaged ({exc}); {fix}") from None
    if time_base <= 0 or sorted(ticks) != sorted(f.name for f in files):
        raise UserInputError(f"the frame times file {path} does not list exactly the frames of {folder}; {fix}")
    return time_base, [ticks[f.name] * time_base for f in files]


def probe_folder(folder: Path) -> VideoInfo:
    """A frame folder's :class:`~reconet_lib.frames.VideoInfo` (the first image is read for the size)."""
    files = frame_files(folder)
    first = read_image(files[0])
    times = read_times(folder, files)
    fps = None
    if times is not None and len(files) > 1 and times[1][-1] > times[1][0]:
        fps = float((len(files) - 1) / (times[1][-1] - times[1][0]))
    return VideoInfo(fps=fps, frame_count=len(files), size=first.shape[:2], has_audio=False, path=folder,
                     time_base=times[0] if times is not None else None)


def read_timed_folder(folder: Path) -> Iterator[tuple[Fraction, np.ndarray]]:
    """``(time in seconds, frame)`` of every frame of a folder; times from :data:`TIMES_NAME`, else evenly spaced
    at :data:`~reconet_lib.frames.DEFAULT_FPS`."""
    files = frame_files(folder)
    times = read_times(folder, files)
    step = constant_times(DEFAULT_FPS)[1]
    for index, path in enumerate(files):
        yield (times[1][index] if times is not None else index * step), read_image(path)


def write_frames(folder: str | os.PathLike, frames: Iterable[np.ndarray], *, fps: float = DEFAULT_FPS) -> Path:
    """Write frames as PNG files ``frame_00001.png`` ... into ``folder``, evenly spaced at ``fps`` (recorded in
    :data:`TIMES_NAME`); see :func:`write_timed_frames`."""
    time_base, step = constant_times(fps)
    return write_timed_frames(folder, ((index * step, frame) for index, frame in enumerate(frames)), time_base)


def write_timed_frames(folder: str | os.PathLike, timed_frames: Iterable[tuple[Fraction, np.ndarray]],
                       time_base: Fraction) -> Path:
    """Write ``(time in seconds, frame)`` pairs as PNG files and their times as :data:`TIMES_NAME`.

    The folder is filled under a temporary name next to it (:func:`reconet_lib.files.atomic_folder`), each file
    is checked (it opens as an image of the size written), and only then swapped into place. An existing folder
    is replaced only if it holds nothing but such files (an earlier output); any other content is refused. On any
    failure (a full disk, bad frames) an earlier output is untouched and the temporary folder removed.

    Args:
        folder: the output folder.
        timed_frames: ``(seconds, (H, W, 3) uint8 RGB array)`` (any size; odd sizes are kept exactly).
        time_base: the unit of the recorded times in seconds (e.g. the source video's time base).
    Returns:
        The folder.
    """
    folder = Path(folder)
    with prepared_output(folder, is_folder=True, replaceable=is_output_name):
        try:
            with atomic_folder(folder) as tmp:
                sizes, ticks = _save_pngs(tmp, timed_frames, Fraction(time_base), folder)
                _verify_pngs(tmp, sizes, folder)
                lines = [_TIMES_HEADER, f"time_base {Fraction(time_base)}"]
                lines += [f"{FRAME_NAME.format(i + 1)} {tick}" for i, tick in enumerate(ticks)]
                (tmp / TIMES_NAME).write_text("\n".join(lines) + "\n", encoding="utf-8")
        except OSError as exc:
            raise write_error(folder, exc) from None
    return folder


def _save_pngs(tmp: Path, timed_frames, time_base: Fraction, folder: Path) -> tuple[list, list[int]]:
    sizes, ticks = [], []
    for index, (seconds, frame) in enumerate(timed_frames):
        frame = to_rgb_uint8(frame, what=f"frame {index}")
        Image.fromarray(frame).save(tmp / FRAME_NAME.format(index + 1), compress_level=3)
        sizes.append(frame.shape[:2])
        ticks.append(round(Fraction(seconds) / time_base))
    if not sizes:
        raise UserInputError(f"no frames to write to {folder}; give at least one frame")
    return sizes, ticks


def _verify_pngs(tmp: Path, sizes: list[tuple[int, int]], folder: Path) -> None:
    """Every PNG written must open (header and data) as an image of the size it was written with."""
    for index, (h, w) in enumerate(sizes):
        try:
            with Image.open(tmp / FRAME_NAME.format(index + 1)) as image:
                image.load()
                ok = image.size == (w, h)
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
            ok = False
        if not ok:
            raise UserInputError(f"writing {folder} failed: frame {index + 1} did not read back (is the disk full?); "
                                 "nothing was written under that name")
