"""Check, then time, every CUDA path of reconet in one command: each GPU result against the CPU first.

    PYTHONPATH=. python benchmarks/gpu_check.py --json gpu_check.json   # CUDA: about 6 minutes, at most ~8
    python benchmarks/gpu_check.py --dry-run                            # CPU, tiny sizes, 15-30 s, no CUDA

Sections, in this order. Each is time-boxed (seconds of timing, not counts of iterations); once the global
--budget (default 420 s) is spent, the sections left are skipped with that reason. An exception inside a
section is a FAILED row and the next section runs.

  hardware     GPU name, compute capability, memory, torch/CUDA/cuDNN versions, and the measured fp16 and bf16
               rate of an 8192^3 matrix multiply (TFLOP/s): the ceiling the network's TFLOP/s is compared with.
  correctness  the pytest tests marked cuda (tests/test_cuda.py), one row per test: each CUDA path against the CPU
               float32 result on the same input (paper model, 94x158, batch 2: an odd size, so padding and
               cropping run): the network forward in fp32 (TF32), fp16 and bf16 autocast; optimize_for_inference
               in fp16 and bf16; warp (float32 and a float16 image) and its valid mask; every loss term of
               pair_losses in fp32, fp16 and bf16; one training step (the library's train_step: fp32, bf16, fp16
               with GradScaler): the loss before and after one Adam update. The tolerances are defined below.
  inference    paper model at 640x360 (count_flops: 135 GFLOP per frame): three half-precision modes
               (optimize_for_inference fp16 / bf16, fp16 autocast channels-last), cuDNN autotuning off (the
               library's default) and on, at batch 8; the fastest at batch 1, 8 and 32: frames/s, TFLOP/s and
               share of the matmul rate (target: 2000 frames/s batched on an H100-class GPU); and its output
               at full size against the CUDA float32 output.
  video        stylize_video end to end on a generated 640x360 clip of 300 frames (written with write_video
               first, so decoding is included; batch 8): frames/s, and its share of the network's rate inside the
               pipeline and of the fastest network-alone rate at batch 8 (target: 90 % or more).
  training     the train command's own step (reconet_lib.train.train_step: paper model, VGG-16 loss network
               with random weights, all five loss terms, Adam, one host sync per step) at 256x256 and 640x360, batch 2 and 8, bf16 and
               fp16 with GradScaler: steps/s with the loader excluded (one batch kept on the GPU) and included
               (the train command's loader: build_dataset, SampleStream, make_step_loader, on generated synthetic
               pairs), the loader alone (batches/s), peak GPU memory (torch.cuda.max_memory_allocated).
  torchrun     `python -m torch.distributed.run --standalone --nproc_per_node=N -m reconet_lib train` on the N GPUs
               present (NCCL when N > 1; one process joins no process group), a few steps; and a 1-rank NCCL
               process group in a child process: all_reduce, DistributedDataParallel gradients = plain ones.
  raft         RAFT (large) flow on the GPU against the CPU, and pairs/s at 640x360, when its weights are present
               ($RECONET_RAFT_WEIGHTS or the torch hub cache); else skipped with the reason.
  compile      optimize_for_inference(compile=True) at batch 32 in a child process with a timeout: compile time,
               frames/s, output against the uncompiled path. Runs last, on what is left of the budget.

Exit status: 0 when no row FAILED, 1 otherwise, 2 for bad arguments (or no CUDA without --dry-run). The dry run
runs every section's code on the CPU with the tiny preset and tiny sizes (its figures mean nothing); figures
that need CUDA are skipped with the reason. Networks have random weights: speed and agreement do not depend on
them. --json writes the rows as JSON (atomically, after every section, so a killed run keeps what it measured).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import importlib.util
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from xml.etree import ElementTree
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

try:
    import reconet_lib  # noqa: F401
except ModuleNotFoundError:  # a checkout without `pip install -e .`
    sys.exit("gpu_check: reconet_lib is not importable; run from the repository root with PYTHONPATH=. "
             "(or pip install -e .)")

from reconet_lib import images, losses
from reconet_lib.errors import UserInputError
from reconet_lib.files import atomic_write_text
from reconet_lib.cost import count_flops
from reconet_lib.inference import optimize_for_inference
from reconet_lib.network import ReCoNet
from reconet_lib.precision import synchronize
from reconet_lib.train import PairLoss, train_step
from reconet_lib.warp import inside_mask

REPO = Path(__file__).resolve().parents[1]
CUDA_TESTS = REPO / "tests" / "test_cuda.py"  # the correctness checks, as pytest tests marked cuda
SECTIONS = ("hardware", "correctness", "inference", "video", "training", "torchrun", "raft", "compile")
PASSED, MEASURED, SKIPPED, FAILED = "passed", "measured", "skipped", "FAILED"
HALF = {"fp16": torch.float16, "bf16": torch.bfloat16}
#: What the training rows ask for by name: (autocast dtype, gradient scaler). ``auto`` picks one of these.
TRAIN_PRECISIONS = {"bf16": (torch.bfloat16, False), "fp16": (torch.float16, True)}


def video_functions():
    """``(stylize_video, write_video)``: the one place this script names the video modules."""
    from reconet_lib.stylize import stylize_video
    from reconet_lib.codec import write_video

    return stylize_video, write_video


# ==============================================================================================================
# Rows, tolerances, the report
# ==============================================================================================================


@dataclass
class Row:
    """One line of the table: a check (passed/FAILED), a measurement (measured) or something skipped."""

    section: str
    name: str
    status: str
    note: str = ""  # the tolerance, the reason for a skip, or what failed
    figures: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Tolerance:
    """Largest allowed differences to the reference: absolute (max, mean over elements) and relative (max)."""

    max_abs: float | None = None
    mean_abs: float | None = None
    rel: float | None = None

    def describe(self) -> str:
        parts = [f"{name} <= {value:g}" for name, value in asdict(self).items() if value is not None]
        return "tolerance " + ", ".join(parts)


# Measured on the CPU (paper model, random weights, 142x250): fp16 max 0.005 / mean 0.0007, bf16 max 0.043 /
# mean 0.0054 on [0, 1] outputs; loss terms within 1e-3 relative; one Adam step's loss within 1 % (bf16).
# The tolerances are 3-5 times that. TF32 (cuDNN's default for float32 convolutions) rounds like fp16.
IMAGE_TOL = {"fp32": Tolerance(max_abs=0.02, mean_abs=0.003), "fp16": Tolerance(max_abs=0.02, mean_abs=0.003),
             "bf16": Tolerance(max_abs=0.12, mean_abs=0.02)}
LOSS_TOL = {"fp32": Tolerance(rel=0.02), "fp16": Tolerance(rel=0.02), "bf16": Tolerance(rel=0.03)}
STEP_TOL = {"fp32": Tolerance(rel=0.03), "fp16": Tolerance(rel=0.03), "bf16": Tolerance(rel=0.05)}
WARP_TOL = Tolerance(max_abs=1e-4)
WARP_HALF_TOL = Tolerance(max_abs=2e-3)
MASK_TOL = Tolerance(max_abs=0.0)
RAFT_TOL = Tolerance(mean_abs=0.1)  # pixels; RAFT refines iteratively, TF32 moves it a little


def differences(out, ref) -> dict:
    """``max_abs``, ``mean_abs`` and ``rel`` (max_abs / max |ref|) of two tensors or numbers, in float64."""
    a = torch.as_tensor(out).detach().to("cpu", torch.float64)
    b = torch.as_tensor(ref).detach().to("cpu", torch.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs reference {tuple(b.shape)}")
    if not torch.isfinite(a).all():
        return {"max_abs": math.inf, "mean_abs": math.inf, "rel": math.inf}
    diff = (a - b).abs()
    scale = float(b.abs().max()) if b.numel() else 0.0
    return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()), "rel": float(diff.max()) / max(scale, 1e-30)}


def exceeded(diffs: dict, tol: Tolerance) -> list[str]:
    """The limits of ``tol`` that ``diffs`` break, as ``"max_abs 0.3 > 0.02"`` strings (empty: within)."""
    return [f"{name} {diffs[name]:.3g} > {limit:g}" for name, limit in asdict(tol).items()
            if limit is not None and not diffs[name] <= limit]


class Report:
    """The rows so far; prints each as it comes (stderr) and the table at the end (stdout)."""

    def __init__(self, echo: bool = True) -> None:
        self.rows: list[Row] = []
        self.echo = echo
        self.started = time.perf_counter()

    def add(self, section: str, name: str, status: str, note: str = "", **figures) -> Row:
        row = Row(section, name, status, note, {k: v for k, v in figures.items() if v is not None})
        self.rows.append(row)
        if self.echo:
            print(f"[{time.perf_counter() - self.started:5.0f} s] {section}: {name}: {status} "
                  f"{format_figures(row.figures)} {note}".rstrip(), file=sys.stderr, flush=True)
        return row

    def compare(self, section: str, name: str, out, ref, tol: Tolerance, **figures) -> Row:
        """A check: ``out`` against the reference ``ref`` within ``tol`` (passed, else FAILED)."""
        diffs = differences(out, ref)
        bad = exceeded(diffs, tol)
        shown = {k: diffs[k] for k in ("max_abs", "mean_abs", "rel") if k == "rel" or getattr(tol, k) is not None}
        note = tol.describe() + (f"; exceeded: {', '.join(bad)}" if bad else "")
        return self.add(section, name, FAILED if bad else PASSED, note, **shown, **figures)

    def compare_terms(self, section: str, name: str, out: dict, ref: dict, tol: Tolerance) -> Row:
        """A check of several named scalars at once: each relative difference within ``tol.rel``."""
        rel = {key: differences(out[key], ref[key])["rel"] for key in ref}
        bad = [f"{key} {value:.3g} > {tol.rel:g}" for key, value in rel.items() if not value <= tol.rel]
        note = f"relative difference of each term, {tol.describe()}" + (f"; exceeded: {', '.join(bad)}" if bad else "")
        return self.add(section, name, FAILED if bad else PASSED, note, **{f"rel_{k}": v for k, v in rel.items()})

    def failed(self) -> list[Row]:
        return [row for row in self.rows if row.status == FAILED]

    def exit_status(self) -> int:
        return 1 if self.failed() else 0

    def table(self) -> str:
        width = max([len(r.name) for r in self.rows] + [10])
        lines = [f"{'section':<12} {'check / measurement':<{width}} {'status':<8} figures; note", "-" * (width + 40)]
        for row in self.rows:
            text = "; ".join(part for part in (format_figures(row.figures), row.note) if part)
            lines.append(f"{row.section:<12} {row.name:<{width}} {row.status:<8} {text}")
        counts = {s: sum(r.status == s for r in self.rows) for s in (PASSED, MEASURED, SKIPPED, FAILED)}
        seconds = time.perf_counter() - self.started
        lines.append(", ".join(f"{n} {s}" for s, n in counts.items()) + f" in {seconds:.0f} s")
        return "\n".join(lines)

    def as_dict(self, meta: dict) -> dict:
        return {"meta": meta, "rows": [asdict(row) for row in self.rows],
                "failed": len(self.failed()), "seconds": time.perf_counter() - self.started}


def format_figures(figures: dict) -> str:
    def show(value) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    return " ".join(f"{key}={show(value)}" for key, value in figures.items())


def short(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:240] if lines else ''}"


# ==============================================================================================================
# Plans, clocks, the context the sections share
# ==============================================================================================================


@dataclass(frozen=True)
class Plan:
    """Sizes and time boxes. Sizes are ``(height, width)``; seconds are seconds of timing per figure."""

    dry_run: bool
    preset: str = "paper"
    check_size: tuple[int, int] = (94, 158)
    matmul_n: int = 8192
    infer_size: tuple[int, int] = (360, 640)
    select_batch: int = 8
    infer_batches: tuple[int, ...] = (1, 8, 32)
    time_s: float = 1.5
    video_size: tuple[int, int] = (360, 640)
    video_frames: int = 300
    video_batch: int = 8
    train_sizes: tuple[tuple[int, int], ...] = ((256, 256), (360, 640))
    train_batches: tuple[int, ...] = (2, 8)
    train_s: float = 2.0
    torchrun_size: int = 256
    torchrun_steps: int = 6
    raft_check_size: tuple[int, int] = (184, 320)
    raft_size: tuple[int, int] = (360, 640)
    compile_batch: int = 32
    warmup: int = 2  # untimed calls before each timing
    min_calls: int = 3  # timed calls at least, whatever the seconds
    small_loss_network: bool = False  # VGG cut after relu2_2 (the dry run: half-precision CPU kernels are slow)
    min_section_s: float = 10.0
    section_s: dict = field(default_factory=lambda: {
        "hardware": 15, "correctness": 60, "inference": 60, "video": 45, "training": 130, "torchrun": 75,
        "raft": 30, "compile": 180})


def loss_weights(plan: Plan) -> losses.LossWeights:
    """The library's default loss weights; the dry run keeps the same terms on the first two VGG blocks only."""
    if plan.small_loss_network:
        return losses.LossWeights(content_layer="relu2_2", style_layer_weights={"relu1_2": 1.0, "relu2_2": 1.0})
    return losses.LossWeights()


