"""Video in and out, and stylising a whole video with a trained ReCoNet.

Frames leave and enter this module as ``uint8`` arrays ``(H, W, 3)``, RGB. The network sees float images
``(B, 3, H, W)`` in [0, 1]; the conversion between the two happens here and nowhere else.

Reading (:func:`read_frames`, :func:`probe`) accepts three kinds of source:

* a video file that the ffmpeg binary bundled with ``imageio-ffmpeg`` can decode (mp4, mov, mkv, avi, webm ...);
* a folder of frames (``.png``, ``.jpg``, ``.jpeg``, ``.bmp`` in any letter case), taken in *natural* order
  (``frame_2`` before ``frame_10``);
* a list of ``(H, W, 3)`` ``uint8`` arrays, or one array ``(T, H, W, 3)``.

Writing (:func:`write_video`) produces H.264 MP4 in the ``yuv420p`` pixel format, which every browser and
player shows. That format needs an even width and height, so a frame of odd size is **padded by one pixel,
right/bottom** (the last column/row is repeated): it is never resized. The frame rate is kept, and the source's
audio track is copied over when there is one. Every output is written under a temporary name in the same
folder and renamed at the end, so a failed or interrupted run never leaves a partial file under the final name.

:func:`stylize_video` runs the network on batches of frames while a reader thread decodes the next frames and a
writer thread encodes the previous ones, through bounded queues (memory does not grow with the video's length).
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from .errors import UserInputError
from .network import ReCoNet, optimize_for_inference
from .sizes import Size, check_size, parse_size, resolve_size, size_arg

#: File name endings read as frames when the source is a folder (compared in lower case).
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
#: File name endings :func:`write_video` accepts (all written as H.264 in an MP4 container).
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov")
#: Frame rate used for outputs whose source has none (frame folders, arrays).
DEFAULT_FPS = 25.0
#: Name pattern of the PNG files :func:`write_frames` writes (numbered from 1).
FRAME_NAME = "frame_{:05d}.png"


# --------------------------------------------------------------------------------------------------------------
# Probing and reading
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoInfo:
    """What is known about a source before decoding it.

    Attributes:
        fps: frames per second, or ``None`` for frame folders and arrays (they carry no frame rate).
        frame_count: number of frames (for video files counted from the container's packets without
            decoding), or ``None`` when the container does not tell.
        size: ``(H, W)`` of the frames as :func:`read_frames` yields them (before any ``size=`` resize).
        has_audio: whether the source has an audio track.
        path: the file or folder, or ``None`` for in-memory frames.
    """

    fps: float | None
    frame_count: int | None
    size: tuple[int, int]
    has_audio: bool
    path: Path | None


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with ``imageio-ffmpeg`` (works offline)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def probe(source) -> VideoInfo:
    """Describe a video file, frame folder or list/array of frames without decoding the frames.

    Raises:
        UserInputError: the source is missing, unreadable, not a video, or holds no frames; the message names
            the path and what to do.
    """
    if _is_path(source):
        path = Path(source)
        if path.is_dir():
            files = frame_files(path)
            first = _read_image(files[0])
            return VideoInfo(fps=None, frame_count=len(files), size=first.shape[:2], has_audio=False, path=path)
        _require_file(path)
        return _probe_video_file(path)
    frames = _in_memory_frames(source)
    return VideoInfo(fps=None, frame_count=len(frames), size=frames[0].shape[:2], has_audio=False, path=None)


def read_frames(source, *, size: int | tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """Yield the frames of a video file, a frame folder or a list/array of frames.

    Args:
        source: path of a video file or of a folder of frames, or ``(H, W, 3)`` uint8 arrays (see module doc).
        size: ``None`` keeps the frames' size; an int makes the longer side that many pixels (aspect kept);
            ``(h, w)`` resizes to exactly that.
    Yields:
        ``(H, W, 3)`` uint8 RGB arrays; grey frames are repeated to three channels, RGBA loses its alpha.
    Raises:
        UserInputError: missing, unreadable or empty source, or frames of different sizes.
    """
    check_size(size)
    if _is_path(source):
        path = Path(source)
        if path.is_dir():
            frames = (_read_image(f) for f in frame_files(path))
        else:
            _require_file(path)
            frames = _decode_video(path)
        name = str(path)
    else:
        frames = iter(_in_memory_frames(source))
        name = "the given frames"
    first_shape = None
    with contextlib.closing(frames) if hasattr(frames, "close") else contextlib.nullcontext():
        for index, frame in enumerate(frames):
            frame = to_rgb_uint8(frame, what=f"frame {index} of {name}")
            if first_shape is None:
                first_shape = frame.shape
            elif frame.shape != first_shape:
                raise UserInputError(
                    f"frame {index} of {name} is {frame.shape[1]}x{frame.shape[0]} but the first frame is "
                    f"{first_shape[1]}x{first_shape[0]}; all frames of a video must have the same size"
                )
            yield resize_frame(frame, size)
    if first_shape is None:
        raise UserInputError(f"{name} holds no frames; give a video or a folder with at least one frame")


def frame_files(folder: str | os.PathLike) -> list[Path]:
    """The frame images of a folder (see :data:`FRAME_SUFFIXES`) in natural order; hidden files are skipped.

    Raises:
        UserInputError: the folder has no frame images.
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


