"""Images at the I/O boundary: uint8 ``(H, W, C)`` pixels <-> float ``(C, H, W)`` tensors in [0, 1], and resizing.

The library computes on float tensors ``(..., 3, H, W)`` in [0, 1] (``docs/conventions.md``); files, decoders,
encoders and widgets hand over uint8 ``(..., H, W, 3)`` arrays with values 0..255. This module is the one place
where the two meet:

- :func:`to_float`: uint8 ``(..., H, W, C)`` (numpy or torch, any device) -> float ``(..., C, H, W)``, divided by 255.
- :func:`to_uint8`: float ``(..., C, H, W)`` -> uint8 ``(..., H, W, C)`` numpy: clamped to [0, 1], times 255,
  **rounded** (truncating would darken every pixel by half a level on average).
- :func:`resize`: ``(..., C, H, W)`` float or uint8 tensors to an exact ``(h, w)``; :func:`resize_pixels` does the
  same for uint8 ``(H, W, C)`` numpy frames.
- :func:`unit_array` and :func:`uint8_array`: the same two conversions for numpy code that keeps the ``(..., H, W, C)``
  layout and its own float precision (the scene generator computes colours in float64): divide by 255; clip to
  [0, 1], times 255, round.

Resizing has one implementation, torch's ``F.interpolate(mode="bilinear", antialias=True, align_corners=False)``,
chosen over OpenCV because (1) it runs on float and uint8 tensors, batched, on any device, so the frames of a video,
the pairs of the training data and the clips of the metrics are resized by the same filter; (2) the training
pairs' conservative valid mask (:func:`reconet_lib.pairs.resize_pair`) must know the filter's support, which it
gets by sending the mask through this same filter; (3) with ``antialias=True`` shrinking averages (no aliasing,
like OpenCV's ``INTER_AREA``) and enlarging is plain bilinear. The cost: on uint8 frames on a CPU it is slower
than ``cv2.resize`` (about 3 ms against 0.3 ms for 1280x720 -> 640x360, measured on the 2-core build machine
while others ran), which is small beside the network's time per frame.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .errors import UserInputError
from .sizes import size_pair


def to_float(pixels, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 pixels ``(..., H, W, C)`` (numpy array or tensor) -> ``(..., C, H, W)`` tensor of ``dtype`` in [0, 1].

    A tensor stays on its device (convert on the GPU after copying the 4x smaller uint8 data there); a numpy
    array becomes a CPU tensor (a read-only array is copied first, since torch needs writable memory).
    """
    if isinstance(pixels, np.ndarray):
        pixels = _tensor(pixels)
    if not isinstance(pixels, torch.Tensor) or pixels.dtype != torch.uint8 or pixels.dim() < 3:
        kind = f"{pixels.dtype} {tuple(pixels.shape)}" if hasattr(pixels, "shape") else type(pixels).__name__
        raise UserInputError(f"images.to_float expects uint8 pixels (..., H, W, C); got {kind}")
    return pixels.movedim(-1, -3).to(dtype).div_(255.0).contiguous()


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Float images ``(..., C, H, W)`` in [0, 1] -> uint8 ``(..., H, W, C)`` numpy (clamp, times 255, round).

    The rounding happens on the images' device, so only uint8 data is copied back from a GPU.
    """
    if not isinstance(images, torch.Tensor) or not images.is_floating_point() or images.dim() < 3:
        kind = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise UserInputError(f"images.to_uint8 expects float images (..., C, H, W) in [0, 1]; got {kind}")
    pixels = images.detach().float().clamp(0, 1).mul_(255.0).round_().to(torch.uint8)
    return pixels.movedim(-3, -1).contiguous().cpu().numpy()


def unit_array(pixels: np.ndarray, dtype=np.float64) -> np.ndarray:
    """uint8 pixels ``(..., H, W, C)`` -> numpy ``dtype`` values in [0, 1], same layout (divided by 255)."""
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        raise UserInputError(f"images.unit_array expects uint8 pixels; got {pixels.dtype} {pixels.shape}")
    return pixels.astype(dtype) / 255.0


def uint8_array(values: np.ndarray) -> np.ndarray:
    """Float values ``(..., H, W, C)`` in [0, 1] (numpy) -> uint8, same layout: clipped to [0, 1], times 255,
    rounded (half to even, as :func:`to_uint8`), in the values' own precision."""
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.floating):
        raise UserInputError(f"images.uint8_array expects float values in [0, 1]; got {values.dtype} {values.shape}")
    return np.round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)


def resize(images: torch.Tensor, size) -> torch.Tensor:
    """Resize ``(..., C, H, W)`` float or uint8 tensors to exactly ``size = (h, w)`` (see the module docstring).

    Bilinear with antialiasing, ``align_corners=False``; the result has the input's dtype and device, and is the
    input itself when the size already matches. Float images in [0, 1] stay in [0, 1] (the weights are >= 0).
    """
    h, w = size_pair(size, "images.resize")
    if tuple(images.shape[-2:]) == (h, w):
        return images
    lead = images.shape[:-3]
    batch = images.reshape(-1, *images.shape[-3:])
    out = F.interpolate(batch, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return out.reshape(*lead, *out.shape[-3:])


def resize_pixels(frame: np.ndarray, size) -> np.ndarray:
    """Resize a uint8 ``(H, W, C)`` numpy frame to exactly ``size = (h, w)`` with :func:`resize`'s filter."""
    h, w = size_pair(size, "images.resize_pixels")
    if frame.shape[:2] == (h, w):
        return frame
    tensor = _tensor(frame).permute(2, 0, 1)[None]
    return resize(tensor, (h, w))[0].permute(1, 2, 0).contiguous().numpy()


def _tensor(array: np.ndarray) -> torch.Tensor:
    """A CPU tensor sharing ``array``'s memory; a read-only array (e.g. ``np.asarray`` of a PIL image) is copied,
    since torch needs writable memory."""
    array = np.ascontiguousarray(array)
    return torch.from_numpy(array if array.flags.writeable else array.copy())