def gpu_plan() -> Plan:
    return Plan(dry_run=False)


def dry_plan() -> Plan:
    """Tiny sizes on the CPU: every section's code runs in a few seconds; the figures mean nothing."""
    return Plan(dry_run=True, preset="tiny", check_size=(22, 30), matmul_n=128, infer_size=(36, 64), select_batch=2,
                infer_batches=(1, 2), time_s=0.05, video_size=(36, 64), video_frames=12, video_batch=2,
                train_sizes=((32, 32),), train_batches=(2,), train_s=0.05, torchrun_size=32, warmup=1, min_calls=1,
                torchrun_steps=2, raft_check_size=(128, 128), raft_size=(128, 128), compile_batch=2,
                small_loss_network=True,
                min_section_s=0.0, section_s={name: 60 for name in SECTIONS})


class Timebox:
    """A deadline: ``left()`` seconds remain; ``share(n, cap)`` splits what remains over ``n`` items."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.perf_counter() + seconds

    def left(self) -> float:
        return self.end - time.perf_counter()

    def share(self, items: int, cap: float) -> float:
        return max(0.0, min(cap, self.left() / max(items, 1)))


@dataclass
class Context:
    plan: Plan
    device: torch.device
    report: Report
    budget: Timebox
    work: Path
    matmul_tflops: dict = field(default_factory=dict)  # "fp16"/"bf16" -> TFLOP/s
    network_fps: dict = field(default_factory=dict)  # batch -> fastest network-alone frames/s
    best_mode: tuple | None = None  # (mode name, cudnn autotuning) of the fastest inference mode
    _pairs: Path | None = None

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @contextlib.contextmanager
    def item(self, section: str, name: str) -> Iterator[None]:
        """Run one check or measurement; an exception becomes a FAILED row and the section goes on."""
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - recorded, and the next item runs
            traceback.print_exc(file=sys.stderr)
            self.report.add(section, name, FAILED, short(exc))
            release_memory(self.device)

    def pairs_root(self) -> Path:
        """A small synthetic dataset (Sintel layout) at the largest training size, generated once."""
        if self._pairs is None:
            from reconet_lib import synthetic

            h, w = max(self.plan.train_sizes)
            h, w = max(h, self.plan.torchrun_size), max(w, self.plan.torchrun_size)
            config = synthetic.SyntheticConfig(height=h, width=w, frames=4, objects=2)
            self._pairs = synthetic.generate_dataset(self.work / "pairs" / "training", scenes=1, config=config)
        return self._pairs


def release_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


@contextlib.contextmanager
def cudnn_autotune(enabled: bool) -> Iterator[None]:
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved


def throughput(fn: Callable[[], object], device: torch.device, seconds: float, warmup: int = 2,
               min_calls: int = 3) -> tuple[float, int]:
    """``(seconds per call, calls)`` of ``fn()`` after ``warmup`` calls, timed for about ``seconds``.

    Calls are queued without a synchronisation in between (as a pipeline runs them); the clock stops after
    the last one has finished on the device, so the mean includes all of them.
    """
    for _ in range(warmup):
        fn()
    synchronize(device)
    calls, start = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < seconds:
        fn()
        calls += 1
    synchronize(device)
    return (time.perf_counter() - start) / calls, calls


# ==============================================================================================================
# Inputs (procedural, seeded, on the CPU)
# ==============================================================================================================


def sample_images(batch: int, height: int, width: int, seed: int) -> torch.Tensor:
    """``(B, 3, H, W)`` float32 in [0, 1]: smooth colour gradients plus 20 % noise (every pixel differs)."""
    generator = torch.Generator().manual_seed(seed)
    ys = torch.linspace(0, 1, height)[:, None].expand(height, width)
    xs = torch.linspace(0, 1, width)[None, :].expand(height, width)
    base = torch.stack([0.5 + 0.4 * torch.sin(9 * xs + 3 * ys), 0.5 + 0.4 * torch.cos(11 * ys), (xs + ys) / 2])
    noise = torch.rand(batch, 3, height, width, generator=generator)
    return (0.8 * base + 0.2 * noise).clamp(0, 1)


def sample_pair(batch: int, height: int, width: int, seed: int) -> dict:
    """A pair batch for ``pair_losses``: the previous frame moved by about (2.3, 0.7) px, brighter, noisier;
    ``flow`` current -> previous with noise, ``valid`` = inside the frame."""
    generator = torch.Generator().manual_seed(seed)
    current = sample_images(batch, height, width, seed)
    previous = torch.roll(current, shifts=(1, 2), dims=(-2, -1)) * 0.9 + 0.05
    previous = (previous + 0.05 * torch.rand(previous.shape, generator=generator)).clamp(0, 1)
    flow = torch.tensor([2.3, 0.7]).view(1, 2, 1, 1) + 0.3 * torch.randn(batch, 2, height, width, generator=generator)
    return {"current": current, "previous": previous, "flow": flow, "valid": inside_mask(flow)}


def seeded_model(preset: str, seed: int = 0) -> ReCoNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ReCoNet.from_preset(preset)


def moving_frames(count: int, height: int, width: int, step: int = 2) -> Iterator[np.ndarray]:
    """``count`` ``(H, W, 3)`` uint8 frames of a textured canvas panning ``step`` px per frame (cheap to draw)."""
    rng = np.random.default_rng(0)
    canvas_w = width + step * count
    ys, xs = np.mgrid[0:height, 0:canvas_w].astype(np.float32)
    blocks = rng.random((height // 8 + 1, canvas_w // 8 + 1, 3), dtype=np.float32)
    texture = np.repeat(np.repeat(blocks, 8, axis=0), 8, axis=1)[:height, :canvas_w]
    smooth = np.stack([0.5 + 0.4 * np.sin(xs / 37), 0.5 + 0.4 * np.cos(ys / 23),
                       0.5 + 0.3 * np.sin((xs + ys) / 61)], axis=-1)
    canvas = ((0.7 * smooth + 0.3 * texture).clip(0, 1) * 255).astype(np.uint8)
    for t in range(count):
        yield np.ascontiguousarray(canvas[:, step * t: step * t + width])


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


# ==============================================================================================================
# Sections
# ==============================================================================================================


def section_hardware(ctx: Context, box: Timebox) -> None:
    report, device = ctx.report, ctx.device
    if ctx.cuda:
        p = torch.cuda.get_device_properties(device)
        report.add("hardware", "device", MEASURED, f"{p.name}, compute capability {p.major}.{p.minor}",
                   gpus=torch.cuda.device_count(), memory_gib=p.total_memory / 2**30, sms=p.multi_processor_count,
                   torch=torch.__version__, cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    else:
        report.add("hardware", "device", MEASURED, "CPU dry run: the figures below mean nothing",
                   threads=torch.get_num_threads(), torch=torch.__version__)
    n = ctx.plan.matmul_n
    for i, (key, dtype) in enumerate(HALF.items()):
        with ctx.item("hardware", f"matmul {n}^3 {key}"):
            a = torch.randn(n, n, device=device).to(dtype)
            b = torch.randn(n, n, device=device).to(dtype)
            with torch.inference_mode():
                seconds, calls = throughput(lambda: a @ b, device, box.share(len(HALF) - i, ctx.plan.time_s))
            ctx.matmul_tflops[key] = 2 * n**3 / seconds / 1e12
            report.add("hardware", f"matmul {n}^3 {key}", MEASURED, tflops=ctx.matmul_tflops[key], calls=calls)
            del a, b


def section_correctness(ctx: Context, box: Timebox) -> None:
    """The correctness tests (``tests/test_cuda.py``, marked ``cuda``) in a child pytest: one row per test.

    The dry run runs them against the CPU (``RECONET_CUDA_TESTS_ON_CPU=1``: tiny preset, tiny sizes)."""
    if importlib.util.find_spec("pytest") is None:  # the GPU machine's image may lack the test extra
        ctx.report.add("correctness", "tests/test_cuda.py", SKIPPED,
                       "missing Python package 'pytest' (pip install pytest, or the test extra: pip install -e .[test])")
        return
    xml = ctx.work / "correctness.xml"
    env = {**child_env(ctx), "RECONET_CUDA_DEVICE": str(ctx.device)}
    if not ctx.cuda:
        env["RECONET_CUDA_TESTS_ON_CPU"] = "1"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda", str(CUDA_TESTS),
               f"--junitxml={xml}", "-o", "junit_family=xunit2"]
    try:
        done = run_child(command, env, box.left() - 5)
    except subprocess.TimeoutExpired as exc:
        ctx.report.add("correctness", "tests/test_cuda.py", FAILED, f"did not finish within {exc.timeout:.0f} s")
        return
    rows = junit_rows(xml) if xml.exists() else []
    if not rows:
        ctx.report.add("correctness", "tests/test_cuda.py", FAILED,
                       f"pytest exited with {done.returncode}: {error_line(done.stdout + done.stderr)}")
    for name, status, note, seconds in rows:
        ctx.report.add("correctness", name, status, note, seconds=seconds)


def junit_rows(junit_xml: Path) -> list[tuple[str, str, str, float]]:
    """``(test name, status, note, seconds)`` of each test case in a pytest JUnit XML report."""
    rows = []
    for case in ElementTree.parse(junit_xml).iter("testcase"):
        outcome = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
        if outcome is None:
            status, note = PASSED, ""
        else:
            status = SKIPPED if outcome.tag == "skipped" else FAILED
            note = (outcome.get("message") or outcome.text or outcome.tag).strip().splitlines()[0][:300]
        rows.append((case.get("name", "?"), status, note, float(case.get("time", 0.0))))
    return rows


def inference_modes(model: ReCoNet, device: torch.device) -> dict:
    """``{name: (precision key, builder)}``: each builder returns a callable ``x -> output``."""
    def autocast_channels_last():
        net = copy.deepcopy(model).to(device, memory_format=torch.channels_last).eval()

        def run(x):
            with torch.autocast(device.type, dtype=torch.float16):
                return net(x.contiguous(memory_format=torch.channels_last))

        return run

    return {
        "optimize_for_inference fp16": ("fp16", lambda: optimize_for_inference(model, device, dtype=torch.float16)),
        "optimize_for_inference bf16": ("bf16", lambda: optimize_for_inference(model, device, dtype=torch.bfloat16)),
        "fp16 autocast channels_last": ("fp16", autocast_channels_last),
    }


def section_inference(ctx: Context, box: Timebox) -> None:
    plan, device, report = ctx.plan, ctx.device, ctx.report
    h, w = plan.infer_size
    model = seeded_model(plan.preset).to(device).eval()
    gflop = count_flops(model, h, w) / 1e9
    modes = inference_modes(model, device)
    variants = [(name, tune) for name in modes for tune in ((False, True) if ctx.cuda else (False,))]
    items = len(variants) + len(plan.infer_batches)
    x = torch.rand(plan.select_batch, 3, h, w, device=device)
    rates = {}
    for i, (name, tune) in enumerate(variants):
        label = f"{name}, cudnn autotune {'on' if tune else 'off'}, batch {plan.select_batch}"
        with ctx.item("inference", label), cudnn_autotune(tune), torch.inference_mode():
            fn = modes[name][1]()
            seconds, _ = throughput(lambda: fn(x), device, box.share(items - i, plan.time_s))
            rates[(name, tune)] = plan.select_batch / seconds
            report.add("inference", label, MEASURED, fps=rates[(name, tune)])
            del fn
    if not rates:
        raise RuntimeError("no inference mode ran")
    ctx.best_mode = max(rates, key=rates.get)
    name, tune = ctx.best_mode
    key = modes[name][0]
    with cudnn_autotune(tune), torch.inference_mode():
        fn = modes[name][1]()
        for j, batch in enumerate(plan.infer_batches):
            label = f"fastest ({name}, autotune {'on' if tune else 'off'}) {w}x{h} batch {batch}"
            with ctx.item("inference", label):
                xb = torch.rand(batch, 3, h, w, device=device)
                seconds, calls = throughput(lambda: fn(xb), device, box.share(len(plan.infer_batches) - j, plan.time_s))
                fps = batch / seconds
                ctx.network_fps[batch] = fps
                tflops = fps * gflop / 1e3
                share = tflops / ctx.matmul_tflops[key] if key in ctx.matmul_tflops else None
                note = f"{gflop:.4g} GFLOP per frame"
                if batch > 1:
                    note += "; target: 2000 frames/s batched on an H100-class GPU"
                report.add("inference", label, MEASURED, note, fps=fps,
                           ms_per_batch=seconds * 1e3, tflops=tflops, share_of_matmul=share, calls=calls)
                del xb
        with ctx.item("inference", "fastest mode at full size vs float32 on the device"):
            x1 = sample_images(1, h, w, seed=5).to(device)
            report.compare("inference", f"fastest mode {w}x{h} vs float32 on {device.type}", fn(x1), model(x1),
                           IMAGE_TOL[key])


def section_video(ctx: Context, box: Timebox) -> None:
    try:
        run_video_check(ctx, mp4=True)
    except ModuleNotFoundError as exc:  # the GPU machine's image may lack the video I/O packages
        ctx.report.add("video", "stylize_video MP4 -> MP4", SKIPPED,
                       f"missing Python package {exc.name!r} (pip install it, or carry its wheel to the GPU machine); "
                       "the run from frames in memory to PNG files below still checks the GPU pipeline")
        release_memory(ctx.device)
        run_video_check(ctx, mp4=False)


def run_video_check(ctx: Context, mp4: bool) -> None:
    """Stylise a generated clip end to end and relate the rate to the network's. ``mp4``: from an H.264 file
    written by write_video (decoding included) to an MP4; else from frames in memory to a folder of PNGs."""
    plan, device, report = ctx.plan, ctx.device, ctx.report
    stylize_video, write_video = video_functions()
    h, w = plan.video_size
    n, batch = plan.video_frames, plan.video_batch
    if mp4:
        start = time.perf_counter()
        source = write_video(ctx.work / "clip.mp4", moving_frames(n, h, w), fps=30)
        report.add("video", f"write_video {w}x{h}, {n} frames (input clip)", MEASURED,
                   fps=n / (time.perf_counter() - start))
        warm = write_video(ctx.work / "warm.mp4", moving_frames(2 * batch, h, w), fps=30)
        outputs, what = (ctx.work / "warm_out.mp4", ctx.work / "out.mp4"), "MP4 -> MP4"
    else:
        source = list(moving_frames(n, h, w))
        warm = source[: 2 * batch]
        outputs, what = (ctx.work / "warm_frames", ctx.work / "out_frames"), "frames in memory -> PNG files"
    model = seeded_model(plan.preset).to(device).eval()
    stylize_video(model, warm, outputs[0], device=device, batch_size=batch, progress=False)
    result = stylize_video(model, source, outputs[1], device=device, batch_size=batch, progress=False)
    if result.frames != n:
        report.add("video", f"stylize_video {what} frame count", FAILED, f"wrote {result.frames} frames of {n}")
    alone = ctx.network_fps.get(batch)
    note = (f"batch {batch}; network alone at batch {batch}: {alone:.4g} frames/s; target: end to end >= 90 % of it"
            if alone else
            f"batch {batch}; network-alone rate unknown (the inference section did not time batch {batch})")
    report.add("video", f"stylize_video {what} {w}x{h}, {n} frames", MEASURED, note, fps=result.end_to_end_fps,
               network_in_pipeline_fps=result.model_fps, share_of_in_pipeline=result.end_to_end_fps / result.model_fps,
               share_of_network_alone=result.end_to_end_fps / alone if alone else None)


def pair_loader(root: Path, size: tuple[int, int], batch: int, device: torch.device):
    """The train command's data pipeline on the synthetic pairs under ``root``, cropped to ``size`` ``(h, w)``:
    ``(loader, worker processes, batches it prefetches)``. An endless stream: no epoch ends while timing."""
    from reconet_lib.train import SampleStream, TrainConfig, build_dataset, default_num_workers, make_step_loader

    config = TrainConfig(data=[{"kind": "synthetic", "path": str(root)}], crop=size, batch_size=batch)
    workers = default_num_workers(device.type == "cuda")
    loader = make_step_loader(SampleStream(build_dataset(config), config.seed), 1, 10**9, batch,
                              num_workers=workers, pin_memory=device.type == "cuda")
    return loader, workers, (loader.prefetch_factor or 0) * workers


def time_training(ctx: Context, size, batch: int, precision: str, seconds: float, vgg, grams, weights) -> dict:
    device = ctx.device
    dtype, use_scaler = TRAIN_PRECISIONS[precision]
    model = seeded_model(ctx.plan.preset).to(device).train()
    runner = PairLoss(model, vgg, grams, weights)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    loader, workers, prefetched = pair_loader(ctx.pairs_root(), size, batch, device)
    batches = iter(loader)
    fixed = to_device(next(batches), device)
    if tuple(fixed["current"].shape[-2:]) != tuple(size):
        raise RuntimeError(f"the loader gave {tuple(fixed['current'].shape[-2:])} crops for crop={size} (h, w)")
    if ctx.cuda:
        torch.cuda.reset_peak_memory_stats(device)
    losses_seen = []

    def step(b):  # the train command's own step: one host sync per step, as its logging does
        losses_seen.append(train_step(runner, optimizer, scaler, b, device=device, autocast_dtype=dtype).terms["total"])

    warmup, calls = ctx.plan.warmup, ctx.plan.min_calls
    excluded, _ = throughput(lambda: step(fixed), device, seconds, warmup=warmup, min_calls=calls)
    # while the loader-excluded steps ran, the loader prefetched batches: drain them before timing it
    included, _ = throughput(lambda: step(to_device(next(batches), device)), device, seconds,
                             warmup=prefetched + warmup, min_calls=calls)
    loader_alone, _ = throughput(lambda: next(batches), torch.device("cpu"), seconds / 2, warmup=prefetched,
                                 min_calls=calls)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if ctx.cuda else None
    finite = sum(math.isfinite(v) for v in losses_seen)
    del batches, loader
    return {"excluded_steps_s": 1 / excluded, "included_steps_s": 1 / included, "included_share": excluded / included,
            "loader_batches_s": 1 / loader_alone, "peak_gib": peak, "workers": workers,
            "finite_losses": f"{finite}/{len(losses_seen)}"}


def section_training(ctx: Context, box: Timebox) -> None:
    plan, device = ctx.plan, ctx.device
    weights = loss_weights(plan)
    vgg = losses.VGGFeatures(None, layers=weights.vgg_layers, device=device, seed=0)
    grams = losses.style_grams(vgg, sample_images(1, 256, 256, seed=4).to(device), list(weights.style_layer_weights))
    ctx.pairs_root()
    configs = list(itertools.product(plan.train_sizes, plan.train_batches, TRAIN_PRECISIONS))
    for i, ((h, w), batch, precision) in enumerate(configs):
        label = f"{w}x{h} batch {batch} {precision}" + (" + GradScaler" if TRAIN_PRECISIONS[precision][1] else "")
        seconds = box.share(3 * (len(configs) - i), plan.train_s)
        if seconds <= 0 and not plan.dry_run:
            ctx.report.add("training", label, SKIPPED, f"the section's time box ({box.seconds:.0f} s) is used up")
            continue
        with ctx.item("training", label):
            figures = time_training(ctx, (h, w), batch, precision, seconds, vgg, grams, weights)
            bad = figures["finite_losses"].split("/")[0] != figures["finite_losses"].split("/")[1]
            note = "non-finite losses" if bad else ("peak_gib needs CUDA" if not ctx.cuda else "")
            ctx.report.add("training", label, FAILED if bad else MEASURED, note, **figures)
        release_memory(device)


def child_env(ctx: Context) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("RECONET_DATA", str(ctx.work / "data"))
    env.setdefault("RECONET_OFFLINE", "1")  # the check never downloads (the GPU machine may have no network)
    if not ctx.cuda:
        env["OMP_NUM_THREADS"] = "1"
    return env


def run_child(command: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    """Run a command in its own process group; on timeout kill that group (compile workers too) and raise."""
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=max(timeout, 1))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


def error_line(text: str) -> str:
    """The line of a child's output that says what went wrong: a command's ``error:`` line, else the last
    ``...Error: ...`` line (torchrun's own report follows the worker's traceback), else the last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for pattern in ("error:", "Error:"):
        found = [line for line in lines if pattern in line and "ChildFailedError" not in line]
        if found:
            return (found[0] if pattern == "error:" else found[-1])[:300]
    return last_line(text)


