"""Devices and precisions: the one place that decides where and in which number format the networks run.

Every part of the library (``inference.optimize_for_inference``, video stylisation, training with
``precision="auto"``), the benchmarks and the notebooks ask this module; nothing else parses a device name or
guesses whether a number format is fast.

Why a policy is needed. Half precision is not fast everywhere:

* CUDA GPUs run float16 on tensor cores on every card this project targets (compute capability 7.0 and newer:
  V100, T4, A100, H100, ...); bfloat16 arithmetic is native from compute capability 8.0 (A100 and newer).
* CPUs multiply bfloat16 natively only with AVX512-BF16 (e.g. AMD Zen 4, Intel Cooper Lake) or AMX (Intel
  Sapphire Rapids and newer). Everywhere else (AVX2-only CPUs such as AMD Zen 3 and most laptops, or plain
  AVX-512 without the BF16 extension) oneDNN emulates bfloat16 by converting every value, and a bfloat16
  convolution is 5 to 40 times *slower* than float32 (measured 5x to 37x). There, float32 is the fast path.

The CPU decision reads two facts, once per process, and never a clock (a decision that depended on the load
of the moment would change from run to run):

1. the CPU's flags (AVX512-BF16 or AMX tiles), as the operating system lists them (``/proc/cpuinfo``), or
   from ``cpuid`` through torch where it lists none;
2. whether oneDNN, as configured in this process, will use them (``ONEDNN_MAX_CPU_ISA=AVX2`` or an old
   oneDNN turn them off; only oneDNN knows, and torch reports it through a private helper).

No public torch API answers either question off Linux or the second one at all: the private helpers used are
listed in :data:`PRIVATE_TORCH_HELPERS`, the one place the library calls a private torch name.

Both must hold. :func:`probe_bf16_ratio` measures the difference on the spot (the benchmarks print it; the test
suite checks that it sees the emulated case as slower), but it does not decide: on a shared machine one timing
can be off by a factor of ten.

``RECONET_CPU_BF16=1`` or ``=0`` overrides the decision (for experiments; the notebooks never set it).

The CPU's flags, the AVX2-only settings and that override are read in :mod:`reconet_lib.cpu_features`, which
imports no torch and applies the same rule to runtimes with their own kernels (the OpenVINO backend,
:func:`reconet_lib.cpu_features.runtime_precision`).
"""
from __future__ import annotations

import contextlib
import functools
import os
import platform
import time
from dataclasses import dataclass

import torch

from .cpu_features import AVX2_ONLY_ENV, CPU_BF16_ENV, cpu_flags, forced_cpu_bf16  # noqa: F401 - re-exported
from .errors import UserInputError

#: Training precisions a user can ask for.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

_CUDA_FP16_CAPABILITY = (7, 0)
_CUDA_BF16_CAPABILITY = (8, 0)


# ----------------------------------------------------------------------------------------------------------------
# Devices
# ----------------------------------------------------------------------------------------------------------------


