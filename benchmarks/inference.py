"""ReCoNet inference speed: frames per second per precision, memory layout and compilation, against the hardware.

    python benchmarks/inference.py [--device cpu|cuda] [--preset paper] [--quick] [--threads N] [--no-compile]

First the script times a large matrix multiply in float32 and in half precision (bfloat16 on the CPU; float16 and
bfloat16 on CUDA): that is the rate the machine can reach at best. Then it times the network at 640x360 and
320x180, batch 1 and a larger batch, in several modes, and prints frames/s, achieved GFLOP/s (network FLOPs from
``count_flops``: 2 x multiply-adds of the convolutions) and the percentage of the matmul rate of the same precision.

Modes: plain float32; channels_last; half-precision autocast; ``optimize_for_inference`` (half-precision weights,
channels_last, the last layer rewritten as a space-to-depth convolution on the CPU, Winograd convolutions in float32
on a CPU below AVX-512); the same under
``torch.compile`` (fuses padding, instance normalisation and ReLU; every new input shape compiles again, so on the
CPU it runs at batch 1 only, and with ``--quick`` at 640x360 only). A mode that fails prints ``n/a: reason``.

On a shared CPU, other programs take turns on the cores and wall-clock numbers understate the machine. So the
CPU table adds "busy" (process CPU time / (wall time x threads): the share of the cores we got), "f/s idle"
(frames per CPU-second x threads: an estimate for a quiet machine) and computes "% peak" from CPU time for both
the network and the matmul, which keeps that ratio meaningful under load. OpenMP threads that spin while waiting
for a descheduled sibling count as busy, so under heavy load these estimates are pessimistic. Nothing here asserts
a target.
"""
from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import torch

from reconet_lib import precision
from reconet_lib.errors import UserInputError
from reconet_lib.cost import count_flops, count_parameters
from reconet_lib.inference import optimize_for_inference
from reconet_lib.network import ReCoNet

SIZES = ((640, 360), (320, 180))  # (width, height)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Rate:
    wall: float  # GFLOP/s by the wall clock
    cores: float | None  # CPU only: GFLOP/s per process CPU time x threads (what the cores did while we had them)