def style_file(ctx: Context) -> Path:
    """A generated style image (PNG) for the train command: no catalog look-up, no download."""
    from PIL import Image

    path = ctx.work / "style.png"
    if not path.exists():
        image = images.to_uint8(sample_images(1, 64, 64, seed=4)[0])
        Image.fromarray(image).save(path)
    return path


def section_torchrun(ctx: Context, box: Timebox) -> None:
    plan, report = ctx.plan, ctx.report
    # every GPU present; the dry run starts 1 process (tests/test_train.py runs the train command on 2 with Gloo)
    n = torch.cuda.device_count() if ctx.cuda else 1
    backend = ("NCCL" if ctx.cuda else "Gloo") if n > 1 else "no process group"
    out = ctx.work / "torchrun"
    s, steps = plan.torchrun_size, plan.torchrun_steps
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
               "-m", "reconet_lib", "train", "--data", f"synthetic:{ctx.pairs_root()}", "--preset", plan.preset,
               "--crop", f"{s}x{s}", "--batch-size", "2", "--steps", str(steps), "--log-every", "1",
               "--vgg-weights", "random", "--style", str(style_file(ctx)), "--style-size", "64",
               "--device", ctx.device.type,
               "--precision", "auto", "--num-workers", "0" if not ctx.cuda else "2", "--no-progress",
               "--output", str(out)]
    name = f"torchrun --nproc_per_node={n} -m reconet_lib train, {steps} steps ({backend})"
    with ctx.item("torchrun", name):
        start = time.perf_counter()
        timeout = box.left() - (25 if ctx.cuda else 10)  # what the process-group check needs is kept for it
        try:
            done = run_child(command, child_env(ctx), timeout)
        except subprocess.TimeoutExpired:
            report.add("torchrun", name, FAILED, f"did not finish within {timeout:.0f} s")
            done = None
        if done is None:
            pass
        elif done.returncode != 0:
            report.add("torchrun", name, FAILED, f"exit {done.returncode}: {error_line(done.stderr + done.stdout)}")
        else:
            records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line.strip()]
            logged = [r["step"] for r in records]
            finite = all(math.isfinite(r.get("total", math.nan)) for r in records)
            ok = logged == list(range(1, steps + 1)) and finite
            rate = ((records[-1]["step"] - records[0]["step"]) / (records[-1]["elapsed_s"] - records[0]["elapsed_s"])
                    if len(records) > 1 else None)
            report.add("torchrun", name, PASSED if ok else FAILED,
                       "" if ok else f"logged steps {logged}, finite losses: {finite}",
                       seconds=time.perf_counter() - start, steps_s=rate)
    with ctx.item("torchrun", "process group of 1 rank"):
        check_process_group(ctx, box)