def parse_device(spec: str | torch.device | None = None) -> torch.device:
    """The device a user asked for, checked against this machine.

    Args:
        spec: ``None`` or ``"auto"`` (CUDA when available, else the CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``,
            or a ``torch.device``. Under ``torchrun`` (``WORLD_SIZE`` > 1) a bare ``"cuda"`` means
            ``cuda:$LOCAL_RANK``.
    Returns:
        a ``torch.device`` with an explicit index for CUDA.
    Raises:
        UserInputError: the name is not a device, CUDA is asked for but absent, or the index does not exist.
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "auto")):
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(spec.strip() if isinstance(spec, str) else spec)
        except (RuntimeError, ValueError, TypeError):
            raise UserInputError(f"device {spec!r} is not a device name; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type != "cuda":
        raise UserInputError(f"device {str(device)!r} is not supported; use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise UserInputError(f"device {str(device)!r}: CUDA is not available on this machine; use cpu")
    index = device.index
    if index is None:
        distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        index = int(os.environ.get("LOCAL_RANK", "0")) if distributed else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise UserInputError(f"device cuda:{index} does not exist; this machine has {torch.cuda.device_count()} GPU(s)")
    return torch.device("cuda", index)


# ----------------------------------------------------------------------------------------------------------------
# The CPU: is bfloat16 native here?
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuPrecisionReport:
    """What the CPU bfloat16 decision was based on.

    Attributes:
        capability: the SIMD level torch's own kernels use (``torch.backends.cpu.get_cpu_capability()``).
        hardware_bf16: the CPU reports AVX512-BF16 or AMX tiles.
        onednn_bf16: oneDNN, as configured in this process, will run bfloat16 (False under
            ``ONEDNN_MAX_CPU_ISA=AVX2`` and on CPUs without AVX-512).
        native: the decision: bfloat16 is the faster format on this CPU.
        reason: one line a notebook can print.
    """

    capability: str
    hardware_bf16: bool
    onednn_bf16: bool
    native: bool
    reason: str


#: The private torch helpers this module calls, each with the reason no public API does the job; the one place
#: the library touches a private torch name (tests/test_precision.py fails when an upgrade removes one).
PRIVATE_TORCH_HELPERS = {
    # the CPU's AVX512-BF16 / AMX flags from cpuid, where the operating system does not list them (not Linux)
    ("torch.cpu", "_is_avx512_bf16_supported"): "cpuid flags off Linux (no public torch API)",
    ("torch.cpu", "_is_amx_tile_supported"): "cpuid flags off Linux (no public torch API)",
    # whether oneDNN, as capped by ONEDNN_MAX_CPU_ISA in this process, runs bfloat16: only oneDNN knows its own cap
    ("torch.ops.mkldnn", "_is_mkldnn_bf16_supported"): "oneDNN's own bfloat16 support (no public torch API)",
}


def _private_torch_check(owner: str, name: str) -> bool:
    """Call one of :data:`PRIVATE_TORCH_HELPERS`; False when this torch lacks it or it fails."""
    if (owner, name) not in PRIVATE_TORCH_HELPERS:
        raise KeyError(f"{owner}.{name} is not a listed private torch helper")
    namespace = {"torch.cpu": torch.cpu, "torch.ops.mkldnn": torch.ops.mkldnn}[owner]
    check = getattr(namespace, name, None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:
        return False


def _hardware_bf16() -> bool:
    """The CPU has AVX512-BF16 or AMX tiles (the OS's flags; torch's cpuid helpers where the OS lists none)."""
    flags = cpu_flags()
    if flags is not None:
        return "avx512_bf16" in flags or "amx_tile" in flags
    return any(_private_torch_check("torch.cpu", name) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def _onednn_bf16() -> bool:
    return _private_torch_check("torch.ops.mkldnn", "_is_mkldnn_bf16_supported")


def _fastest_conv_call(dtype: torch.dtype, budget_s: float, min_calls: int = 5) -> float:
    """Seconds of the fastest of several calls of a 3x3 convolution (96 channels, 64x64, channels-last)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(1, 96, 64, 64, generator=generator).to(dtype).contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(96, 96, 3, padding=1).to(dtype).to(memory_format=torch.channels_last)
    best, calls, start = float("inf"), 0, time.perf_counter()
    with torch.inference_mode():
        conv(x)  # warm-up: oneDNN picks and caches its kernel
        while calls < min_calls or time.perf_counter() - start < budget_s:
            t0 = time.perf_counter()
            conv(x)
            best = min(best, time.perf_counter() - t0)
            calls += 1
    return best


def probe_bf16_ratio(budget_s: float = 0.1) -> float:
    """Measured time ratio bfloat16 / float32 of a ReCoNet-sized 3x3 convolution on this CPU, now.

    Below 1: bfloat16 is faster here. The fastest of several calls counts (load from other programs only ever
    adds time). About ``2 * budget_s`` seconds, more where bfloat16 is emulated. A diagnostic, not the decision.
    """
    return _fastest_conv_call(torch.bfloat16, budget_s) / _fastest_conv_call(torch.float32, budget_s)


@functools.lru_cache(maxsize=1)
def cpu_precision_report() -> CpuPrecisionReport:
    """The CPU bfloat16 decision with its evidence, computed once per process (see the module docstring)."""
    capability = torch.backends.cpu.get_cpu_capability()
    hardware, onednn = _hardware_bf16(), _onednn_bf16()
    forced = forced_cpu_bf16()
    if forced is not None:
        return CpuPrecisionReport(capability, hardware, onednn, forced,
                                  f"{CPU_BF16_ENV}={int(forced)}: {'bfloat16' if forced else 'float32'} by request")
    if not hardware:
        return CpuPrecisionReport(capability, hardware, onednn, False,
                                  f"float32: this CPU ({capability}) has no native bfloat16 (no AVX512-BF16/AMX), "
                                  "so bfloat16 would be emulated and many times slower")
    if not onednn:
        return CpuPrecisionReport(capability, hardware, onednn, False,
                                  "float32: oneDNN is limited below the CPU's bfloat16 instructions in this process "
                                  "(e.g. ONEDNN_MAX_CPU_ISA), so bfloat16 would be emulated")
    return CpuPrecisionReport(capability, hardware, onednn, True,
                              f"bfloat16: this CPU ({capability}) multiplies bfloat16 natively (AVX512-BF16/AMX)")