def natural_key(name: str) -> tuple:
    """Sort key that orders the digit runs of a name by value: ``frame_2`` before ``frame_10``."""
    parts = re.split(r"(\d+)", name)
    return tuple((0, int(part), part) if part.isdigit() else (1, part.lower(), part) for part in parts)


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


def resize_frame(frame: np.ndarray, size: int | tuple[int, int] | None) -> np.ndarray:
    """Resize a ``(H, W, 3)`` uint8 frame: ``size`` is ``None`` (keep), the longer side, or ``(h, w)``.

    Shrinking averages pixel areas (no aliasing); enlarging interpolates bilinearly.
    """
    if size is None:
        return frame
    import cv2

    h, w = frame.shape[:2]
    new_h, new_w = resolve_size(size, (h, w))
    if (new_h, new_w) == (h, w):
        return frame
    interpolation = cv2.INTER_AREA if new_h * new_w < h * w else cv2.INTER_LINEAR
    return cv2.resize(frame, (new_w, new_h), interpolation=interpolation)


def target_size(frame_size: tuple[int, int], size: Size | None) -> tuple[int, int]:
    """``(h, w)`` that :func:`resize_frame` produces for frames of ``frame_size`` ``(H, W)``.

    Kept for the notebooks; the rule itself is :func:`reconet_lib.sizes.resolve_size`.
    """
    return resolve_size(size, frame_size)


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