def check_process_group(ctx: Context, box: Timebox) -> None:
    """A 1-rank process group in a child process (a hung collective cannot outlast the time box)."""
    backend = "nccl" if ctx.cuda else "gloo"
    name = f"{backend} process group, 1 rank: all_reduce, DDP gradients = plain gradients"
    tol = Tolerance(max_abs=1e-6)
    try:
        result = child_result(ctx, "process-group", {"backend": backend, "device": str(ctx.device)}, box.left() - 5)
    except subprocess.TimeoutExpired as exc:
        ctx.report.add("torchrun", name, FAILED, f"did not finish within {exc.timeout:.0f} s")
        return
    bad = exceeded(result, tol) + ([] if result["all_reduce_ok"] else ["all_reduce over 1 rank changed the values"])
    ctx.report.add("torchrun", name, FAILED if bad else PASSED, tol.describe() + (f"; {', '.join(bad)}" if bad else ""),
                   max_abs=result["max_abs"])


def process_group_child(spec: dict) -> dict:
    """In a fresh process: a 1-rank group; all_reduce must keep the values, DDP must not change the gradients."""
    import torch.distributed as dist

    device = torch.device(spec["device"])
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(spec["backend"], store=dist.HashStore(), rank=0, world_size=1)
    try:
        values = torch.arange(4.0, device=device)
        dist.all_reduce(values)
        model = seeded_model("tiny").to(device).train()
        x = sample_images(2, 32, 48, seed=6).to(device)
        model(x).square().mean().backward()
        plain = torch.cat([p.grad.flatten() for p in model.parameters()])
        model.zero_grad(set_to_none=True)
        ids = [device.index] if device.type == "cuda" else None
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        ddp(x).square().mean().backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters()])
        return {**differences(grads, plain), "all_reduce_ok": torch.equal(values.cpu(), torch.arange(4.0))}
    finally:
        dist.destroy_process_group()


