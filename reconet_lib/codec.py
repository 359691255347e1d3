"""Video files in and out, with PyAV (one ffmpeg stack): probing, decoding with times, encoding, audio.

Reading: :func:`probe_file` reads the container (the exact rational frame rate, 30000/1001 not 29.97; the frame
count it announces; the time base; whether there is audio). :func:`decode_file` decodes every frame with its
*presentation time* (``Fraction`` seconds), turning rotated phone videos upright. A file that yields fewer frames
than it announces (damaged, truncated) is an error unless ``allow_short=True``.

Writing: :func:`write_timed_video` encodes H.264 MP4 in the ``yuv420p`` pixel format (libx264), which every
browser and player shows, with every frame at the time it is given, in the time base given (the source's): a
variable-frame-rate phone clip keeps its timing. ``yuv420p`` needs an even width and height, so a frame of odd
size is **padded by one pixel, right/bottom** (the last column/row repeated): never resized. The source's audio
track is carried over whole (copied when MP4 can hold its codec, else re-encoded as AAC), interleaved with the
video by time. Nothing is lost on failure: the output is written under a temporary name
(:func:`reconet_lib.files.atomic_file`), probed back (frame count and size as written) and only then renamed.
"""
from __future__ import annotations

import heapq
import itertools
import os
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import av
import imageio_ffmpeg
import numpy as np

from .errors import UserInputError
from .files import atomic_file, partial_path, prepared_output, write_error
from .frames import VideoInfo, check_fps, constant_times, pad_to_even, short_reason, to_rgb_uint8

#: File name endings :func:`write_video` accepts (all written as H.264 in an MP4 container).
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov")
#: Audio codecs an MP4 holds as they are (copied); others are re-encoded as AAC.
MP4_AUDIO = ("aac", "mp3", "alac", "ac3", "eac3")
#: Errors PyAV raises for files it cannot read or write.
_AV_ERRORS = (av.FFmpegError, OSError, UnicodeDecodeError, ValueError)


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with ``imageio-ffmpeg`` (for tools and tests; the library uses PyAV)."""
    return imageio_ffmpeg.get_ffmpeg_exe()


def _open(path: Path):
    try:
        return av.open(str(path))
    except _AV_ERRORS as exc:
        raise UserInputError(f"{path} is not a video ffmpeg can read ({short_reason(exc)}); "
                             "pass a video file or a frame folder") from None


def probe_file(path: Path) -> VideoInfo:
    """Read a video file's container: exact frame rate, announced frame count, time base, streams, upright size.

    Raises:
        UserInputError: not a video, no video stream, or no frames; the message names the file.
    """
    with _open(path) as container:
        if not container.streams.video:
            raise UserInputError(f"{path} has no video stream; pass a video file or a folder of frames")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        time_base = stream.time_base
        # MP4/MOV announce their frame count in the header; other containers (MKV, WebM) are counted by packets.
        frame_count = stream.frames or _count_packets(container, stream)
        size = (stream.height, stream.width)
        has_audio = bool(container.streams.audio)
    if _first_frame_rotation(path) % 180 == 90:
        size = size[::-1]  # frames are turned upright when decoded
    if frame_count == 0 or min(size) < 1:
        raise UserInputError(f"{path} holds no video frames; pass a video with at least one frame")
    return VideoInfo(fps=float(rate) if rate else None, frame_count=frame_count, size=size, has_audio=has_audio,
                     path=path, time_base=Fraction(time_base) if time_base else None)


def _count_packets(container, stream) -> int:
    """Video packets of a container that does not announce its frame count (demuxed, not decoded)."""
    try:
        return sum(1 for packet in container.demux(stream) if packet.size)
    except av.FFmpegError:
        return 0


def _first_frame_rotation(path: Path) -> int:
    """Rotation in degrees (display matrix) of the first frame, 0 when it cannot be decoded."""
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                return int(round(frame.rotation or 0))
    except _AV_ERRORS:
        pass
    return 0


def _upright(frame: av.VideoFrame) -> np.ndarray:
    """The frame as ``(H, W, 3)`` uint8 RGB, turned as its display matrix says (as ffmpeg's autorotate does)."""
    array = frame.to_ndarray(format="rgb24")
    turns = int(round((frame.rotation or 0) / 90)) % 4
    return np.ascontiguousarray(np.rot90(array, turns)) if turns else array


def decode_file(path: Path, *, allow_short: bool = False) -> Iterator[tuple[Fraction, np.ndarray]]:
    """``(presentation time in seconds, (H, W, 3) uint8 RGB frame)`` for every frame of a video file, in order.

    Frames without a timestamp (rare raw streams) are placed one frame interval after the previous one.

    Raises:
        UserInputError: undecodable file; or fewer frames than the container announced, unless ``allow_short``.
    """
    info = probe_file(path)
    step = constant_times(info.fps or 25)[1]
    decoded, last = 0, None
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                if frame.pts is not None and frame.time_base:
                    seconds = Fraction(frame.pts) * Fraction(frame.time_base)
                else:
                    seconds = Fraction(0) if last is None else last + step
                decoded += 1
                last = seconds
                yield seconds, _upright(frame)
        except av.FFmpegError as exc:
            if not allow_short:
                raise UserInputError(f"decoding {path} failed after {decoded} frames ({short_reason(exc)}); the file "
                                     "may be damaged: re-encode it, or accept the short read (--allow-short)") from None
    announced = info.frame_count
    if announced and decoded < announced and not allow_short:
        raise UserInputError(
            f"{path} announces {announced} frames but only {decoded} could be decoded ({announced - decoded} lost: "
            "the file is damaged or truncated); re-download or re-encode it, or accept the short read "
            "(allow_short=True, reconet stylize --allow-short)"
        )


# --------------------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------------------


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float, *,
                audio_from: str | os.PathLike | None = None, quality: float = 7, preset: str = "veryfast") -> Path:
    """Encode evenly spaced frames at ``fps`` frames per second as an H.264 MP4; see :func:`write_timed_video`."""
    time_base, step = constant_times(check_fps(fps))
    timed = ((index * step, frame) for index, frame in enumerate(frames))
    return write_timed_video(path, timed, time_base, fps=fps, audio_from=audio_from, quality=quality, preset=preset)