def cpu_bf16_native() -> bool:
    """Whether bfloat16 is the faster number format on this CPU (cached; see :func:`cpu_precision_report`)."""
    return cpu_precision_report().native


# ----------------------------------------------------------------------------------------------------------------
# The decisions
# ----------------------------------------------------------------------------------------------------------------


def _cuda_capability(device: torch.device) -> tuple[int, int]:
    return tuple(torch.cuda.get_device_capability(device))


def inference_dtype(device: str | torch.device) -> torch.dtype:
    """The compute dtype for running a trained network on ``device``.

    CUDA: float16 on compute capability 7.0 and newer (tensor cores; better precision than bfloat16), float32
    on older GPUs. CPU: bfloat16 where it is native and measured faster (:func:`cpu_bf16_native`), else float32.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.float16 if _cuda_capability(device) >= _CUDA_FP16_CAPABILITY else torch.float32
    if device.type == "cpu":
        return torch.bfloat16 if cpu_bf16_native() else torch.float32
    return torch.float32


def inference_autocast(device: str | torch.device, half: bool | None = None) -> torch.dtype | None:
    """The autocast dtype for inference, or None for plain float32.

    ``half=None`` follows :func:`inference_dtype`; ``half=False`` forces float32; ``half=True`` asks for half
    precision: float16 on CUDA, bfloat16 on a CPU (even one that only emulates it: slow, but it was asked for).
    """
    device = torch.device(device)
    if half is False:
        return None
    if half is None:
        dtype = inference_dtype(device)
        return None if dtype == torch.float32 else dtype
    return torch.float16 if device.type == "cuda" else torch.bfloat16


#: Narrowest layer (``min(C_in, C_out)``) for which Winograd pays: measured under AVX2, a 3x3 convolution on a
#: 90x160 grid took (direct / Winograd, ms) 1.1 / 1.4 at 32 channels, 2.6 / 2.6 at 48, 4.6 / 4.4 at 64,
#: 18.2 / 11.1 at 128; the tutorial's tiny model (32 channels) is slower with it (33 vs 30 ms per frame).
WINOGRAD_MIN_CHANNELS = 64

# oneDNN ISA names below AVX-512 (ONEDNN_MAX_CPU_ISA / its older name DNNL_MAX_CPU_ISA)
_BELOW_AVX512 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2")


@functools.lru_cache(maxsize=1)
def cpu_has_avx512() -> bool:
    """Whether the CPU itself has AVX-512 (the ``avx512f`` flag), whatever this process's settings allow.

    Read from the operating system's CPU flags (:func:`cpu_flags`, Linux). Elsewhere, torch's public capability
    string (``torch.backends.cpu.get_cpu_capability()``) stands in: it reports the CPU unless
    ``ATEN_CPU_CAPABILITY`` lowers it.
    """
    flags = cpu_flags()
    if flags is not None:
        return "avx512f" in flags
    return torch.backends.cpu.get_cpu_capability().upper().startswith("AVX512")


def onednn_avx512() -> bool:
    """Whether oneDNN's float32 convolutions may use AVX-512 here: the CPU has it and no cap forbids it."""
    if not cpu_has_avx512():
        return False
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or ""
    return cap.strip().upper() not in _BELOW_AVX512