def section_raft(ctx: Context, box: Timebox) -> None:
    from reconet_lib.estimate import load_raft, raft_flow

    plan, report, device = ctx.plan, ctx.report, ctx.device
    try:
        cpu_model = load_raft("large", device="cpu", allow_download=False)
    except UserInputError as exc:  # no weights file here (the check never downloads)
        report.add("raft", "RAFT large flow", SKIPPED, f"no weights: {str(exc).splitlines()[0][:200]}")
        return
    h, w = plan.raft_check_size
    a = sample_images(1, h, w, seed=7)
    b = torch.roll(a, shifts=(1, 3), dims=(-2, -1))
    ref = raft_flow(cpu_model, a, b)
    report.add("raft", f"RAFT large on the CPU {w}x{h}", MEASURED, mean_u=float(ref[:, 0].mean()),
               mean_v=float(ref[:, 1].mean()))
    if not ctx.cuda:
        report.add("raft", "RAFT large on the GPU", SKIPPED, "needs CUDA (dry run)")
        return
    model = load_raft("large", device=device, allow_download=False)
    report.compare("raft", f"RAFT large GPU vs CPU {w}x{h} (pixels)", raft_flow(model, a.to(device), b.to(device)),
                   ref, RAFT_TOL)
    h, w = plan.raft_size
    a, b = sample_images(1, h, w, seed=8).to(device), sample_images(1, h, w, seed=9).to(device)
    seconds, calls = throughput(lambda: raft_flow(model, a, b), device, box.share(1, plan.time_s), warmup=1)
    report.add("raft", f"RAFT large {w}x{h}, 12 updates", MEASURED, pairs_s=1 / seconds, calls=calls)


