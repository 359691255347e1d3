"""Video in and out: probing, decoding, encoding, frame folders, and showing a clip in a notebook.

Frames leave and enter this module as ``uint8`` arrays ``(H, W, 3)``, RGB (the stylising pipeline in
:mod:`reconet_lib.stylize` converts them to and from the network's ``(B, 3, H, W)`` [0, 1] images).

Reading (:func:`read_frames`, :func:`probe`) accepts three kinds of source:

* a video file (mp4, mov, mkv, avi, webm ...). :func:`probe` reads its container with PyAV: the exact rational
  frame rate (30000/1001, not 29.97), the frame count the container announces, the streams (audio or not).
  Frames are decoded by the ffmpeg binary bundled with ``imageio-ffmpeg``, which also turns rotated phone
  videos upright. A file that yields fewer frames than it announces (damaged, truncated) is an error unless
  ``allow_short=True``;
* a folder of frames (``.png``, ``.jpg``, ``.jpeg``, ``.bmp`` in any letter case), taken in *natural* order
  (``frame_2`` before ``frame_10``);
* a list of ``(H, W, 3)`` ``uint8`` arrays, or one array ``(T, H, W, 3)``.

Writing (:func:`write_video`) produces H.264 MP4 in the ``yuv420p`` pixel format (PyAV's libx264), which every
browser and player shows. That format needs an even width and height, so a frame of odd size is **padded by one
pixel, right/bottom** (the last column/row is repeated): it is never resized. The frame rate is kept, and the
source's audio track is copied over when there is one. Nothing is lost on failure: every output is written under
a temporary name in the same folder, probed back (frame count and size as written) and only then renamed over
the target; temporaries left by a killed process are removed by the next write (:func:`remove_stale_partials`),
and output folders created for a failed write are removed again (:func:`prepared_output`).
"""
from __future__ import annotations

import base64
import contextlib
import errno
import itertools
import math
import numbers
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from .errors import UserInputError
from .sizes import Size, check_size, resolve_size

#: File name endings read as frames when the source is a folder (compared in lower case).
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
#: File name endings :func:`write_video` accepts (all written as H.264 in an MP4 container).
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov")
#: Frame rate used for outputs whose source has none (frame folders, arrays).
DEFAULT_FPS = 25.0
#: Name pattern of the PNG files :func:`write_frames` writes (numbered from 1).
FRAME_NAME = "frame_{:05d}.png"
#: Frame rates outside this range are refused (:func:`check_fps`): frames per second.
MIN_FPS, MAX_FPS = 0.1, 1000.0
#: Marks the temporary names that writers use until a file is complete (see :func:`remove_stale_partials`).
PARTIAL = ".partial-"
#: Names of the stylising pipeline, which lives in :mod:`reconet_lib.stylize`; ``video.stylize_video`` keeps
#: working for the notebooks and benchmarks that use it.
_PIPELINE_NAMES = ("stylize_video", "StylizeReport", "resolve_precision", "add_stylize_command", "run_stylize_command")


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


def read_frames(source, *, size: Size | None = None, allow_short: bool = False) -> Iterator[np.ndarray]:
    """Yield the frames of a video file, a frame folder or a list/array of frames.

    Args:
        source: path of a video file or of a folder of frames, or ``(H, W, 3)`` uint8 arrays (see module doc).
        size: ``None`` keeps the frames' size; an int makes the longer side that many pixels (aspect kept);
            ``(h, w)`` resizes to exactly that (see :mod:`reconet_lib.sizes`).
        allow_short: accept a video file that yields fewer frames than its container announces (a damaged or
            truncated file); by default that is an error, raised after the last frame that could be decoded.
    Yields:
        ``(H, W, 3)`` uint8 RGB arrays; grey frames are repeated to three channels, RGBA loses its alpha.
    Raises:
        UserInputError: missing, unreadable or empty source, frames of different sizes, or frames lost.
    """
    check_size(size)
    if _is_path(source):
        path = Path(source)
        if path.is_dir():
            frames = (_read_image(f) for f in frame_files(path))
        else:
            _require_file(path)
            frames = _decode_video(path, _probe_video_file(path).frame_count, allow_short)
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


def resize_frame(frame: np.ndarray, size: Size | None) -> np.ndarray:
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


# ---- video files: the container read by PyAV, the frames decoded by the ffmpeg binary