def _read_image(path: Path) -> np.ndarray:
    """One image file as an RGB uint8 array (16-bit images are scaled down to 8 bits)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                array = (np.asarray(image, dtype=np.int64) >> 8).clip(0, 255).astype(np.uint8)
            else:
                array = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UserInputError(f"cannot read the image {path} ({exc}); remove or replace the damaged file") from None
    return to_rgb_uint8(array, what=str(path))


# ---- video files through the ffmpeg binary


def _run_ffmpeg(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        check=False,
    )


def _probe_video_file(path: Path) -> VideoInfo:
    # Copying the video stream to the null muxer demuxes every packet without decoding: exact and fast.
    result = _run_ffmpeg(["-i", str(path), "-map", "0:v:0?", "-c", "copy", "-f", "null", "-"])
    log = result.stderr.decode("utf-8", errors="replace")
    header = _input_section(log)
    video = [line for line in header.splitlines() if re.search(r"Stream #\d+:\d+.*: Video: ", line)]
    if not video:
        if re.search(r"Stream #\d+:\d+", header):
            raise UserInputError(f"{path} has no video stream; pass a video file or a folder of frames")
        reason = _last_line(log)
        raise UserInputError(f"{path} is not a video ffmpeg can read ({reason}); pass a video file or a frame folder")
    line = video[0].split(": Video: ", 1)[1]
    parts = [p.strip() for p in re.split(r",\s*(?![^()\[\]]*[)\]])", line)]
    width = height = None
    fps = None
    for part in parts:
        match = re.fullmatch(r"(\d+)x(\d+)(\s*\[.*\])?(\s*\(.*\))?", part)
        if match and width is None:
            width, height = int(match.group(1)), int(match.group(2))
        match = re.fullmatch(r"([\d.]+)(k?) fps", part)
        if match:
            fps = float(match.group(1)) * (1000 if match.group(2) else 1)
    if fps is None:
        for part in parts:
            match = re.fullmatch(r"([\d.]+)(k?) tbr", part)
            if match:
                fps = float(match.group(1)) * (1000 if match.group(2) else 1)
    if width is None:
        raise UserInputError(f"{path}: ffmpeg reports no frame size for its video stream; the file may be damaged")
    rotation = re.search(r"rotation of (-?[\d.]+) degrees", header)
    if rotation and round(abs(float(rotation.group(1)))) % 180 == 90:
        width, height = height, width  # ffmpeg turns the frames upright when decoding
    counts = re.findall(r"frame=\s*(\d+)", log)
    frame_count = int(counts[-1]) if counts else None
    if frame_count == 0:
        raise UserInputError(f"{path} holds no video frames; pass a video with at least one frame")
    has_audio = any(re.search(r"Stream #\d+:\d+.*: Audio: ", line) for line in header.splitlines())
    return VideoInfo(fps=_snap_fps(fps) if fps else None, frame_count=frame_count, size=(height, width),
                     has_audio=has_audio, path=path)


def _input_section(log: str) -> str:
    """The part of an ffmpeg log that describes the inputs (before the outputs and the stream mapping)."""
    end = len(log)
    for marker in ("\nOutput #0", "\nStream mapping:"):
        index = log.find(marker)
        if index >= 0:
            end = min(end, index)
    return log[:end]


def _last_line(log: str) -> str:
    lines = [line.strip() for line in log.strip().splitlines() if line.strip()]
    return lines[-1][:160] if lines else "no message from ffmpeg"


def _snap_fps(fps: float) -> float:
    """ffmpeg prints rates with two decimals; 29.97 and friends are really N * 1000 / 1001 (NTSC)."""
    ntsc = round(fps * 1.001)
    if ntsc > 0 and abs(fps - ntsc * 1000 / 1001) < 0.006 and abs(fps - round(fps)) > 0.006:
        return ntsc * 1000 / 1001
    return fps


def _decode_video(path: Path) -> Iterator[np.ndarray]:
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    try:
        try:
            meta = next(reader)
        except (OSError, RuntimeError, StopIteration, IndexError, AttributeError) as exc:
            raise UserInputError(
                f"{path} is not a video ffmpeg can read ({_last_line(str(exc))}); pass a video file or a frame folder"
            ) from None
        width, height = meta["size"]
        while True:
            try:
                data = next(reader)
            except StopIteration:
                return
            except RuntimeError as exc:
                raise UserInputError(f"decoding {path} failed ({_last_line(str(exc))}); the file may be damaged") from None
            yield np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3)
    finally:
        reader.close()


# --------------------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------------------


def pad_to_even(frame: np.ndarray) -> np.ndarray:
    """Pad an ``(H, W, 3)`` frame to even height and width by repeating its last row/column (bottom/right).

    H.264 in ``yuv420p`` stores colour at half resolution and needs even sizes; padding keeps every original
    pixel where it was, whereas resizing would blur the whole frame.
    """
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    fps: float,
    *,
    audio_from: str | os.PathLike | None = None,
    quality: float = 7,
    preset: str = "veryfast",
) -> Path:
    """Encode frames as an H.264 MP4 (``yuv420p``) with the ffmpeg binary bundled with ``imageio-ffmpeg``.

    Args:
        path: output file ending in ``.mp4`` (or ``.m4v``/``.mov``); its folder is created if needed.
        frames: ``(H, W, 3)`` uint8 RGB arrays, all the same size. Frames of odd height or width are
            padded by one pixel, right/bottom (edge replication) to even size: never resized.
        fps: frames per second of the output (e.g. the source's :attr:`VideoInfo.fps`).
        audio_from: a video file whose audio track (if it has one) is copied into the output, re-encoded as
            AAC; the output ends with the shorter of video and audio.
        quality: 1 (smallest file) .. 10 (best); 7 means x264 constant rate factor 15.
        preset: x264 speed preset; ``"veryfast"`` keeps encoding off the critical path of real-time stylisation.
    Returns:
        The path written. The video is first written under a temporary name in the same folder and renamed
        at the end, so a failure never leaves a partial file under ``path``.
    """
    import imageio_ffmpeg

    path = Path(path)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise UserInputError(
            f"{path} does not end in {'/'.join(VIDEO_SUFFIXES)}; write_video writes H.264 MP4 "
            "(use write_frames for a folder of PNG frames)"
        )
    if not (isinstance(fps, (int, float, Fraction)) and fps > 0):
        raise UserInputError(f"fps={fps!r} must be a positive number of frames per second")
    if not 1 <= quality <= 10:
        raise UserInputError(f"quality={quality!r} must lie between 1 and 10")
    check_writable(path)
    audio = Path(audio_from) if audio_from is not None else None
    if audio is not None and audio.resolve() == path.resolve():
        raise UserInputError(f"the output {path} would overwrite the audio source; choose another output path")

    frames = iter(frames)
    try:
        first = next(frames)
    except StopIteration:
        raise UserInputError(f"no frames to write to {path}; give at least one frame") from None
    first = to_rgb_uint8(first, what="frame 0")
    h, w = first.shape[:2]
    padded = pad_to_even(first)

    rate = Fraction(fps).limit_denominator(1001)
    video_tmp = _temp_path(path)
    muxed_tmp = _temp_path(path) if audio is not None else None
    try:
        writer = imageio_ffmpeg.write_frames(
            str(video_tmp),
            (padded.shape[1], padded.shape[0]),
            pix_fmt_in="rgb24",
            pix_fmt_out="yuv420p",
            fps=rate,
            quality=quality,
            codec="libx264",
            macro_block_size=2,  # sizes are even after padding, so ffmpeg never rescales
            ffmpeg_log_level="error",
            output_params=["-preset", preset, "-movflags", "+faststart"],
        )
        writer.send(None)
        try:
            writer.send(padded)
            for index, frame in enumerate(frames, start=1):
                frame = to_rgb_uint8(frame, what=f"frame {index}")
                if frame.shape[:2] != (h, w):
                    raise UserInputError(
                        f"frame {index} is {frame.shape[1]}x{frame.shape[0]} but frame 0 is {w}x{h}; "
                        "all frames of a video must have the same size"
                    )
                writer.send(pad_to_even(frame))
        finally:
            writer.close()
        if not video_tmp.is_file() or video_tmp.stat().st_size == 0:
            raise UserInputError(f"ffmpeg wrote no video to {path.parent}; check free disk space")
        final = video_tmp
        if audio is not None and _has_audio(audio):
            result = _run_ffmpeg([
                "-y", "-v", "error", "-i", str(video_tmp), "-i", str(audio),
                "-map", "0:v", "-map", "1:a?", "-c:v", "copy", "-c:a", "aac", "-shortest",
                "-movflags", "+faststart", str(muxed_tmp),
            ])
            if result.returncode != 0:
                raise UserInputError(
                    f"copying the audio of {audio} into {path} failed ({_last_line(result.stderr.decode(errors='replace'))})"
                )
            final = muxed_tmp
        os.replace(final, path)
    finally:
        for tmp in (video_tmp, muxed_tmp):
            if tmp is not None:
                tmp.unlink(missing_ok=True)
    return path


def _has_audio(path: Path) -> bool:
    """Whether ``path`` is a video/audio file with an audio track (folders and unreadable files have none)."""
    if not path.is_file():
        return False
    result = _run_ffmpeg(["-i", str(path)])
    header = _input_section(result.stderr.decode("utf-8", errors="replace"))
    return any(re.search(r"Stream #\d+:\d+.*: Audio: ", line) for line in header.splitlines())


def write_frames(folder: str | os.PathLike, frames: Iterable[np.ndarray]) -> Path:
    """Write frames as PNG files ``frame_00001.png``, ``frame_00002.png`` ... into ``folder``.

    The folder is filled under a temporary name next to it and renamed at the end. An existing folder is
    replaced only if it holds nothing but such frame files (an earlier output); any other content is refused.

    Args:
        folder: the output folder.
        frames: ``(H, W, 3)`` uint8 RGB arrays (any size; odd sizes are kept exactly).
    Returns:
        The folder.
    """
    from PIL import Image

    folder = Path(folder)
    check_writable(folder, is_folder=True)
    tmp = _temp_path(folder)
    tmp.mkdir()
    old = None
    try:
        count = 0
        for index, frame in enumerate(frames):
            frame = to_rgb_uint8(frame, what=f"frame {index}")
            Image.fromarray(frame).save(tmp / FRAME_NAME.format(index + 1), compress_level=3)
            count += 1
        if count == 0:
            raise UserInputError(f"no frames to write to {folder}; give at least one frame")
        if folder.exists():
            old = folder.parent / f"{tmp.name}.old"
            os.replace(folder, old)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return folder


def check_writable(path: str | os.PathLike, *, is_folder: bool = False) -> None:
    """Make sure an output file (or folder) can be created at ``path`` before any work is done.

    Creates missing parent folders. Raises :class:`UserInputError` with the reason when the location is not
    writable, is of the wrong kind, or (for a folder) already holds files other than earlier frame outputs.
    """
    path = Path(path)
    if is_folder:
        if path.exists() and not path.is_dir():
            raise UserInputError(f"output {path} exists and is not a folder; choose a folder name for frame output")
        if path.is_dir():
            foreign = [p.name for p in path.iterdir() if not re.fullmatch(r"frame_\d+\.png", p.name)]
            if foreign:
                raise UserInputError(
                    f"output folder {path} already holds other files ({', '.join(sorted(foreign)[:3])}); "
                    "choose a new folder name or empty it"
                )
    elif path.is_dir():
        raise UserInputError(f"output {path} is a folder; give a file name ending in .mp4")
    parent = path.parent
    for ancestor in [parent, *parent.parents]:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise UserInputError(f"cannot write {path}: {ancestor} is a file, not a folder; choose another output path")
            break
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, probe_name = tempfile.mkstemp(prefix=f".{path.name}.probe-", dir=parent)
        os.close(fd)
        os.unlink(probe_name)
    except OSError as exc:
        raise UserInputError(
            f"cannot write to the output folder {parent} ({exc.strerror or exc}); choose a writable output path"
        ) from None


def _temp_path(path: Path) -> Path:
    """A fresh hidden name next to ``path`` (created by whoever writes it, so the usual permissions apply)."""
    return path.parent / f".{path.stem}.partial-{uuid.uuid4().hex[:12]}{path.suffix}"


# --------------------------------------------------------------------------------------------------------------
# Showing a video in a notebook
# --------------------------------------------------------------------------------------------------------------


def show_video(path: str | os.PathLike, width: int = 480, *, loop: bool = True, max_megabytes: float = 40):
    """An IPython ``HTML`` object that plays an H.264 MP4 in the notebook (Colab and JupyterLab).

    The file is embedded as base64 in a ``<video controls>`` element, so the notebook stays self-contained;
    keep embedded clips small (a few MB).
    """
    from IPython.display import HTML

    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"video {path} does not exist; write it first (write_video / stylize_video)")
    megabytes = path.stat().st_size / 2**20
    if megabytes > max_megabytes:
        raise UserInputError(
            f"{path} is {megabytes:.0f} MB, too large to embed in a notebook (limit {max_megabytes} MB); "
            "write a shorter or smaller clip, or open the file in a video player"
        )
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    attributes = "controls playsinline" + (" loop" if loop else "")
    return HTML(
        f'<video width="{int(width)}" {attributes}>'
        f'<source src="data:video/mp4;base64,{data}" type="video/mp4">'
        "Your browser cannot play this H.264 video.</video>"
    )


# --------------------------------------------------------------------------------------------------------------
# Stylising a video
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StylizeReport:
    """What :func:`stylize_video` did.

    Attributes:
        frames: number of frames stylised.
        seconds: wall-clock time from the first decoded frame being requested to the output being complete.
        model_fps: frames per second of the network alone (time inside model calls, CUDA-synchronised).
        end_to_end_fps: ``frames / seconds``: decoding, conversion, network, encoding and writing together.
        output: the file or folder written.
        model_seconds: the time spent inside model calls.
    """

    frames: int
    seconds: float
    model_fps: float
    end_to_end_fps: float
    output: Path
    model_seconds: float = 0.0

    @property
    def summary(self) -> str:
        ratio = self.end_to_end_fps / self.model_fps if self.model_fps else float("nan")
        return (
            f"stylised {self.frames} frames in {self.seconds:.2f} s: network {self.model_fps:.1f} frames/s, "
            f"end to end {self.end_to_end_fps:.1f} frames/s ({ratio:.0%} of the network's rate) -> {self.output}"
        )


class _Stop(Exception):
    """Raised inside a pipeline stage when another stage has failed."""


@dataclass
class _Failure:
    error: BaseException


_END = object()


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Put with a bounded wait that gives up (returns False) once ``stop`` is set."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event):
    """Get that raises :class:`_Stop` once ``stop`` is set and nothing is left to take."""
    while True:
        try:
            return q.get(timeout=0.05)
        except queue.Empty:
            if stop.is_set():
                raise _Stop() from None


def resolve_precision(device: torch.device, half: bool | None) -> torch.dtype | None:
    """The autocast dtype for inference: fp16 on CUDA, bf16 on a CPU with native bf16, or None (fp32).

    ``half=None`` chooses automatically; ``half=False`` forces fp32; ``half=True`` asks for reduced precision
    (bf16 on any CPU, even one that only emulates it).
    """
    if half is False:
        return None
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu":
        if half is None:
            native = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)()
            return torch.bfloat16 if native else None
        return torch.bfloat16
    return None


def _model_device_dtype(model: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.float32


def stylize_video(
    model: torch.nn.Module,
    source,
    output: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    batch_size: int = 4,
    half: bool | None = None,
    side_by_side: bool = False,
    size: int | tuple[int, int] | None = None,
    fps: float | None = None,
    progress: bool = True,
) -> StylizeReport:
    """Stylise every frame of a video with a ReCoNet and write the result.

    Args:
        model: a network taking and returning ``(B, 3, H, W)`` images in [0, 1] (e.g. from ``load_model``).
        source: a video file, a folder of frames, or ``(H, W, 3)`` uint8 frames (see :func:`read_frames`).
        output: an ``.mp4`` file (H.264, source frame rate and audio kept) or a folder (PNG frames).
        device: where to run the model; default: where its parameters are. The model is moved there.
        batch_size: frames per network call.
        half: reduced precision: ``None`` = automatic (fp16 autocast on CUDA, bf16 on CPUs with native bf16
            support), ``True`` = always, ``False`` = fp32. On the CPU a :class:`~reconet_lib.network.ReCoNet` then
            runs through :func:`~reconet_lib.network.optimize_for_inference` (the fastest CPU path we found).
        side_by_side: write ``input | output`` next to each other (the output is twice as wide).
        size: resize the input first: longer side in pixels, or ``(h, w)``; ``None`` keeps the size.
        fps: frame rate of an ``.mp4`` output; default the source's (:data:`DEFAULT_FPS` for folders/arrays).
        progress: show a ``tqdm.auto`` progress bar.
    Returns:
        A :class:`StylizeReport` with frame count and frames per second (network alone and end to end).
    Raises:
        UserInputError: unreadable or empty source, unwritable output (checked before any decoding).
    """
    from tqdm.auto import tqdm

    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise UserInputError(f"batch_size={batch_size!r} must be a positive integer")
    check_size(size)
    info = probe(source)
    output = Path(output)
    to_video = output.suffix.lower() in VIDEO_SUFFIXES
    if not to_video and output.suffix:
        raise UserInputError(f"output {output} must end in .mp4 (a video) or have no suffix (a folder of PNG frames)")
    check_writable(output, is_folder=not to_video)
    if info.path is not None and output.resolve() == info.path.resolve():
        raise UserInputError(f"the output {output} is the input; choose another output path")
    out_fps = fps or info.fps or DEFAULT_FPS
    audio_from = info.path if (to_video and info.has_audio) else None

    model_device, model_dtype = _model_device_dtype(model)
    device = torch.device(device) if device is not None else model_device
    model = model.to(device).eval()
    autocast_dtype = resolve_precision(device, half)
    if autocast_dtype is not None and model_dtype != torch.float32:
        autocast_dtype = None  # a model already stored in fp16/bf16 runs as it is
    input_dtype = model_dtype if autocast_dtype is None else torch.float32
    if autocast_dtype is not None and device.type == "cpu" and isinstance(model, ReCoNet):
        # On the CPU, half precision runs fastest through optimize_for_inference (bf16 weights and activations,
        # channels-last, rewritten output layer): about 1.6x the autocast speed at 640x360 (docs/results.md).
        model = optimize_for_inference(model, device, dtype=autocast_dtype)
        autocast_dtype = None
    pin = device.type == "cuda"

    stop = threading.Event()
    decoded: queue.Queue = queue.Queue(maxsize=3)
    stylised: queue.Queue = queue.Queue(maxsize=3)
    writer_errors: list[BaseException] = []

    def read_batches() -> None:
        try:
            batch: list[np.ndarray] = []
            with contextlib.closing(read_frames(source, size=size)) as frames_in:
                for frame in frames_in:
                    batch.append(frame)
                    if len(batch) == batch_size:
                        if not _put(decoded, _as_batch(batch, pin), stop):
                            return
                        batch = []
            if batch and not _put(decoded, _as_batch(batch, pin), stop):
                return
            _put(decoded, _END, stop)
        except BaseException as exc:  # handed to the main thread, which re-raises it
            _put(decoded, _Failure(exc), stop)

    def frames_to_write() -> Iterator[np.ndarray]:
        while True:
            item = _get(stylised, stop)
            if item is _END:
                return
            inputs, outputs = item
            if side_by_side:
                outputs = np.concatenate([inputs, outputs], axis=2)
            yield from outputs

    def write_all() -> None:
        try:
            if to_video:
                write_video(output, frames_to_write(), out_fps, audio_from=audio_from)
            else:
                write_frames(output, frames_to_write())
        except BaseException as exc:
            writer_errors.append(exc)
            stop.set()

    reader = threading.Thread(target=read_batches, name="reconet-decode", daemon=True)
    writer = threading.Thread(target=write_all, name="reconet-encode", daemon=True)
    bar = tqdm(total=info.frame_count, unit="frame", desc="stylising", disable=not progress)
    frames = 0
    model_seconds = 0.0
    start = time.perf_counter()
    reader.start()
    writer.start()
    try:
        with torch.inference_mode(), _autocast(device, autocast_dtype):
            while True:
                try:
                    item = _get(decoded, stop)
                except _Stop:
                    break
                if item is _END:
                    _put(stylised, _END, stop)
                    break
                if isinstance(item, _Failure):
                    raise item.error
                x = item.to(device, non_blocking=pin).permute(0, 3, 1, 2).to(input_dtype).div_(255)
                _synchronize(device)
                tic = time.perf_counter()
                y = model(x)
                _synchronize(device)
                model_seconds += time.perf_counter() - tic
                if y.shape != x.shape:
                    raise UserInputError(f"the model returned {tuple(y.shape)} for input {tuple(x.shape)}; "
                                         "it must return an image of the input's size")
                out = y.float().clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
                if not _put(stylised, (item.numpy(), out), stop):
                    break
                frames += len(out)
                bar.update(len(out))
        writer.join()
    except BaseException:
        stop.set()
        writer.join()
        raise
    finally:
        stop.set()
        reader.join()
        bar.close()
    if writer_errors:
        raise writer_errors[0]
    seconds = time.perf_counter() - start
    return StylizeReport(
        frames=frames,
        seconds=seconds,
        model_fps=frames / model_seconds if model_seconds > 0 else float("inf"),
        end_to_end_fps=frames / seconds,
        output=output,
        model_seconds=model_seconds,
    )


def _as_batch(frames: list[np.ndarray], pin: bool) -> torch.Tensor:
    """Stack frames into a ``(B, H, W, 3)`` uint8 tensor (page-locked for fast copies to a GPU)."""
    batch = torch.from_numpy(np.stack(frames))
    return batch.pin_memory() if pin else batch


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------------------------------------------
# Command line: reconet stylize
# --------------------------------------------------------------------------------------------------------------


def add_stylize_command(subparsers) -> argparse.ArgumentParser:
    """Register ``reconet stylize INPUT --checkpoint CKPT -o OUTPUT`` on the command line's sub-parsers."""
    parser = subparsers.add_parser(
        "stylize",
        help="stylise a video (or a folder of frames) with a trained ReCoNet",
        description="Stylise every frame of a video with a trained ReCoNet checkpoint and write an H.264 MP4 "
        "(source frame rate and audio kept) or a folder of PNG frames.",
    )
    parser.add_argument("input", help="video file or folder of frames (png/jpg/jpeg/bmp)")
    parser.add_argument("--checkpoint", required=True, help="ReCoNet checkpoint (.pt) written by `reconet train`")
    parser.add_argument("-o", "--output", required=True, help="output .mp4 file, or a folder for PNG frames")
    parser.add_argument("--side-by-side", action="store_true", help="write input | output next to each other")
    parser.add_argument("--size", type=size_arg, default=None,
                        help="resize the input first: longer side N (aspect kept), or WxH exactly (e.g. 640x360)")
    parser.add_argument("--batch-size", type=int, default=4, help="frames per network call (default 4)")
    parser.add_argument("--device", default=None, help="cuda, cuda:1, cpu ... (default: cuda if available)")
    parser.add_argument("--no-half", action="store_true", help="run in float32 instead of fp16/bf16")
    parser.add_argument("--fps", type=float, default=None, help="output frame rate (default: the source's)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_stylize_command)
    return parser


def run_stylize_command(args: argparse.Namespace) -> int:
    """Carry out ``reconet stylize``: check input and output first, then load the model and stylise."""
    from .checkpoint import load_model
    from .config import default_device

    device = _parse_device(args.device) if args.device else default_device()
    if args.batch_size < 1:
        raise UserInputError(f"--batch-size {args.batch_size} must be at least 1")
    probe(args.input)
    output = Path(args.output)
    check_writable(output, is_folder=output.suffix.lower() not in VIDEO_SUFFIXES)
    model = load_model(args.checkpoint, device=device)
    report = stylize_video(
        model, args.input, output, device=device, batch_size=args.batch_size, half=False if args.no_half else None,
        side_by_side=args.side_by_side, size=args.size, fps=args.fps, progress=not args.quiet,
    )
    print(report.summary)
    return 0


def _parse_device(text: str) -> torch.device:
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise UserInputError(f"--device {text!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError(f"--device {text}: CUDA is not available on this machine; use --device cpu")
    return device
