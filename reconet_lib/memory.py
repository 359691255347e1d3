"""Memory budgets: estimate what a run needs before allocating it, and refuse with one line when it cannot fit.

Stylising (:mod:`reconet_lib.stylize`) and evaluating (:mod:`reconet_lib.metrics`) estimate their peak memory
from the frame size, the number of frames held at once and the bytes per pixel, and ask :func:`require` before
they decode a single frame: a ``--size 20000`` then ends in a clear error instead of a ``MemoryError`` (or the
operating system killing the process) minutes later.
"""
from __future__ import annotations

import torch

from .errors import UserInputError

#: Share of the free memory a run may plan to use (the rest: the OS, the decoder, the encoder, Python).
MEMORY_SHARE = 0.8

GIB = 2**30


def available_host_memory() -> int | None:
    """Bytes of RAM free for a new allocation now (``psutil``'s ``available``), or None if unknown."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is a dependency; a stripped install still runs
        return None
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
