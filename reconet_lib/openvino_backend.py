"""Stylising a video with an exported model (ONNX or OpenVINO IR) in OpenVINO, without PyTorch.

``reconet stylize CLIP --model model.onnx -o out.mp4`` runs here: the file written by ``reconet export`` (or an
OpenVINO IR ``.xml`` with its ``.bin``) goes through the same pipeline as ``reconet stylize --checkpoint``
(:mod:`reconet_lib.pipeline`: same frames, times, size and atomic output), but the network runs in OpenVINO and
the process never imports torch (importing torch alone takes about 0.5 GB of resident memory; OpenVINO about
55 MB). Only ``--size`` (the library's one resize) and ``--consistency`` (optical flow and warping) bring torch in.

How it runs, and why (measured on 2 cores of an AMD EPYC Zen 5, paper model, 640x360; docs/results.md):

* **one single-threaded stream per core** (``PERFORMANCE_HINT=THROUGHPUT``, ``NUM_STREAMS`` = cores), each with its
  own infer request, frames handed to whichever request is free and written back in order: 3.3 frames/s against
  2.7 for OpenVINO's default (one frame on all cores), whose threads wait for each other at every layer;
* the model is **reshaped to the clip's frame size** before compiling (a static graph: 315 MB at the peak with
  two streams, against 443 MB for the dynamic one) and compiled once per run (0.1-0.2 s; no cache is written);
* **instance normalisation as one 4-D operation** (:func:`_four_dimensional_norms`): the exported graph's
  reshapes around it made OpenVINO reorder every activation twice (float32: 1.34x faster per frame without);
* **uint8 in and out of the graph**: the conversion to ``(1, 3, H, W)`` float in [0, 1] and back to ``(H, W, 3)``
  is part of the compiled model (OpenVINO's pre- and post-processing), not numpy work in Python;
* **precision** from the project's policy (:func:`reconet_lib.cpu_features.runtime_precision`): bfloat16 where the
  CPU multiplies it natively, float32 elsewhere and under the AVX2-only settings (``--no-half``: float32);
* decoding and encoding run in the pipeline's own threads, beside the network.

Needs the ``openvino`` extra: ``pip install "reconet[openvino]"``.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm.auto import tqdm

from .cpu_features import runtime_precision
from .errors import UserInputError
from .files import prepared_output
from .frame_folders import is_output_name
from .pipeline import Job, Pipeline, StylizeReport, plan
from .sizes import Size

#: Model files this backend runs: ONNX (``reconet export``) or OpenVINO IR (``.xml`` beside its ``.bin``).
MODEL_SUFFIXES = (".onnx", ".xml")
INSTALL_HINT = 'install the openvino extra: pip install "reconet[openvino]"'
#: Frames that may be stylised ahead of the next one to write, per stream (a slower stream, e.g. on a core another
#: program holds, lets the others run ahead only this far; each waiting frame is one uint8 image).
AHEAD_PER_STREAM = 2
#: oneDNN caps (meant for torch's oneDNN) under which OpenVINO's CPU plugin fails to build its convolutions.
_ISA_CAPS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")


def openvino_module():
    """The ``openvino`` package, or one line saying how to install it."""
    try:
        # here, not at the top: an optional extra, needed only by this backend
        import openvino
        import openvino.opset13  # noqa: F401 - the graph operation the post-processing adds (ov.opset13.multiply)
    except ImportError:
        raise UserInputError(f"running an exported model (--model) needs OpenVINO; {INSTALL_HINT}") from None
    return openvino


def check_model_path(path: str | os.PathLike) -> Path:
    """Refuse, in one line, a model path this backend cannot read: missing, a folder, another suffix, IR without
    its ``.bin``."""
    path = Path(path)
    if path.suffix.lower() not in MODEL_SUFFIXES:
        hint = "; a PyTorch checkpoint goes with --checkpoint" if path.suffix.lower() == ".pt" else ""
        raise UserInputError(f"model {path} must be an ONNX file (.onnx, from reconet export) or OpenVINO IR "
                             f"(.xml){hint}")
    if not path.exists():
        raise UserInputError(f"model {path} does not exist; write one with: reconet export CHECKPOINT -o {path}")
    if not path.is_file():
        raise UserInputError(f"model {path} is a folder; give the .onnx or .xml file")
    if path.suffix.lower() == ".xml" and not path.with_suffix(".bin").is_file():
        raise UserInputError(f"model {path} has no weights file {path.with_suffix('.bin')} beside it; copy both")
    return path


def cpu_streams() -> int:
    """Streams to run: one per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class OpenVinoPlan:
    """How the network will run: ``precision`` (``"bf16"`` or ``"f32"``), ``streams`` (frames at once, one
    single-threaded stream each) and why that precision (one line)."""

    precision: str
    streams: int
    reason: str