def _probe_video_file(path: Path) -> VideoInfo:
    """Read a video file's container with PyAV: exact rational frame rate, announced frame count, streams."""
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise UserInputError(f"{path} is not a video ffmpeg can read ({_short(exc)}); pass a video file or a frame folder") from None
    with container:
        if not container.streams.video:
            raise UserInputError(f"{path} has no video stream; pass a video file or a folder of frames")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        # MP4/MOV announce their frame count in the header; other containers (MKV, WebM) are counted by packets.
        frame_count = stream.frames or _count_packets(container, stream)
        size = (stream.height, stream.width)
        if _first_frame_rotation(path) % 180 == 90:
            size = size[::-1]  # ffmpeg turns the frames upright when decoding
        has_audio = bool(container.streams.audio)
    if frame_count == 0 or min(size) < 1:
        raise UserInputError(f"{path} holds no video frames; pass a video with at least one frame")
    return VideoInfo(fps=float(rate) if rate else None, frame_count=frame_count, size=size,
                     has_audio=has_audio, path=path)


def _count_packets(container, stream) -> int:
    """Video packets of a container that does not announce its frame count (demuxed, not decoded)."""
    import av

    try:
        return sum(1 for packet in container.demux(stream) if packet.size)
    except av.FFmpegError:
        return 0


def _first_frame_rotation(path: Path) -> int:
    """Rotation in degrees (display matrix) of the first frame, 0 when it cannot be decoded."""
    import av

    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                return int(round(getattr(frame, "rotation", 0) or 0))
    except av.FFmpegError:
        pass
    return 0


def _short(exc: BaseException) -> str:
    """The last non-empty line of an error message (ffmpeg's reason), shortened."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1][:160] if lines else type(exc).__name__


@contextlib.contextmanager
def _quiet_rotation_note() -> Iterator[None]:
    """Drop imageio-ffmpeg's warning that a rotated video decodes to another size (expected: upright frames)."""
    import logging

    def keep(record: logging.LogRecord) -> bool:
        return "is different from the source frame size" not in record.getMessage()

    logger = logging.getLogger("imageio_ffmpeg")
    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


def _decode_video(path: Path, announced: int | None, allow_short: bool) -> Iterator[np.ndarray]:
    """Frames of a video file, decoded (and turned upright) by the ffmpeg binary of ``imageio-ffmpeg``.

    Raises:
        UserInputError: undecodable file; or fewer frames than the container announced (``announced``),
            unless ``allow_short``.
    """
    import imageio_ffmpeg

    # passthrough: every frame of the file exactly once (the default would duplicate or drop frames of a
    # variable-frame-rate video to reach a constant rate).
    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24", output_params=["-fps_mode", "passthrough"])
    decoded = 0
    try:
        try:
            with _quiet_rotation_note():
                meta = next(reader)
        except (OSError, RuntimeError, StopIteration, IndexError, AttributeError) as exc:
            raise UserInputError(f"{path} is not a video ffmpeg can read ({_short(exc)}); pass a video file or a frame folder") from None
        width, height = meta["size"]
        while True:
            try:
                data = next(reader)
            except StopIteration:
                break
            except RuntimeError as exc:
                raise UserInputError(f"decoding {path} failed ({_short(exc)}); the file may be damaged") from None
            decoded += 1
            yield np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3)
    finally:
        reader.close()
    if announced and decoded < announced and not allow_short:
        raise UserInputError(
            f"{path} announces {announced} frames but only {decoded} could be decoded ({announced - decoded} lost: "
            "the file is damaged or truncated); re-download or re-encode it, or accept the short read "
            "(allow_short=True, reconet stylize --allow-short)"
        )


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


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    fps: float,
    *,
    audio_from: str | os.PathLike | None = None,
    quality: float = 7,
    preset: str = "veryfast",
) -> Path:
    """Encode frames as an H.264 MP4 (``yuv420p``) with PyAV's libx264.

    Args:
        path: output file ending in ``.mp4`` (or ``.m4v``/``.mov``); its folder is created if needed.
        frames: ``(H, W, 3)`` uint8 RGB arrays, all the same size. Frames of odd height or width are
            padded by one pixel, right/bottom (edge replication) to even size: never resized.
        fps: frames per second of the output (e.g. the source's :attr:`VideoInfo.fps`); see :func:`check_fps`.
        audio_from: a video file whose audio track (if it has one) is copied into the output, re-encoded as
            AAC and cut to the video's length (every frame is kept).
        quality: 1 (smallest file) .. 10 (best); 7 means x264 constant rate factor 15.
        preset: x264 speed preset; ``"veryfast"`` keeps encoding off the critical path of real-time stylisation.
    Returns:
        The path written. The video is written under a temporary name in the same folder, probed back (frame
        count and size as written) and only then renamed over ``path``: on any failure (a full disk, a dying
        encoder, bad frames) an existing file at ``path`` is untouched and the temporary is removed.
    Raises:
        UserInputError: bad arguments, frames of different sizes, or the file could not be written (the
            message says why, e.g. no space left on the device).
    """
    path = Path(path)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise UserInputError(
            f"{path} does not end in {'/'.join(VIDEO_SUFFIXES)}; write_video writes H.264 MP4 "
            "(use write_frames for a folder of PNG frames)"
        )
    rate = Fraction(check_fps(fps)).limit_denominator(1001)
    if not 1 <= quality <= 10:
        raise UserInputError(f"quality={quality!r} must lie between 1 and 10")
    audio = Path(audio_from) if audio_from is not None else None
    if audio is not None and audio.resolve() == path.resolve():
        raise UserInputError(f"the output {path} would overwrite the audio source; choose another output path")
    with prepared_output(path):
        remove_stale_partials(path)
        video_tmp = _temp_path(path)
        muxed_tmp = _temp_path(path) if audio is not None else None
        try:
            count, size = _encode_h264(video_tmp, frames, rate, quality, preset, path)
            _verify_video(video_tmp, count, size, path)
            final = video_tmp
            if audio is not None and _has_audio(audio):
                _copy_audio(video_tmp, audio, muxed_tmp, path)
                _verify_video(muxed_tmp, count, size, path)
                final = muxed_tmp
            os.replace(final, path)
        finally:
            for tmp in (video_tmp, muxed_tmp):
                if tmp is not None:
                    tmp.unlink(missing_ok=True)
    return path


