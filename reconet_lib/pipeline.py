"""The stylising pipeline around a network, without the network: the checked plan of a run and the threads that
decode and encode while the network works.

A run is planned first (:func:`plan`: arguments and source checked, the source probed, nothing decoded), then
:class:`Pipeline` starts a reader thread that decodes batches of frames and a writer thread that encodes the
stylised ones, joined to the caller's network through two bounded queues (memory does not grow with the video):

    read_timed_frames --(batches)--> network (caller) --(uint8 batches)--> write_timed_video / write_timed_frames

Every frame is written at its source time unless an output frame rate is given. Nothing here imports torch: the
PyTorch pipeline (:mod:`reconet_lib.stylize`) and the OpenVINO backend (:mod:`reconet_lib.openvino_backend`) share
it, and with it the frame range, timing, size and atomic output of ``reconet stylize``.
"""
from __future__ import annotations

import collections
import contextlib
import queue
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .codec import VIDEO_SUFFIXES, write_timed_video
from .errors import UserInputError
from .frame_folders import write_timed_frames
from .frames import DEFAULT_FPS, check_fps, constant_times
from .sizes import Size, check_size, resolve_size
from .video import probe, read_timed_frames

#: Batches each queue between the pipeline's stages holds (decoded, and stylised waiting to be encoded).
QUEUE_BATCHES = 3


@dataclass(frozen=True)
class StylizeReport:
    """What a stylising run did (:func:`reconet_lib.stylize.stylize_video`, the OpenVINO backend).

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


@dataclass(frozen=True)
class Job:
    """What a stylising run will do, checked before any frame is decoded."""

    source: object
    output: Path
    to_video: bool
    fps: float
    time_base: Fraction | None  # the source's, when its frame times are kept; None: evenly spaced at ``fps``
    audio_from: Path | None
    size: Size | None
    frame_size: tuple[int, int]
    frame_count: int | None
    batch_size: int
    side_by_side: bool
    allow_short: bool


def plan(source, output, *, batch_size, size, fps, side_by_side, allow_short) -> Job:
    """Check the arguments and the source (probed, not decoded); the output location is checked by the caller."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserInputError(f"batch_size={batch_size!r} must be a positive integer")
    size = check_size(size)
    if fps is not None:
        fps = check_fps(fps)
    info = probe(source)
    output = Path(output)
    to_video = output.suffix.lower() in VIDEO_SUFFIXES
    if not to_video and output.suffix:
        raise UserInputError(f"output {output} must end in .mp4 (a video) or have no suffix (a folder of PNG frames)")
    if info.path is not None and output.resolve() == info.path.resolve():
        raise UserInputError(f"the output {output} is the input; choose another output path")
    return Job(
        source=source, output=output, to_video=to_video, fps=fps or info.fps or DEFAULT_FPS,
        time_base=info.time_base if fps is None else None,
        audio_from=info.path if (to_video and info.has_audio) else None, size=size,
        frame_size=resolve_size(size, info.size), frame_count=info.frame_count, batch_size=batch_size,
        side_by_side=side_by_side, allow_short=allow_short,
    )


class _Stop(Exception):
    """Raised inside a pipeline stage when another stage has failed."""


@dataclass
class _Failure:
    error: BaseException


_END = object()


class Pipeline:
    """The reader and writer threads of one run and the two bounded queues between them and the network.

    Args:
        job: the planned run.
        stack: turns a list of decoded ``(H, W, 3)`` uint8 frames into the batch the network takes, in the reader
            thread (default: ``np.stack``, a ``(B, H, W, 3)`` array; the PyTorch pipeline makes a tensor there).
    """

    def __init__(self, job: Job, stack: Callable[[list[np.ndarray]], object] = np.stack):
        self.job, self.stack = job, stack
        self.stop = threading.Event()
        self.decoded: queue.Queue = queue.Queue(maxsize=QUEUE_BATCHES)
        self.stylised: queue.Queue = queue.Queue(maxsize=QUEUE_BATCHES)
        self.writer_errors: list[BaseException] = []
        self.times: collections.deque[Fraction] = collections.deque()  # of frames decoded, not yet written
        self.reader = threading.Thread(target=self._read, name="reconet-decode", daemon=True)
        self.writer = threading.Thread(target=self._write, name="reconet-encode", daemon=True)

    def __enter__(self) -> "Pipeline":
        self.reader.start()
        self.writer.start()
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is not None:
            self.stop.set()
        self.writer.join()
        self.stop.set()
        self.reader.join()

    def batches(self) -> Iterator:
        """The decoded batches (``stack`` of ``(H, W, 3)`` uint8 frames); re-raises the reader's error; stops
        when the writer failed."""
        while True:
            try:
                item = _get(self.decoded, self.stop)
            except _Stop:
                return
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item

    def put(self, inputs: np.ndarray, outputs: np.ndarray) -> bool:
        """Hand a stylised batch to the writer; False once the writer has failed."""
        return _put(self.stylised, (inputs, outputs), self.stop)

    def finish(self) -> None:
        """Tell the writer that no more batches come, wait for it and re-raise its error."""
        _put(self.stylised, _END, self.stop)
        self.writer.join()
        if self.writer_errors:
            raise self.writer_errors[0]

    def _read(self) -> None:
        job = self.job
        try:
            batch: list[np.ndarray] = []
            timed = read_timed_frames(job.source, size=job.size, allow_short=job.allow_short)
            with contextlib.closing(timed):
                for seconds, frame in timed:
                    batch.append(frame)
                    self.times.append(seconds)
                    if len(batch) == job.batch_size:
                        if not _put(self.decoded, self.stack(batch), self.stop):
                            return
                        batch = []
            if batch and not _put(self.decoded, self.stack(batch), self.stop):
                return
            _put(self.decoded, _END, self.stop)
        except BaseException as exc:  # handed to the main thread, which re-raises it
            _put(self.decoded, _Failure(exc), self.stop)

    def _frames_to_write(self, step: Fraction | None) -> Iterator[tuple[Fraction, np.ndarray]]:
        """``(time, frame)`` to write: at the source's times, or ``step`` seconds apart when retimed."""
        index = 0
        while True:
            item = _get(self.stylised, self.stop)
            if item is _END:
                return
            inputs, outputs = item
            if self.job.side_by_side:
                outputs = np.concatenate([inputs, outputs], axis=2)
            for frame in outputs:
                yield (index * step if step is not None else self.times.popleft()), frame
                index += 1

    def _write(self) -> None:
        job = self.job
        time_base, step = (job.time_base, None) if job.time_base is not None else constant_times(job.fps)
        try:
            if job.to_video:
                write_timed_video(job.output, self._frames_to_write(step), time_base, fps=job.fps,
                                  audio_from=job.audio_from)
            else:
                write_timed_frames(job.output, self._frames_to_write(step), time_base)
        except BaseException as exc:
            self.writer_errors.append(exc)
            self.stop.set()


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