def write_timed_video(
    path: str | os.PathLike,
    timed_frames: Iterable[tuple[Fraction, np.ndarray]],
    time_base: Fraction,
    *,
    fps: float | None = None,
    audio_from: str | os.PathLike | None = None,
    quality: float = 7,
    preset: str = "veryfast",
) -> Path:
    """Encode ``(time in seconds, frame)`` pairs as an H.264 MP4 (``yuv420p``), each frame at its time.

    Args:
        path: output file ending in ``.mp4`` (or ``.m4v``/``.mov``); its folder is created if needed.
        timed_frames: ``(seconds, (H, W, 3) uint8 RGB array)``, times increasing, frames all the same size.
            Frames of odd height or width are padded by one pixel, right/bottom, to even size: never resized.
        time_base: the unit of the stored times in seconds (the source's, e.g. ``Fraction(1, 10240)``); a time
            is rounded to the nearest tick, and a frame never shares a tick with the one before.
        fps: the nominal (average) frame rate given to the encoder's rate control; default ``1 / time_base``.
        audio_from: a video or audio file whose audio track (if it has one) is carried over whole (see module).
        quality: 1 (smallest file) .. 10 (best); 7 means x264 constant rate factor 15.
        preset: x264 speed preset; ``"veryfast"`` keeps encoding off the critical path of real-time stylisation.
    Returns:
        The path written; on any failure (a full disk, a dying encoder, bad frames) an existing file at ``path``
        is untouched and no temporary is left.
    Raises:
        UserInputError: bad arguments, frames of different sizes, or the file could not be written (the
            message says why, e.g. no space left on the device).
    """
    path = Path(path)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise UserInputError(f"{path} does not end in {'/'.join(VIDEO_SUFFIXES)}; write_video writes H.264 MP4 "
                             "(use write_frames for a folder of PNG frames)")
    time_base = Fraction(time_base)
    rate = Fraction(check_fps(fps if fps is not None else min(float(1 / time_base), 1000.0))).limit_denominator(1001)
    if not 1 <= quality <= 10:
        raise UserInputError(f"quality={quality!r} must lie between 1 and 10")
    audio = Path(audio_from) if audio_from is not None else None
    if audio is not None and audio.resolve() == path.resolve():
        raise UserInputError(f"the output {path} would overwrite the audio source; choose another output path")
    with prepared_output(path), atomic_file(path) as final:
        video_only = partial_path(path)
        try:
            count, size = _encode_h264(video_only, timed_frames, time_base, rate, quality, preset, path)
            _verify_video(video_only, count, size, path)
            if audio is not None and _has_audio(audio):
                _mux_audio(video_only, audio, final)
                _verify_video(final, count, size, path)
            else:
                os.replace(video_only, final)
        except _AV_ERRORS as exc:
            if isinstance(exc, UserInputError):
                raise
            raise write_error(path, exc) from None
        finally:
            video_only.unlink(missing_ok=True)
    return path