def _encode_h264(tmp: Path, frames: Iterable[np.ndarray], rate: Fraction, quality: float, preset: str,
                 path: Path) -> tuple[int, tuple[int, int]]:
    """Encode ``frames`` into ``tmp``; returns (frames written, (H, W) as stored, after padding to even)."""
    import av

    frames = iter(frames)
    try:
        first = next(frames)
    except StopIteration:
        raise UserInputError(f"no frames to write to {path}; give at least one frame") from None
    first = to_rgb_uint8(first, what="frame 0")
    h, w = first.shape[:2]
    padded = pad_to_even(first)
    count = 0
    try:
        with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = padded.shape[1], padded.shape[0], "yuv420p"
            stream.options = {"crf": str(int((1 - quality / 10) * 51)), "preset": preset}
            for index, frame in enumerate(itertools.chain([first], frames)):
                frame = to_rgb_uint8(frame, what=f"frame {index}")
                if frame.shape[:2] != (h, w):
                    raise UserInputError(
                        f"frame {index} is {frame.shape[1]}x{frame.shape[0]} but frame 0 is {w}x{h}; "
                        "all frames of a video must have the same size"
                    )
                picture = av.VideoFrame.from_ndarray(pad_to_even(frame), format="rgb24")
                container.mux(stream.encode(picture))
                count += 1
            container.mux(stream.encode(None))
    except (av.FFmpegError, OSError) as exc:
        raise _write_error(path, exc) from None
    return count, padded.shape[:2]


def _write_error(path: Path, exc: BaseException) -> UserInputError:
    """One line for a failed write: the reason, and free space as the likely fix when the disk is full."""
    full = getattr(exc, "errno", None) == errno.ENOSPC or "No space left" in str(exc)
    hint = f"free some space in {path.parent} or write elsewhere" if full else "check the output folder"
    reason = "no space left on the device" if full else _short(exc)
    return UserInputError(f"writing {path} failed ({reason}); {hint}. Nothing was written under that name")


def _verify_video(tmp: Path, count: int, size: tuple[int, int], path: Path) -> None:
    """Probe a written video back: it must hold ``count`` frames of ``size`` ``(H, W)``."""
    try:
        info = _probe_video_file(tmp)
    except UserInputError:
        info = None
    if info is None or info.frame_count != count or info.size != tuple(size):
        found = "an unreadable file" if info is None else f"{info.frame_count} frames of {info.size[1]}x{info.size[0]}"
        raise UserInputError(
            f"writing {path} failed: {count} frames of {size[1]}x{size[0]} were encoded but the file holds "
            f"{found} (is the disk full?); nothing was written under that name"
        )


def _copy_audio(video: Path, audio: Path, out: Path, path: Path) -> None:
    """Mux ``video`` with the audio of ``audio`` (AAC, cut to the video's duration) into ``out``."""
    import imageio_ffmpeg

    result = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-v", "error",
         "-i", str(video), "-i", str(audio), "-map", "0:v", "-map", "1:a?", "-c:v", "copy", "-c:a", "aac",
         "-t", f"{_duration(video):.6f}", "-movflags", "+faststart", str(out)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False,
    )
    if result.returncode != 0:
        raise _write_error(path, OSError(result.stderr.decode("utf-8", errors="replace") or "ffmpeg failed"))