def section_compile(ctx: Context, box: Timebox) -> None:
    plan, report = ctx.plan, ctx.report
    name = f"optimize_for_inference(compile=True) batch {plan.compile_batch}"
    if not ctx.cuda:
        backend = "eager"  # the dry run checks the child and its plumbing with TorchDynamo's eager backend
    else:
        backend = "inductor"
    dtype = "fp16"
    if ctx.best_mode is not None:
        dtype = "bf16" if "bf16" in ctx.best_mode[0] else "fp16"
    spec = {"preset": plan.preset, "size": plan.infer_size, "batch": plan.compile_batch, "dtype": dtype,
            "device": str(ctx.device), "seconds": plan.time_s, "backend": backend}
    try:
        result = child_result(ctx, "compile", spec, box.left() - 5)
    except subprocess.TimeoutExpired as exc:
        report.add("compile", name, SKIPPED, f"did not finish within {exc.timeout:.0f} s (what was left of the budget)")
        return
    tol = IMAGE_TOL[dtype]
    bad = exceeded(result, tol)
    report.add("compile", f"{name} {backend} vs uncompiled", FAILED if bad else PASSED,
               tol.describe() + (f"; exceeded: {', '.join(bad)}" if bad else ""),
               max_abs=result["max_abs"], mean_abs=result["mean_abs"])
    uncompiled = ctx.network_fps.get(plan.compile_batch)
    report.add("compile", f"{name} {backend}", MEASURED,
               "the dry run's eager backend generates no code: its speed means nothing" if not ctx.cuda else "",
               fps=result["fps"], first_call_s=result["first_call_s"],
               speedup=result["fps"] / uncompiled if uncompiled else None)


