"""What the CPU offers, read without importing torch, and the precision policy for runtimes that bring their own
kernels (OpenVINO).

:mod:`reconet_lib.precision` decides for PyTorch and imports torch; this module holds the facts it shares with
the torch-free inference backend (:mod:`reconet_lib.openvino_backend`), so that both follow one rule:

* the CPU's flags as the operating system lists them (:func:`cpu_flags`);
* the AVX2-only settings (:data:`AVX2_ONLY_ENV`), which make a process behave like an AVX2-only CPU;
* the ``RECONET_CPU_BF16`` override (:data:`CPU_BF16_ENV`).

The rule (:func:`runtime_precision`): bfloat16 where the CPU multiplies it natively (AVX512-BF16 or AMX tiles)
and no AVX2-only setting is in force, float32 everywhere else (emulated bfloat16 is 5 to 40 times slower, see
:mod:`reconet_lib.precision`); ``RECONET_CPU_BF16=1/0`` forces it either way.
"""
from __future__ import annotations

import functools
import os
from typing import Callable

from .errors import UserInputError

#: Environment variable that forces the CPU bfloat16 decision: ``1`` (use bf16) or ``0`` (use fp32).
CPU_BF16_ENV = "RECONET_CPU_BF16"
#: Settings that make a process behave like an AVX2-only CPU (AMD Zen 3, most laptops) on any x86 machine: torch's
#: own kernels at AVX2, oneDNN's convolutions capped at AVX2 (so bfloat16 is emulated, as there), and MKL's matrix
#: multiply at AVX2. ``bash run.sh test`` runs the notebooks under them so that CI exercises the slow-bf16 path
#: even on a machine with native bfloat16. Each must be set before torch is imported (a new process).
AVX2_ONLY_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags as the operating system lists them (``/proc/cpuinfo`` on Linux); None elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return None


def forced_cpu_bf16() -> bool | None:
    """``RECONET_CPU_BF16``: True (``1``), False (``0``) or None (unset).

    Raises:
        UserInputError: any other value.
    """
    forced = os.environ.get(CPU_BF16_ENV, "").strip().lower()
    if forced in ("0", "1"):
        return forced == "1"
    if forced:
        raise UserInputError(f"{CPU_BF16_ENV}={forced!r} is not understood; use 1 (bfloat16), 0 (float32) or unset it")
    return None


def avx2_only_settings() -> list[str]:
    """The AVX2-only settings of :data:`AVX2_ONLY_ENV` in force in this process, as ``NAME=value`` (case-blind)."""
    return [f"{name}={os.environ[name]}" for name, value in AVX2_ONLY_ENV.items()
            if os.environ.get(name, "").strip().lower() == value.lower()]


def runtime_precision(runtime_has_bf16: Callable[[], bool]) -> tuple[str, str]:
    """``("bf16" or "f32", reason)``: the inference precision for a runtime that picks its own CPU kernels.

    Args:
        runtime_has_bf16: asked only where the operating system lists no CPU flags: whether the runtime itself
            reports native bfloat16 on this CPU (OpenVINO: ``"BF16"`` in ``OPTIMIZATION_CAPABILITIES``).
    Returns:
        the precision and one line saying why.
    """
    forced = forced_cpu_bf16()
    if forced is not None:
        return ("bf16" if forced else "f32"), f"{CPU_BF16_ENV}={int(forced)}: by request"
    capped = avx2_only_settings()
    if capped:
        return "f32", f"float32: the AVX2-only settings are in force ({', '.join(capped)})"
    flags = cpu_flags()
    native = ("avx512_bf16" in flags or "amx_tile" in flags) if flags is not None else bool(runtime_has_bf16())
    if native:
        return "bf16", "bfloat16: this CPU multiplies bfloat16 natively (AVX512-BF16/AMX)"
    return "f32", "float32: this CPU has no native bfloat16 (no AVX512-BF16/AMX); emulated it would be slower"