def openvino_plan(core, half: bool | None = None, streams: int | None = None) -> OpenVinoPlan:
    """The precision and streams the policy gives: ``half=None`` the policy, ``False`` float32, ``True`` bfloat16."""
    if half is None:
        precision, reason = runtime_precision(
            lambda: "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    else:
        precision, reason = ("bf16", "bfloat16: asked for") if half else ("f32", "float32: asked for (--no-half)")
    return OpenVinoPlan(precision, streams or cpu_streams(), reason)


class OpenVinoNetwork:
    """An exported ReCoNet compiled for one frame size: ``(H, W, 3)`` uint8 frames in, the same shape out.

    Args:
        path: the ``.onnx`` or ``.xml`` file (one input and one output, ``(B, 3, H, W)`` in [0, 1]).
        frame_size: ``(H, W)`` of every frame it will see (the graph is reshaped to it and compiled).
        half: see :func:`openvino_plan`.
        streams: frames run at once (default one per core).
    Raises:
        UserInputError: the extra missing, an unreadable or unsuitable file, non-finite weights, or a frame size
            the graph does not take; each one line.
    """

    def __init__(self, path: str | os.PathLike, frame_size: tuple[int, int], *, half: bool | None = None,
                 streams: int | None = None):
        ov = openvino_module()
        self.path = check_model_path(path)
        core = ov.Core()
        self.plan = openvino_plan(core, half, streams)
        model = _read_model(core, self.path)
        self.frame_size = tuple(frame_size)
        model = _with_uint8_frames(ov, model, self.path, self.frame_size)
        self.norms_rewritten = _four_dimensional_norms(ov, model)
        config = {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": str(self.plan.streams),
                  "INFERENCE_NUM_THREADS": str(self.plan.streams), "INFERENCE_PRECISION_HINT": self.plan.precision}
        try:
            with _onednn_cap_lifted():
                self.compiled = core.compile_model(model, "CPU", config)
        except RuntimeError as exc:
            raise UserInputError(f"OpenVINO cannot compile model {self.path} for frames of "
                                 f"{frame_size[1]}x{frame_size[0]}: {_last_line(exc)}") from None
        self._queue_class = ov.AsyncInferQueue

    def stylize(self, frames: Iterator[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(input, stylised)`` uint8 ``(H, W, 3)`` pairs, in the order of ``frames``, ``streams`` at once."""
        runner = _InOrder(self._queue_class(self.compiled, self.plan.streams), AHEAD_PER_STREAM * self.plan.streams)
        yield from runner.run(frames)
        self.seconds = runner.seconds / self.plan.streams

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """Stylise one ``(H, W, 3)`` uint8 frame (synchronously; :meth:`stylize` runs the streams in parallel)."""
        return list(self.stylize(iter([frame])))[0][1]


@contextlib.contextmanager
def _onednn_cap_lifted() -> Iterator[None]:
    """Lift a oneDNN ISA cap (``ONEDNN_MAX_CPU_ISA``, one of the AVX2-only settings, meant for torch's oneDNN) while
    OpenVINO's CPU plugin first compiles: under it the plugin fails to build its convolutions. Its own oneDNN reads
    the cap once, at that first compile; the variable is back as it was when this returns, and the policy has
    already chosen float32 from it. No other thread of the pipeline runs yet."""
    saved = {name: os.environ.pop(name) for name in _ISA_CAPS if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _last_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else type(exc).__name__


def _read_model(core, path: Path):
    """Read and check the file: one input and one output, 4-D with 3 channels, finite weights."""
    try:
        model = core.read_model(os.fspath(path))
    except RuntimeError as exc:
        raise UserInputError(f"model {path} is not a readable ONNX or OpenVINO IR file ({_last_line(exc)}); "
                             "write it again with reconet export") from None
    shapes = [port.get_partial_shape() for port in (*model.inputs, *model.outputs)]
    if len(model.inputs) != 1 or len(model.outputs) != 1 or any(
            s.rank.is_dynamic or s.rank.get_length() != 4 or s[1].is_dynamic or s[1].get_length() != 3 for s in shapes):
        raise UserInputError(f"model {path} is not an image network: it must take and return one (B, 3, H, W) "
                             "image (as reconet export writes it)")
    for op in model.get_ordered_ops():
        if op.get_type_name() == "Constant" and op.get_element_type().is_real():
            if not np.isfinite(op.get_data()).all():
                raise UserInputError(f"model {path} has non-finite weights (NaN or inf): the training diverged; "
                                     "export an earlier checkpoint")
    return model


def _with_uint8_frames(ov, model, path: Path, frame_size: tuple[int, int]):
    """The model reshaped to one ``(H, W)`` frame, taking ``(1, H, W, 3)`` uint8 and returning ``(1, H, W, 3)``
    float in [0, 255] (OpenVINO's pre- and post-processing: layout, type, scale).

    With the rounding in :class:`_InOrder` (clip, round half to even) this is :mod:`reconet_lib.images`' conversion
    rule, written a second time because here it runs inside the compiled graph and without torch; the tests hold
    the two to one grey level (``tests/test_openvino_backend.py``)."""
    h, w = frame_size
    try:
        model.reshape({model.inputs[0]: ov.PartialShape([1, 3, h, w])})
    except RuntimeError as exc:
        raise UserInputError(f"model {path} does not take frames of {w}x{h} ({_last_line(exc)}); a model "
                             "exported by reconet export takes any size from 5x5 up") from None
    ppp = ov.preprocess.PrePostProcessor(model)
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    ppp.input().preprocess().convert_element_type(ov.Type.f32).scale(255.0)
    ppp.output().model().set_layout(ov.Layout("NCHW"))
    ppp.output().tensor().set_layout(ov.Layout("NHWC"))
    ppp.output().postprocess().custom(lambda node: ov.opset13.multiply(node, np.float32(255.0)).output(0))
    return ppp.build()


def _four_dimensional_norms(ov, model) -> int:
    """Rewrite each instance normalisation of the exported graph as one 4-D MVN; returns how many were rewritten.

    The exporter writes ``group_norm`` (one group per channel) as reshape to ``(N, C, H*W)``, MVN over the last
    axis, scale and shift, reshape back. The 3-D reshape makes OpenVINO reorder every activation out of its blocked
    layout and back (26 reorders per frame: 26 % of the float32 time at 640x360, 12 % of the bfloat16 time); MVN
    over ``(H, W)`` of the 4-D tensor is the same normalisation and keeps the layout (measured per frame, one
    thread: float32 956 -> 712 ms, bfloat16 388 -> 348 ms; outputs within 5e-5 in float32). Anything that does not
    match the pattern exactly is left as it is.
    """
    ops = ov.opset13
    rewritten = 0
    for mvn in model.get_ordered_ops():
        pattern = _norm_pattern(mvn)
        if pattern is None:
            continue
        x, gamma, beta, end = pattern
        n, c, h, w = (d.get_length() for d in x.get_partial_shape())
        attrs = mvn.get_attributes()
        axes, per_channel = (ops.constant(np.array(v, dtype=np.int64)) for v in ([2, 3], [1, c, 1, 1]))
        y = ops.mvn(x, axes, attrs["normalize_variance"], attrs["eps"], attrs["eps_mode"].lower())
        y = ops.add(ops.multiply(y, ops.reshape(gamma, per_channel, False)), ops.reshape(beta, per_channel, False))
        end.output(0).replace(y.output(0))
        rewritten += 1
    return rewritten


def _norm_pattern(mvn):
    """``(x, gamma, beta, last reshape)`` when ``mvn`` is the middle of reshape (N, C, H*W) -> MVN(axis 2) ->
    multiply -> add -> reshape (N, C, H, W) on a static 4-D ``x``; else None."""
    if mvn.get_type_name() != "MVN" or mvn.input_value(0).get_node().get_type_name() != "Reshape":
        return None
    first = mvn.input_value(0).get_node()
    x = first.input_value(0)
    shape = x.get_partial_shape()
    if shape.is_dynamic or shape.rank.get_length() != 4:
        return None
    n, c, h, w = (d.get_length() for d in shape)
    axes = mvn.input_value(1).get_node()
    if list(first.get_output_partial_shape(0).to_shape()) != [n, c, h * w] or axes.get_type_name() != "Constant" \
            or axes.get_data().tolist() not in ([2], [-1]):
        return None
    mul = _only_user(mvn, "Multiply")
    add = _only_user(mul, "Add") if mul is not None else None
    end = _only_user(add, "Reshape") if add is not None else None
    if end is None or list(end.get_output_partial_shape(0).to_shape()) != [n, c, h, w]:
        return None
    return x, _other_input(mul, mvn), _other_input(add, mul), end


def _only_user(node, kind: str):
    """The one consumer of ``node``'s output of type ``kind`` (other consumers may only read its shape)."""
    users = [t.get_node() for t in node.output(0).get_target_inputs()]
    found = [u for u in users if u.get_type_name() == kind]
    rest = [u for u in users if u.get_type_name() not in (kind, "ShapeOf")]
    return found[0] if len(found) == 1 and not rest else None


def _other_input(node, this):
    """The input of the two-input ``node`` that does not come from ``this``."""
    first = node.input_value(0)
    return node.input_value(1) if first.get_node().get_friendly_name() == this.get_friendly_name() else first


class _InOrder:
    """Frames through an ``AsyncInferQueue``: each to the first free request, results handed back in order.

    At most ``ahead`` frames are in flight or done but not yet handed back: when a slow request holds the next
    frame to hand back, the others run ahead only that far, and then :meth:`run` waits for that frame.
    """

    def __init__(self, requests, ahead: int):
        self.requests, self.ahead = requests, max(1, ahead)
        self.done: dict[int, np.ndarray] = {}
        self.inputs: dict[int, np.ndarray] = {}
        self.errors: list[BaseException] = []
        self.condition = threading.Condition()
        self.submitted = self.emitted = 0
        self.seconds = 0.0
        requests.set_callback(self._finished)

    def run(self, frames: Iterator[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(input, output)`` for every frame of ``frames``, in their order."""
        try:
            for frame in frames:
                while self.submitted - self.emitted >= self.ahead:  # the next frame to hand back is late
                    yield from self._next()
                self._submit(frame)
                yield from self._ready()
            while self.emitted < self.submitted:
                yield from self._next()
        finally:
            self.requests.wait_all()

    def _finished(self, request, index: int) -> None:  # in OpenVINO's thread
        try:
            out = np.rint(np.clip(request.get_output_tensor(0).data[0], 0, 255)).astype(np.uint8)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which re-raises it
            out, self.errors = None, self.errors + [exc]
        with self.condition:
            self.done[index] = out
            self.seconds += request.latency / 1000
            self.condition.notify_all()

    def _submit(self, frame: np.ndarray) -> None:
        self._raise()
        self.inputs[self.submitted] = frame
        self.requests.start_async({0: frame[None]}, self.submitted)
        self.submitted += 1

    def _ready(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Hand back every frame that is done, in order, up to the first one that is not."""
        while True:
            self._raise()
            with self.condition:
                if self.emitted not in self.done:
                    return
                out = self.done.pop(self.emitted)
            yield self.inputs.pop(self.emitted), out
            self.emitted += 1

    def _next(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Wait for the next frame to hand back, then hand back it and every one done after it."""
        with self.condition:
            self.condition.wait_for(lambda: self.emitted in self.done or self.errors)
        yield from self._ready()

    def _raise(self) -> None:
        if self.errors:
            exc = self.errors[0]
            raise UserInputError(f"OpenVINO failed while stylising: {_last_line(exc)}") from exc


# --------------------------------------------------------------------------------------------------------------
# The pipeline around it
# --------------------------------------------------------------------------------------------------------------


def stylize_video_openvino(model_path: str | os.PathLike, source, output: str | os.PathLike, *,
                           half: bool | None = None, side_by_side: bool = False, size: Size | None = None,
                           fps: float | None = None, progress: bool = True, allow_short: bool = False,
                           consistency: float = 0.0, streams: int | None = None) -> StylizeReport:
    """Stylise every frame of a video with an exported model in OpenVINO and write the result.

    The arguments mean what they mean for :func:`reconet_lib.stylize.stylize_video` (the same source kinds,
    output kinds, frame times, size and atomic output); ``model_path`` is an ``.onnx`` (``reconet export``) or
    ``.xml`` file, ``half`` follows :func:`openvino_plan`, ``streams`` the frames run at once (default: one per
    core). ``size`` and ``consistency`` import torch (the library's resize, the optical flow); without them this
    process never does.

    Returns:
        a :class:`~reconet_lib.pipeline.StylizeReport` (``model_fps``: frames per second of the streams' time
        inside OpenVINO, per stream).
    Raises:
        UserInputError: as :func:`reconet_lib.stylize.stylize_video`, and for the model file
            (:class:`OpenVinoNetwork`); nothing is written under ``output`` on failure.
    """
    check_model_path(model_path)
    openvino_module()
    job = plan(source, output, batch_size=1, size=size, fps=fps, side_by_side=side_by_side,
               allow_short=allow_short)
    blender = None
    if consistency:
        # here, not at the top: the flow and warp of --consistency run in torch, which this backend otherwise avoids
        from .blend import StreamBlender, check_alpha

        blender = StreamBlender(consistency) if check_alpha(consistency) > 0 else None
    with prepared_output(job.output, is_folder=not job.to_video, replaceable=is_output_name):
        network = OpenVinoNetwork(model_path, job.frame_size, half=half, streams=streams)
        return _run(job, network, progress, blender)


def _run(job: Job, network: OpenVinoNetwork, progress: bool, blender) -> StylizeReport:
    """Decode, stylise and encode ``job``; returns what was done."""
    frames = 0
    start = time.perf_counter()
    with tqdm(total=job.frame_count, unit="frame", desc="stylising", disable=not progress) as bar, \
            Pipeline(job, stack=lambda batch: batch[0]) as pipeline:
        for frame, out in network.stylize(pipeline.batches()):
            if blender is not None:  # --consistency: blend with the previous output (reconet_lib.blend)
                out = blender(frame[None], out[None])[0]
            if not pipeline.put(frame[None], out[None]):
                break
            frames += 1
            bar.update(1)
        pipeline.finish()
    seconds = time.perf_counter() - start
    model_seconds = getattr(network, "seconds", 0.0)
    return StylizeReport(frames=frames, seconds=seconds,
                         model_fps=frames / model_seconds if model_seconds > 0 else float("inf"),
                         end_to_end_fps=frames / seconds, output=job.output, model_seconds=model_seconds)