def matmul_rate(device: torch.device, dtype: torch.dtype, n: int, repeats: int) -> Rate:
    """GFLOP/s of an ``n x n`` by ``n x n`` matrix multiply (2 n^3 FLOPs), best of ``repeats`` timings."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    best_wall = best_cpu = float("inf")
    with torch.inference_mode():
        a @ b
        synchronize(device)
        for _ in range(repeats):
            cpu, start = time.process_time(), time.perf_counter()
            a @ b
            synchronize(device)
            best_wall = min(best_wall, time.perf_counter() - start)
            best_cpu = min(best_cpu, (time.process_time() - cpu) / torch.get_num_threads())
    flops = 2 * n**3 / 1e9
    return Rate(flops / best_wall, flops / best_cpu if device.type == "cpu" else None)


@dataclass
class Timing:
    seconds: float  # median wall time of one call (one batch)
    mean_seconds: float  # mean wall time of one call
    core_seconds: float | None  # CPU only: mean process CPU time of one call / threads
    first_call: float  # wall time of the first call (includes compilation)

    @property
    def busy(self) -> float | None:
        """Share of the cores this process got while timing (CPU only); 1 = it had them all."""
        return None if self.core_seconds is None else self.core_seconds / self.mean_seconds


def time_calls(fn: Callable, x: torch.Tensor, device: torch.device, warmup: int, min_time: float,
               min_iters: int) -> Timing:
    """Median wall time of ``fn(x)`` after ``warmup`` calls, repeated for at least ``min_time`` s / ``min_iters``."""
    with torch.inference_mode():
        start = time.perf_counter()
        fn(x)
        synchronize(device)
        first = time.perf_counter() - start
        for _ in range(max(warmup - 1, 0)):
            fn(x)
        synchronize(device)
        times: list[float] = []
        cpu_start = time.process_time()
        while len(times) < min_iters or sum(times) < min_time:
            start = time.perf_counter()
            fn(x)
            synchronize(device)
            times.append(time.perf_counter() - start)
        cpu = (time.process_time() - cpu_start) / len(times) / torch.get_num_threads()
    return Timing(statistics.median(times), statistics.mean(times), cpu if device.type == "cpu" else None, first)


@dataclass
class Mode:
    name: str
    precision: str  # key into the matmul rates: fp32, bf16, fp16
    build: Callable[[ReCoNet], Callable[[torch.Tensor], torch.Tensor]]
    compiled: bool = False


def autocast_call(model: ReCoNet, device: torch.device, dtype: torch.dtype, channels_last: bool):
    def run(x: torch.Tensor) -> torch.Tensor:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=dtype):
            return model(x)

    return run


def modes_for(device: torch.device, compile_modes: bool, half_modes: bool = True) -> list[Mode]:
    """The modes to time; ``half_modes=False`` keeps only float32 ones (a CPU without native bfloat16)."""
    cl = torch.channels_last

    def plain(channels_last: bool):
        def build(model):
            m = model.to(memory_format=cl) if channels_last else model.to(memory_format=torch.contiguous_format)
            return (lambda x: m(x.contiguous(memory_format=cl))) if channels_last else m

        return build

    def autocast(dtype, channels_last):
        def build(model):
            m = model.to(memory_format=cl if channels_last else torch.contiguous_format)
            return autocast_call(m, device, dtype, channels_last)

        return build

    def optimized(dtype, compile_it=False):
        return lambda model: optimize_for_inference(model, device, dtype=dtype, compile=compile_it)

    half, half_name = (torch.float16, "fp16") if device.type == "cuda" else (torch.bfloat16, "bf16")
    modes = [
        Mode("fp32", "fp32", plain(False)),
        Mode("fp32 channels_last", "fp32", plain(True)),
        Mode("optimize_for_inference fp32", "fp32", optimized(torch.float32)),
    ]
    if not half_modes:
        if compile_modes:
            modes.append(Mode("optimize_for_inference fp32 + compile", "fp32", optimized(torch.float32, True), True))
        return modes
    modes += [
        Mode(f"{half_name} autocast", half_name, autocast(half, False)),
        Mode(f"{half_name} autocast channels_last", half_name, autocast(half, True)),
    ]
    if device.type == "cuda":
        modes.append(Mode("bf16 autocast channels_last", "bf16", autocast(torch.bfloat16, True)))
    modes.append(Mode(f"optimize_for_inference {half_name}", half_name, optimized(half)))
    if device.type == "cuda":
        modes.append(Mode("optimize_for_inference bf16", "bf16", optimized(torch.bfloat16)))
    if compile_modes:
        modes.append(Mode(f"optimize_for_inference {half_name} + compile", half_name, optimized(half, True), True))
    return modes


def short_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:100] if text else ''}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda if available")
    parser.add_argument("--preset", default="paper", help="network preset: paper, demo or tiny")
    parser.add_argument("--quick", action="store_true",
                        help="fewer iterations; on the CPU batch 1 only and the compiled mode at 640x360 only")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    parser.add_argument("--batch", type=int, default=None, help="the larger batch size (default 8 on CUDA, 4 on CPU)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile mode")
    parser.add_argument("--all-precisions", action="store_true",
                        help="on a CPU without native bfloat16, time the (emulated, slow) bfloat16 modes anyway")
    args = parser.parse_args(argv)

    try:
        device = precision.parse_device(args.device)
    except UserInputError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*CUDA_HOME.*")
    torch.manual_seed(0)
    model = ReCoNet.from_preset(args.preset).to(device).eval()
    gpu = device.type == "cuda"
    big_batch = args.batch or (8 if gpu else 4)
    batches = (1,) if args.quick and not gpu else (1, big_batch)
    warmup = 10 if gpu else 1
    if gpu:
        min_time, min_iters = (0.5, 10) if args.quick else (1.0, 20)
    else:
        min_time, min_iters = (0.5, 2) if args.quick else (1.5, 3)

    name = torch.cuda.get_device_name(device) if gpu else f"CPU, {torch.get_num_threads()} threads ({os.cpu_count()} cores)"
    print(f"# ReCoNet inference benchmark: preset {args.preset} ({count_parameters(model):,} parameters), "
          f"{name}, torch {torch.__version__}{', quick' if args.quick else ''}")
    for w, h in SIZES:
        print(f"#   {w}x{h}: {count_flops(model, h, w) / 1e9:.1f} GFLOP per frame")

    # 1. what the hardware can do
    n = 8192 if gpu else (2048 if args.quick else 4096)
    repeats = 10 if gpu else 3
    half_modes = gpu or args.all_precisions or precision.cpu_bf16_native()
    if not gpu:
        print(f"# precision policy: {precision.describe(device)}"
              + ("" if half_modes else "; bfloat16 modes skipped (--all-precisions times them anyway)"))
    precisions = {"fp32": torch.float32, "bf16": torch.bfloat16} if half_modes else {"fp32": torch.float32}
    if gpu:
        precisions["fp16"] = torch.float16
    rates: dict[str, Rate] = {}
    for key, dtype in precisions.items():
        rates[key] = rate = matmul_rate(device, dtype, n, repeats)
        cores = f" (per CPU time: {rate.cores:,.0f})" if rate.cores is not None else ""
        print(f"# matmul {n}x{n} {key}: {rate.wall:,.0f} GFLOP/s{cores}")
    if gpu and torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32:
        print("# (float32 convolutions use TF32 in cuDNN by default, the fp32 matmul above does not: "
              "their '% peak' can exceed 100)")
    if not gpu:
        print("# (float16 is not timed on the CPU: without AVX512-FP16 it is emulated and slow)")
        print("# GFLOP/s count the direct convolutions' FLOPs: Winograd (optimize_for_inference fp32 below AVX-512)")
        print("# does fewer multiplications, so its '% peak' can exceed 100")
        print("# busy: share of the cores we got; 'f/s idle' and '% peak' use process CPU time, i.e. what the")
        print("# cores did while we had them (an estimate of a quiet machine; OpenMP spin-waits make it pessimistic)")

    # 2. the network
    header = f"{'mode':42s} {'size':>8s} {'batch':>5s} {'ms/batch':>9s} {'frames/s':>9s} {'GFLOP/s':>8s}"
    header += f" {'% peak':>7s}" if gpu else f" {'busy':>5s} {'f/s idle':>8s} {'% peak':>7s}"
    print()
    print(header)
    print("-" * len(header))
    best: dict[tuple, tuple[float, str]] = {}
    for mode in modes_for(device, compile_modes=not args.no_compile, half_modes=half_modes):
        try:
            fn = mode.build(model)
        except Exception as exc:  # noqa: BLE001 - report and go on
            print(f"{mode.name:42s} n/a: {short_reason(exc)}")
            continue
        for (w, h), batch in itertools.product(SIZES, batches):
            # each new input shape compiles again (about a minute on a small CPU): compiled modes run fewer shapes
            if mode.compiled and not gpu and (batch != 1 or (args.quick and (w, h) != SIZES[0])):
                continue
            x = torch.rand(batch, 3, h, w, device=device)
            try:
                timing = time_calls(fn, x, device, warmup, min_time, min_iters)
            except Exception as exc:  # noqa: BLE001 - compile needs a compiler, some dtypes need hardware
                print(f"{mode.name:42s} {w:>4d}x{h:<3d} {batch:5d} n/a: {short_reason(exc)}")
                break
            fps = batch / timing.seconds
            flops = count_flops(model, h, w) * batch / 1e9
            line = (f"{mode.name:42s} {w:>4d}x{h:<3d} {batch:5d} {timing.seconds * 1e3:9.1f} {fps:9.2f} "
                    f"{flops / timing.seconds:8.0f}")
            rate = rates[mode.precision]
            if timing.core_seconds is None:
                line += f" {100 * flops / timing.seconds / rate.wall:6.0f}%"
            else:
                line += (f" {100 * timing.busy:4.0f}% {batch / timing.core_seconds:8.2f}"
                         f" {100 * flops / timing.core_seconds / rate.cores:6.0f}%")
            if mode.compiled:
                line += f"  (first call {timing.first_call:.0f} s)"
            print(line, flush=True)
            if fps > best.get((w, h, batch), (0.0, ""))[0]:
                best[(w, h, batch)] = (fps, mode.name)
        del fn

    print()
    for (w, h, batch), (fps, mode_name) in best.items():
        print(f"# fastest at {w}x{h}, batch {batch}: {fps:.2f} frames/s ({mode_name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