def _duration(path: Path) -> float:
    """Seconds of the first video stream of ``path``."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return float(stream.duration * stream.time_base) if stream.duration else float(container.duration or 0) / 1e6


def _has_audio(path: Path) -> bool:
    """Whether ``path`` is a video/audio file with an audio track (folders and unreadable files have none)."""
    import av

    if not path.is_file():
        return False
    try:
        with av.open(str(path)) as container:
            return bool(container.streams.audio)
    except (av.FFmpegError, OSError):
        return False


def write_frames(folder: str | os.PathLike, frames: Iterable[np.ndarray]) -> Path:
    """Write frames as PNG files ``frame_00001.png``, ``frame_00002.png`` ... into ``folder``.

    The folder is filled under a temporary name next to it, each file is checked (it opens as an image of the
    size written), and only then renamed. An existing folder is replaced only if it holds nothing but such
    frame files (an earlier output); any other content is refused. On any failure (a full disk, bad frames)
    an earlier output is untouched and the temporary folder removed.

    Args:
        folder: the output folder.
        frames: ``(H, W, 3)`` uint8 RGB arrays (any size; odd sizes are kept exactly).
    Returns:
        The folder.
    """
    folder = Path(folder)
    with prepared_output(folder, is_folder=True):
        remove_stale_partials(folder)
        tmp = _temp_path(folder)
        old = None
        try:
            tmp.mkdir()
            sizes = _save_pngs(tmp, frames, folder)
            _verify_pngs(tmp, sizes, folder)
            if folder.exists():
                old = folder.parent / f"{tmp.name}.old"
                os.replace(folder, old)
            os.replace(tmp, folder)
        except OSError as exc:
            raise _write_error(folder, exc) from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    return folder


def _save_pngs(tmp: Path, frames: Iterable[np.ndarray], folder: Path) -> list[tuple[int, int]]:
    from PIL import Image

    sizes = []
    for index, frame in enumerate(frames):
        frame = to_rgb_uint8(frame, what=f"frame {index}")
        Image.fromarray(frame).save(tmp / FRAME_NAME.format(index + 1), compress_level=3)
        sizes.append(frame.shape[:2])
    if not sizes:
        raise UserInputError(f"no frames to write to {folder}; give at least one frame")
    return sizes


def _verify_pngs(tmp: Path, sizes: list[tuple[int, int]], folder: Path) -> None:
    """Every PNG written must open (header and data) as an image of the size it was written with."""
    from PIL import Image, UnidentifiedImageError

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


def check_writable(path: str | os.PathLike, *, is_folder: bool = False) -> None:
    """Make sure an output file (or folder) can be created at ``path`` before any work is done.

    Creates missing parent folders (see :func:`prepared_output` to remove them again on failure). Raises
    :class:`UserInputError` with the reason when the location is not writable, is of the wrong kind, or (for a
    folder) already holds files other than earlier frame outputs.
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


@contextlib.contextmanager
def prepared_output(path: str | os.PathLike, *, is_folder: bool = False) -> Iterator[Path]:
    """:func:`check_writable`, and if the ``with`` block then fails, remove the folders it created (when empty).

    A failed run therefore leaves no empty nested output folders behind (``-o new/deeper/out.mp4``).
    """
    path = Path(path)
    missing = [folder for folder in [path.parent, *path.parent.parents] if not folder.exists()]  # deepest first
    try:
        check_writable(path, is_folder=is_folder)
        yield path
    except BaseException:
        for folder in missing:
            try:
                folder.rmdir()
            except OSError:
                break  # not empty (or already gone): leave it and everything above it
        raise


def _temp_path(path: Path) -> Path:
    """A fresh hidden name next to ``path`` that names this process (see :func:`remove_stale_partials`)."""
    return path.parent / f".{path.stem}{PARTIAL}{os.getpid()}-{uuid.uuid4().hex[:12]}{path.suffix}"


def remove_stale_partials(path: str | os.PathLike) -> list[Path]:
    """Remove temporaries of ``path`` left by a writer that was killed (``kill -9``, power loss).

    A temporary is named ``.<stem>.partial-<pid>-<random><suffix>`` (a folder for frame output; ``.old`` for a
    replaced folder). It is stale when the process ``<pid>`` no longer runs; temporaries of running writers
    are left alone. Returns the paths removed.
    """
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    pattern = re.compile(re.escape(f".{path.stem}{PARTIAL}") + r"(\d+)-[0-9a-f]{12}" + re.escape(path.suffix) + r"(\.old)?")
    for candidate in path.parent.iterdir():
        match = pattern.fullmatch(candidate.name)
        if match and not _process_running(int(match.group(1))):
            if candidate.is_dir() and not candidate.is_symlink():
                shutil.rmtree(candidate, ignore_errors=True)
            else:
                candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def _process_running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it runs, as another user
    except OSError:
        return False
    return True


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


def __getattr__(name: str):
    # Imported lazily: stylize imports this module, so a plain import here would be circular.
    if name in _PIPELINE_NAMES:
        from . import stylize

        return getattr(stylize, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