def _encode_h264(tmp: Path, timed_frames, time_base: Fraction, rate: Fraction, quality: float, preset: str,
                 path: Path) -> tuple[int, tuple[int, int]]:
    """Encode into ``tmp``; returns (frames written, (H, W) as stored, after padding to even)."""
    timed_frames = iter(timed_frames)
    try:
        first = next(timed_frames)
    except StopIteration:
        raise UserInputError(f"no frames to write to {path}; give at least one frame") from None
    frame0 = to_rgb_uint8(first[1], what="frame 0")
    h, w = frame0.shape[:2]
    padded_size = pad_to_even(frame0).shape[:2]
    count, last_tick = 0, None
    with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = padded_size[1], padded_size[0], "yuv420p"
        stream.time_base = stream.codec_context.time_base = time_base
        stream.options = {"crf": str(int((1 - quality / 10) * 51)), "preset": preset}
        for index, (seconds, frame) in enumerate(itertools.chain([first], timed_frames)):
            frame = to_rgb_uint8(frame, what=f"frame {index}")
            if frame.shape[:2] != (h, w):
                raise UserInputError(f"frame {index} is {frame.shape[1]}x{frame.shape[0]} but frame 0 is {w}x{h}; "
                                     "all frames of a video must have the same size")
            tick = round(Fraction(seconds) / time_base)
            tick = tick if last_tick is None else max(tick, last_tick + 1)
            picture = av.VideoFrame.from_ndarray(pad_to_even(frame), format="rgb24")
            picture.pts, picture.time_base = tick, time_base
            container.mux(stream.encode(picture))
            count, last_tick = count + 1, tick
        container.mux(stream.encode(None))
    return count, padded_size


def _verify_video(tmp: Path, count: int, size: tuple[int, int], path: Path) -> None:
    """Probe a written video back: it must hold ``count`` frames of ``size`` ``(H, W)``."""
    try:
        info = probe_file(tmp)
    except UserInputError:
        info = None
    if info is None or info.frame_count != count or info.size != tuple(size):
        found = "an unreadable file" if info is None else f"{info.frame_count} frames of {info.size[1]}x{info.size[0]}"
        raise UserInputError(
            f"writing {path} failed: {count} frames of {size[1]}x{size[0]} were encoded but the file holds "
            f"{found} (is the disk full?); nothing was written under that name"
        )


def _has_audio(path: Path) -> bool:
    """Whether ``path`` is a video/audio file with an audio track (folders and unreadable files have none)."""
    if not path.is_file():
        return False
    try:
        with av.open(str(path)) as container:
            return bool(container.streams.audio)
    except _AV_ERRORS:
        return False


def _mux_audio(video: Path, audio: Path, out: Path) -> None:
    """Write ``video``'s stream and ``audio``'s first audio track, whole, into ``out``, interleaved by time."""
    with av.open(str(video)) as vin, av.open(str(audio)) as ain, \
            av.open(str(out), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        video_in, audio_in = vin.streams.video[0], ain.streams.audio[0]
        video_out = container.add_stream_from_template(video_in)
        if audio_in.codec_context.name in MP4_AUDIO:
            audio_out = container.add_stream_from_template(audio_in)
            audio_packets = _copied(ain.demux(audio_in), audio_out)
        else:
            audio_out = container.add_stream("aac", rate=audio_in.rate or 48000)
            audio_packets = _reencoded(ain.decode(audio_in), audio_out)
        for packet in heapq.merge(_copied(vin.demux(video_in), video_out), audio_packets, key=_packet_seconds):
            container.mux(packet)


def _copied(packets, stream) -> Iterator:
    for packet in packets:
        if packet.dts is None:  # the demuxer's empty flush packet
            continue
        packet.stream = stream
        yield packet


def _reencoded(frames, stream) -> Iterator:
    for frame in frames:
        yield from stream.encode(frame)
    yield from stream.encode(None)


def _packet_seconds(packet) -> float:
    stamp = packet.dts if packet.dts is not None else packet.pts
    return float(stamp * packet.time_base) if stamp is not None and packet.time_base else 0.0