def compile_child(spec: dict) -> dict:
    """In a fresh process: compile, time, and compare with the uncompiled path."""
    device = torch.device(spec["device"])
    dtype = HALF[spec["dtype"]]
    model = seeded_model(spec["preset"]).to(device).eval()
    h, w = spec["size"]
    x = torch.rand(spec["batch"], 3, h, w, device=device, generator=torch.Generator(device).manual_seed(0))
    plain = optimize_for_inference(model, device, dtype=dtype)
    if spec["backend"] == "inductor":
        fast = optimize_for_inference(model, device, dtype=dtype, compile=True)
    else:
        fast = torch.compile(plain, backend=spec["backend"])
    with torch.inference_mode():
        start = time.perf_counter()
        out = fast(x)
        synchronize(device)
        first = time.perf_counter() - start
        diffs = differences(out, plain(x))
        seconds, _ = throughput(lambda: fast(x), device, spec["seconds"])
    return {"first_call_s": first, "fps": spec["batch"] / seconds, **diffs}


CHILDREN = {"compile": compile_child, "process-group": process_group_child}


def child_result(ctx: Context, name: str, spec: dict, timeout: float) -> dict:
    """Run ``CHILDREN[name](spec)`` in a fresh process of this script; its result, or RuntimeError with the
    child's error line; ``subprocess.TimeoutExpired`` after ``timeout`` s (the child's process group is killed)."""
    done = run_child([sys.executable, str(Path(__file__).resolve()), "--child", name, json.dumps(spec)],
                     child_env(ctx), timeout)
    if done.returncode != 0:
        raise RuntimeError(f"child {name!r} exited with {done.returncode}: {error_line(done.stderr + done.stdout)}")
    return json.loads(last_line(done.stdout))