def inference_winograd(device: str | torch.device, dtype: torch.dtype, channels: int | None = None) -> bool:
    """Whether :func:`reconet_lib.inference.optimize_for_inference` computes a 3x3 convolution by Winograd.

    Yes on an x86 CPU in float32 (or float64) whose direct convolutions (oneDNN) run without AVX-512 (AVX2 CPUs
    such as AMD Zen 3 and most laptops, or any CPU under ``ONEDNN_MAX_CPU_ISA=AVX2``), for layers at least
    :data:`WINOGRAD_MIN_CHANNELS` wide (``channels = min(C_in, C_out)``; None: do not check the width): there
    the convolutions are bound by multiplications and ``F(4x4, 3x3)`` does a quarter of them (measured under
    AVX2 on the paper model at 640x360: 648 -> 409 ms per frame). With AVX-512, oneDNN's direct convolutions are
    fast enough that it gains nothing (355 vs 363 ms), so the exact direct form is kept. No in half precision
    (its rounding error would show), no on CUDA (cuDNN picks Winograd or FFT kernels by itself), and no on ARM
    CPUs (not measured there; the direct form is the safe default).
    """
    if torch.device(device).type != "cpu" or dtype not in (torch.float32, torch.float64):
        return False
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    if channels is not None and channels < WINOGRAD_MIN_CHANNELS:
        return False
    return not onednn_avx512()


def inference_streams(device: str | torch.device) -> tuple[int, int]:
    """``(streams, threads per stream)``: how many frames of a batch run at once on ``device``, and how.

    CPU: one stream per intra-op thread (``torch.get_num_threads()``, by default one per core), each single
    threaded. A frame of ReCoNet is ~100 operations, each a parallel section whose threads meet at its end; when
    another program holds a core, every meeting waits for a thread that is not running, and one frame on two
    threads took 2.7x as long per frame as two frames on one thread each (measured on a 2-core AMD EPYC shared
    with other programs, paper model at 640x360, bf16; see ``docs/results.md``). Single-threaded streams never
    wait for each other, and on a quiet machine they also save what the threads lose at those meetings.
    CUDA: one stream (the GPU is fed by batching).
    """
    device = torch.device(device)
    if device.type != "cpu":
        return 1, 1
    return max(1, torch.get_num_threads()), 1


def training_precision(device: str | torch.device, requested: str = "auto") -> tuple[torch.dtype | None, bool]:
    """``(autocast dtype or None for float32, whether a gradient scaler is needed)`` for training on ``device``.

    ``"auto"``: on CUDA, bfloat16 from compute capability 8.0, float16 with a gradient scaler on older GPUs; on
    the CPU, float32 (bfloat16 autocast would change the trained weights from one CPU to the next, and is slower
    than float32 on CPUs without native bfloat16; ask for ``"bf16"`` explicitly where :func:`cpu_bf16_native`).
    ``"fp16"`` needs CUDA. ``"bf16"`` on CUDA needs compute capability 8.0.
    """
    device = torch.device(device)
    if requested not in PRECISIONS:
        raise UserInputError(f"precision {requested!r} is not one of {', '.join(PRECISIONS)}")
    if requested == "auto":
        if device.type != "cuda":
            return None, False
        requested = "bf16" if _cuda_capability(device) >= _CUDA_BF16_CAPABILITY else "fp16"
    if requested == "fp32":
        return None, False
    if requested == "bf16":
        if device.type == "cuda" and _cuda_capability(device) < _CUDA_BF16_CAPABILITY:
            raise UserInputError("precision 'bf16' needs a GPU of compute capability 8.0 or newer; use fp16 or auto")
        return torch.bfloat16, False
    if device.type != "cuda":
        raise UserInputError("precision 'fp16' needs a CUDA GPU; on the CPU use 'fp32' or 'bf16'")
    return torch.float16, True


def precision_name(dtype: torch.dtype | None, scaler: bool = False) -> str:
    """Short name of an autocast choice: ``fp32``, ``bf16``, ``fp16`` or ``fp16 + gradient scaler``."""
    if dtype is None or dtype == torch.float32:
        return "fp32"
    if dtype == torch.bfloat16:
        return "bf16"
    return "fp16 + gradient scaler" if scaler else "fp16"


def autocast(device: str | torch.device, dtype: torch.dtype | None):
    """The context a policy's choice runs under: ``torch.autocast`` on ``device`` in ``dtype`` (what
    :func:`inference_autocast` or :func:`training_precision` returned), or none at all when ``dtype`` is None
    (float32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def synchronize(device: str | torch.device) -> None:
    """Wait until ``device`` has finished its queued work (CUDA); nothing to wait for on the CPU. For timings."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def describe(device: str | torch.device) -> str:
    """One line for a notebook: which inference precision ``device`` gets and why."""
    device = torch.device(device)
    if device.type == "cuda":
        major, minor = _cuda_capability(device)
        name = precision_name(inference_dtype(device))
        return f"{torch.cuda.get_device_name(device)} (compute capability {major}.{minor}): inference in {name}"
    return cpu_precision_report().reason
