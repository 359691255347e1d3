"""Stylising a whole video with a trained ReCoNet in PyTorch (``reconet stylize --checkpoint``).

:func:`stylize_video` runs the network on batches of frames while a reader thread decodes the next frames and a
writer thread encodes the previous ones, through bounded queues (memory does not grow with the video's length; :mod:`reconet_lib.pipeline`):

    read_timed_frames --(uint8 batches)--> network (this thread) --(uint8 batches)--> write_timed_video / write_timed_frames

Every frame is written at its source time (a variable-frame-rate phone clip keeps its timing, and its audio stays
in sync) unless an output frame rate is given, which spaces the frames evenly.

The network runs as :class:`StylizeNetwork` runs it: device and precision come from
:mod:`reconet_lib.precision`; on a CPU a :class:`~reconet_lib.network.ReCoNet` always goes through
:func:`~reconet_lib.inference.optimize_for_inference` (channels-last, rewritten output and upsampling layers;
bfloat16 where the CPU runs it natively, else float32 with Winograd convolutions below AVX-512; freed memory
reused); on CUDA it runs under float16 autocast.

Everything a user can get wrong is refused before any frame is decoded, with one line: an unreadable source, an
unwritable output, a frame rate that is not a positive finite number, a size whose frames would not fit in
memory, a checkpoint whose weights are not finite. An error inside the reader or writer thread reaches the
caller as the error it is (for a user's fault: one :class:`~reconet_lib.errors.UserInputError` line).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from . import images, memory
from .blend import StreamBlender, check_alpha
from .checkpoint import load_model
from .errors import UserInputError
from .files import prepared_output
from .frame_folders import is_output_name
from .inference import optimize_for_inference
from .network import ReCoNet
from .pipeline import QUEUE_BATCHES, Job, Pipeline, StylizeReport, plan
from .precision import autocast, inference_autocast, inference_streams, parse_device, synchronize
from .sizes import Size, format_size

# --------------------------------------------------------------------------------------------------------------
# The network as the pipeline runs it
# --------------------------------------------------------------------------------------------------------------


def resolve_precision(device: torch.device, half: bool | None) -> torch.dtype | None:
    """The autocast dtype for inference (None = float32): :func:`reconet_lib.precision.inference_autocast`."""
    return inference_autocast(device, half)


class StylizeNetwork:
    """A network prepared to stylise frames on a device: ``(B, H, W, 3)`` uint8 in, the same shape out.

    Args:
        model: a network taking and returning ``(B, 3, H, W)`` images in [0, 1].
        device: where to run it (default: where its parameters are); the model is moved there.
        half: ``None`` = the precision policy of :mod:`reconet_lib.precision`, ``True`` = half precision even
            where it is slow, ``False`` = float32. A model already stored in fp16/bf16 runs as it is.
    """

    def __init__(self, model: torch.nn.Module, device: str | torch.device | None = None, half: bool | None = None):
        model_device, model_dtype = _model_device_dtype(model)
        self.device = parse_device(device) if device is not None else model_device
        model = model.to(self.device).eval()
        dtype = inference_autocast(self.device, half) if model_dtype == torch.float32 else None
        self.input_dtype = model_dtype
        if self.device.type == "cpu" and isinstance(model, ReCoNet) and model_dtype == torch.float32:
            # The fastest CPU path we found, in the dtype the policy gives (float32 where bfloat16 is emulated).
            model = optimize_for_inference(model, self.device, dtype=dtype or torch.float32)
            dtype = None
        self.model, self.autocast = model, dtype
        self.pin = self.device.type == "cuda"

    def __call__(self, batch: torch.Tensor) -> tuple[np.ndarray, float]:
        """Stylise a ``(B, H, W, 3)`` uint8 batch; returns the uint8 result and the seconds inside the model."""
        x = images.to_float(batch.to(self.device, non_blocking=self.pin), self.input_dtype)
        synchronize(self.device)
        tic = time.perf_counter()
        with torch.inference_mode():
            try:
                with autocast(self.device, self.autocast):
                    y = self.model(x)
                synchronize(self.device)
            except (torch.cuda.OutOfMemoryError, MemoryError):
                raise UserInputError(
                    f"out of memory running the network on {len(batch)} frames of {batch.shape[2]}x{batch.shape[1]} "
                    f"on {self.device}; use a smaller --size or --batch-size 1"
                ) from None
            seconds = time.perf_counter() - tic
            if y.shape != x.shape:
                raise UserInputError(f"the model returned {tuple(y.shape)} for input {tuple(x.shape)}; "
                                     "it must return an image of the input's size")
            out = images.to_uint8(y)
        return out, seconds


def _model_device_dtype(model: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.float32


def check_finite_weights(model: torch.nn.Module, what: str = "the model") -> None:
    """Refuse a network with NaN or infinite weights (a diverged training run): it would write black frames.

    Raises:
        UserInputError: names ``what`` and the first non-finite tensor.
    """
    bad = [name for name, tensor in [*model.named_parameters(), *model.named_buffers()]
           if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
    if bad:
        raise UserInputError(
            f"{what} has non-finite weights (NaN or inf in {len(bad)} tensors, e.g. {bad[0]}): the training "
            "diverged; use an earlier checkpoint (e.g. a step_*.pt beside it)"
        )


# --------------------------------------------------------------------------------------------------------------
# Memory: estimated before anything is allocated
# --------------------------------------------------------------------------------------------------------------


#: Frames per network call when none is given, by device type: 4 on CUDA (batching keeps the GPU busy). On a CPU
#: :func:`default_batch_size` gives one frame per inference stream instead (one frame per core, each single
#: threaded; a batch of 4 run as one two-threaded call was measured slower, 0.29 vs 0.54 frames/s at 1280x720).
DEFAULT_BATCH_SIZE = {"cpu": 1, "cuda": 4}


def default_batch_size(device: torch.device) -> int:
    """Frames per network call on ``device`` when the user gives none: on a CPU one frame per inference stream
    (:func:`reconet_lib.precision.inference_streams`, frames run at once, one per core), else
    :data:`DEFAULT_BATCH_SIZE`."""
    device = torch.device(device)
    if device.type == "cpu":
        return inference_streams(device)[0]
    return DEFAULT_BATCH_SIZE.get(device.type, 1)


def estimate_memory(model: torch.nn.Module, frame_size: tuple[int, int], batch_size: int,
                    device: torch.device) -> tuple[int, int]:
    """Bytes a run needs at its peak: ``(host memory, device memory)`` (device memory is 0 on a CPU).

    Host: the uint8 batches in flight (two queues, the batch being read and the one being written, input beside
    output). Network: per frame, the float input and output and a number of full-resolution activations of the
    widest layer, ``c1`` channels (48 when the model is not a ReCoNet), at 4 bytes a value: 3 on CUDA (the
    caching allocator reuses blocks), 10 on a CPU, where the process keeps freed memory for reuse
    (:func:`reconet_lib.memory.retain_freed_memory`) and so holds its peak plus fragmentation (measured with the
    paper model, resident memory above the ~650 MB of torch itself: 640x360 batch 1 about 0.5 GB, batch 4 about
    1.6 GB, 1280x720 batch 4 about 4.3 GB; this estimate: 0.45, 1.8 and 7.2 GB).
    """
    h, w = frame_size
    frame = h * w * 3
    host = (2 * QUEUE_BATCHES + 3) * 2 * batch_size * frame
    widest = model.config.channels[0] if isinstance(model, ReCoNet) else 48
    if device.type == "cuda":
        return host, batch_size * h * w * 4 * (2 * 3 + 3 * widest)
    return host + batch_size * h * w * 4 * (2 * 3 + 10 * widest), 0


def check_memory(model: torch.nn.Module, frame_size: tuple[int, int], batch_size: int, device: torch.device) -> None:
    """Refuse a run whose frames would not fit in memory (:func:`estimate_memory`), before allocating anything."""
    host, on_device = estimate_memory(model, frame_size, batch_size, device)
    what = f"frames of {format_size(frame_size)} in batches of {batch_size}"
    hint = "use a smaller --size (e.g. 1280) or --batch-size 1"
    memory.require(host, what, hint)
    if device.type == "cuda":
        memory.require(on_device, what, hint, device=device)


# --------------------------------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------------------------------


def _as_batch(frames: list[np.ndarray], pin: bool) -> torch.Tensor:
    """Stack frames into a ``(B, H, W, 3)`` uint8 tensor (page-locked for fast copies to a GPU)."""
    batch = torch.from_numpy(np.stack(frames))
    return batch.pin_memory() if pin else batch


def _run(job: Job, network: StylizeNetwork, progress: bool, blender=None) -> StylizeReport:
    """Decode, stylise and encode ``job`` through the pipeline; returns what was done."""
    frames, model_seconds = 0, 0.0
    start = time.perf_counter()
    with tqdm(total=job.frame_count, unit="frame", desc="stylising", disable=not progress) as bar, \
            Pipeline(job, lambda frames: _as_batch(frames, network.pin)) as pipeline:
        for batch in pipeline.batches():
            out, seconds = network(batch)
            model_seconds += seconds
            if blender is not None:  # --consistency: blend with the previous output (reconet_lib.blend)
                out = blender(batch.numpy(), out)
            if not pipeline.put(batch.numpy(), out):
                break
            frames += len(out)
            bar.update(len(out))
        pipeline.finish()
    seconds = time.perf_counter() - start
    return StylizeReport(
        frames=frames, seconds=seconds, model_fps=frames / model_seconds if model_seconds > 0 else float("inf"),
        end_to_end_fps=frames / seconds, output=job.output, model_seconds=model_seconds,
    )


def stylize_video(
    model: torch.nn.Module,
    source,
    output: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    batch_size: int | None = None,
    half: bool | None = None,
    side_by_side: bool = False,
    size: Size | None = None,
    fps: float | None = None,
    progress: bool = True,
    allow_short: bool = False,
    consistency: float = 0.0,
) -> StylizeReport:
    """Stylise every frame of a video with a ReCoNet and write the result.

    Args:
        model: a network taking and returning ``(B, 3, H, W)`` images in [0, 1] (e.g. from ``load_model``).
        source: a video file, a folder of frames, or ``(H, W, 3)`` uint8 frames (see :func:`~.video.read_timed_frames`).
        output: an ``.mp4`` file (H.264, source frame rate and audio kept) or a folder (PNG frames).
        device: where to run the model (``"cpu"``, ``"cuda:1"``, a ``torch.device``); default: where its
            parameters are. The model is moved there.
        batch_size: frames per network call; default :func:`default_batch_size` (1 on a CPU, 4 on CUDA).
        half: precision (see :class:`StylizeNetwork`): ``None`` = the policy of :mod:`reconet_lib.precision`
            (fp16 on CUDA, bf16 on CPUs with native bf16, else fp32), ``True`` = always half, ``False`` = fp32.
        side_by_side: write ``input | output`` next to each other (the output is twice as wide).
        size: resize the input first: ``N`` = longer side in pixels, or ``(H, W)`` (see :mod:`reconet_lib.sizes`).
        fps: frame rate of an ``.mp4`` output; default the source's (:data:`~.frames.DEFAULT_FPS` for folders/arrays); without it every frame keeps its source time.
        progress: show a ``tqdm.auto`` progress bar.
        allow_short: accept a damaged video that yields fewer frames than its container announces.
        consistency: ``alpha`` in [0, 1] of :class:`reconet_lib.blend.StreamBlender`: blend each stylised frame with
            the previous output warped into it (OpenCV DIS flow on the input frames, valid mask from the
            forward-backward check); 0 (default) = off.
    Returns:
        A :class:`StylizeReport` with frame count and frames per second (network alone and end to end).
    Raises:
        UserInputError: unreadable or empty source, unwritable output, bad frame rate, frames too large for the
            memory, non-finite weights (all checked before any decoding); frames lost to a damaged source.
            On any failure nothing is written under ``output`` and output folders created for it are removed.
    """
    if batch_size is None:
        where = parse_device(device) if device is not None else next(model.parameters(), torch.empty(0)).device
        batch_size = default_batch_size(where)
    job = plan(source, output, batch_size=batch_size, size=size, fps=fps, side_by_side=side_by_side,
               allow_short=allow_short)
    check_finite_weights(model)
    blender = StreamBlender(consistency) if check_alpha(consistency) > 0 else None
    with prepared_output(job.output, is_folder=not job.to_video, replaceable=is_output_name):
        network = StylizeNetwork(model, device, half)
        check_memory(model, job.frame_size, batch_size, network.device)
        return _run(job, network, progress, blender)

# --------------------------------------------------------------------------------------------------------------
# Command line: reconet stylize --checkpoint (the command's options: reconet_lib.stylize_command)
# --------------------------------------------------------------------------------------------------------------


def run_stylize_command(args: argparse.Namespace) -> int:
    """Carry out ``reconet stylize --checkpoint``: check input, output and options first, then load the model and stylise."""
    device = parse_device(args.device)
    check_alpha(args.consistency)
    if args.batch_size is None:
        args.batch_size = default_batch_size(device)
    job = plan(args.input, args.output, batch_size=args.batch_size, size=args.size, fps=args.fps,
               side_by_side=args.side_by_side, allow_short=args.allow_short)
    with prepared_output(job.output, is_folder=not job.to_video, replaceable=is_output_name):
        model = load_model(args.checkpoint, device=device)
        check_finite_weights(model, what=f"the checkpoint {args.checkpoint}")
        report = stylize_video(
            model, args.input, job.output, device=device, batch_size=args.batch_size,
            half=False if args.no_half else None, side_by_side=args.side_by_side, size=args.size, fps=args.fps,
            progress=not args.quiet, allow_short=args.allow_short, consistency=args.consistency,
        )
    print(report.summary)
    return 0