# ==============================================================================================================
# Running the sections
# ==============================================================================================================

SECTION_FUNCTIONS = {
    "hardware": section_hardware, "correctness": section_correctness, "inference": section_inference,
    "video": section_video, "training": section_training, "torchrun": section_torchrun, "raft": section_raft,
    "compile": section_compile,
}


def run_sections(ctx: Context, names, functions: dict | None = None, after_each: Callable[[], None] | None = None):
    """Run the sections in order, each in its time box; skip the rest once the global budget is spent."""
    functions = functions or SECTION_FUNCTIONS
    for name in names:
        left = ctx.budget.left()
        if left <= ctx.plan.min_section_s:
            ctx.report.add(name, "(section)", SKIPPED,
                           f"global budget of {ctx.budget.seconds:.0f} s used up ({max(left, 0):.0f} s left)")
            continue
        box = Timebox(min(ctx.plan.section_s.get(name, left), left))
        try:
            functions[name](ctx, box)
        except Exception as exc:  # noqa: BLE001 - recorded; the next section runs
            traceback.print_exc(file=sys.stderr)
            ctx.report.add(name, "(section)", FAILED, short(exc))
        release_memory(ctx.device)
        if after_each is not None:
            after_each()


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, a few seconds, no CUDA")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON (atomically)")
    parser.add_argument("--budget", type=float, default=420.0,
                        help="seconds after which the remaining sections are skipped (default 420)")
    parser.add_argument("--device", default="cuda", help="the CUDA device to check (default cuda)")
    parser.add_argument("--only", metavar="SECTIONS", help=f"comma-separated subset of: {', '.join(SECTIONS)}")
    parser.add_argument("--child", nargs=2, metavar=("NAME", "JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.only:
        unknown = sorted(set(args.only.split(",")) - set(SECTIONS))
        if unknown:
            parser.error(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(CHILDREN[args.child[0]](json.loads(args.child[1]))))
        return 0
    if args.dry_run:
        device, plan = torch.device("cpu"), dry_plan()
        torch.set_num_threads(1)  # tiny sizes gain nothing from threads, and spin-waiting threads crawl on a busy CPU
    else:
        from reconet_lib.precision import parse_device

        try:
            device = parse_device(args.device)
        except UserInputError as exc:
            print(f"gpu_check: {exc}. Without CUDA, run --dry-run (CPU, tiny sizes)", file=sys.stderr)
            return 2
        if device.type != "cuda":
            print("gpu_check: checks CUDA; use --dry-run on a machine without CUDA", file=sys.stderr)
            return 2
        torch.cuda.set_device(device)
        plan = gpu_plan()
    names = [s for s in SECTIONS if not args.only or s in args.only.split(",")]
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    meta = {"device": str(device), "device_name": device_name,
            "dry_run": plan.dry_run, "budget_s": args.budget, "sections": names, "torch": torch.__version__,
            "command": " ".join(sys.argv), "plan": asdict(plan)}
    report = Report()
    with tempfile.TemporaryDirectory(prefix="reconet-gpu-check-") as tmp:
        ctx = Context(plan, device, report, Timebox(args.budget), Path(tmp))

        def write() -> None:
            if args.json:
                atomic_write_text(args.json, json.dumps(report.as_dict(meta), indent=1))

        run_sections(ctx, names, after_each=write)
    print(report.table())
    failed = report.failed()
    if failed:
        print(f"FAILED: {', '.join(f'{r.section}/{r.name}' for r in failed)}")
    return report.exit_status()


if __name__ == "__main__":
    sys.exit(main())
