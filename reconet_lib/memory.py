"""Memory budgets: estimate what a run needs before allocating it, and refuse with one line when it cannot fit.

Stylising (:mod:`reconet_lib.stylize`) and evaluating (:mod:`reconet_lib.metrics`) estimate their peak memory
from the frame size, the number of frames held at once and the bytes per pixel, and ask :func:`require` before
they decode a single frame: a ``--size 20000`` then ends in a clear error instead of a ``MemoryError`` (or the
operating system killing the process) minutes later.

:func:`retain_freed_memory` makes CPU inference reuse freed memory instead of paying page faults for fresh
memory on every large tensor.
"""
from __future__ import annotations

import ctypes
import os
import platform

import psutil
import torch

from .errors import UserInputError

#: Share of the free memory a run may plan to use (the rest: the OS, the decoder, the encoder, Python).
MEMORY_SHARE = 0.8

GIB = 2**30


def available_host_memory() -> int | None:
    """Bytes of RAM free for a new allocation now (``psutil``'s ``available``), or None if unknown."""
    return int(psutil.virtual_memory().available)


def available_device_memory(device: torch.device) -> int | None:
    """Free bytes on a CUDA device (None for the CPU: see :func:`available_host_memory`)."""
    if device.type != "cuda":
        return None
    return int(torch.cuda.mem_get_info(device)[0])


def require(need: int, what: str, hint: str, *, device: torch.device | None = None,
            available: int | None = None) -> None:
    """Refuse a plan that needs more than :data:`MEMORY_SHARE` of the free memory.

    Args:
        need: estimated peak bytes.
        what: what needs them, e.g. ``"frames of 20000x15000 in batches of 4"``.
        hint: how to need less, e.g. ``"use a smaller --size"``.
        device: a CUDA device to check instead of the host memory.
        available: free bytes (default: measured now).
    Raises:
        UserInputError: one line with both numbers and the hint.
    """
    if available is None:
        available = available_device_memory(device) if device is not None and device.type == "cuda" \
            else available_host_memory()
    if available is not None and need > MEMORY_SHARE * available:
        where = f"{device} memory" if device is not None and device.type == "cuda" else "memory"
        raise UserInputError(
            f"{what} need about {need / GIB:.1f} GiB of {where} but {available / GIB:.1f} GiB are free; {hint}"
        )


# ----------------------------------------------------------------------------------------------------------
# Reusing freed memory (CPU inference)

#: Environment variable: ``0`` leaves the C allocator as it is (see :func:`retain_freed_memory`).
RETAIN_ENV = "RECONET_RETAIN_FREED_MEMORY"

#: Blocks up to this size are taken from (and returned to) the process's heap instead of the OS.
HEAP_BLOCK_LIMIT = 512 * 2**20
#: Free memory at the top of the heap is handed back to the OS only beyond this.
HEAP_KEEP = 1 * GIB

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers (malloc.h)
_retained: bool | None = None


def retain_freed_memory() -> bool:
    """Let this process reuse the memory of freed tensors instead of asking the OS for fresh pages each time.

    Why: glibc's ``malloc`` serves every block over 32 MiB by a fresh ``mmap`` and unmaps it on ``free``. A
    ReCoNet frame at 640x360 makes a dozen such tensors (48 channels x 360 x 640 floats = 44 MiB), and the
    first write to each new page is a page fault in which the kernel zeroes it: on a 2-core CPU that is about
    a third of the frame's time (measured under AVX2 in float32: 628 -> 409 ms per frame with this setting).
    ``mallopt`` raises glibc's limits so that such blocks come from the heap and stay there when freed
    (up to :data:`HEAP_BLOCK_LIMIT` per block; free memory at the top of the heap is returned only beyond
    :data:`HEAP_KEEP`, and free memory below the top is never returned).

    The cost: the process keeps about its peak memory, plus fragmentation, instead of returning it, also after
    the tensors are deleted (measured with the paper model: +130 MB at 640x360 in batches of 1, +0.9 GB in
    batches of 4, +1.9 GB at 1280x720 in batches of 4; in a long-lived process such as a Jupyter kernel, up to
    1.4 GB stayed held after a 1280x720 batch of 2). Blocks over :data:`HEAP_BLOCK_LIMIT` still go to the OS
    (and gain nothing). It is a process-wide setting, made once, on the first call (by
    :func:`reconet_lib.inference.optimize_for_inference` on a CPU); ``RECONET_RETAIN_FREED_MEMORY=0`` turns it
    off. Only glibc (Linux) has these knobs; elsewhere this does nothing.

    Returns:
        whether the setting is in effect.
    """
    global _retained
    if _retained is None:
        _retained = False
        if os.environ.get(RETAIN_ENV, "1").strip() != "0" and platform.system() == "Linux" \
                and platform.libc_ver()[0] == "glibc":
            try:
                libc = ctypes.CDLL(None)
                _retained = bool(libc.mallopt(_M_MMAP_THRESHOLD, HEAP_BLOCK_LIMIT)) and \
                    bool(libc.mallopt(_M_TRIM_THRESHOLD, HEAP_KEEP))
            except (OSError, AttributeError):  # pragma: no cover - a libc without mallopt
                _retained = False
    return _retained
