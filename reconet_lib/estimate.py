"""Optical-flow estimation for videos that come without ground-truth flow.

Two estimators, both returning flows in the library's convention (``docs/conventions.md``):
``(B, 2, H, W)`` float32 in pixels, channel 0 = u (+x right), channel 1 = v (+y down), and
``estimate_flow(a, b)`` is the flow **a -> b** on frame a's grid (``warp(b, flow)`` lines up with a).

- ``"dis"``: OpenCV's Dense Inverse Search (Kroeger et al. 2016), classical and offline. It runs on
  the CPU on grey ``uint8`` frames (BT.709 luminance), one batch item at a time.
- ``"raft"`` / ``"raft_small"`` / ``"raft_large"``: torchvision's RAFT (Teed and Deng 2020). It needs
  pretrained weights; ``"raft"`` means ``"raft_large"``. Weights are found by the library's resource
  policy (:func:`reconet_lib.resources.locate`): the file named by ``$RECONET_RAFT_WEIGHTS``, the torch
  hub cache, a mirror, then a verified download unless ``RECONET_OFFLINE=1``.

Used by the metrics (flow of the *input* video) and by the data loader for users' own videos.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from . import images
from .errors import UserInputError
from .resources import ResourceUnavailable, locate
from .warp import consistency_mask, luminance

#: Environment variable naming a RAFT state-dict file (``.pth``) to use offline.
RAFT_WEIGHTS_ENV = "RECONET_RAFT_WEIGHTS"

#: OpenCV DIS presets by name. ``"medium"`` (the default) is the accurate one of the three.
DIS_PRESETS = {"ultrafast": 0, "fast": 1, "medium": 2}

#: OpenCV DIS refuses smaller frames (its coarsest pyramid level needs a 12-pixel side); RAFT pads any size.
DIS_MIN_SIDE = 12

METHODS = ("dis", "raft", "raft_small", "raft_large")

# RAFT works at 1/8 resolution with a 4-level correlation pyramid: sides must be multiples of 8
# and at least 128 pixels.
_RAFT_MULTIPLE = 8
_RAFT_MIN_SIDE = 128


def _check_frames(frame_a: torch.Tensor, frame_b: torch.Tensor) -> None:
    for name, frame in (("frame_a", frame_a), ("frame_b", frame_b)):
        if not isinstance(frame, torch.Tensor) or frame.dim() != 4 or frame.shape[1] != 3:
            shape = tuple(frame.shape) if isinstance(frame, torch.Tensor) else type(frame).__name__
            raise UserInputError(f"{name} must be a (B, 3, H, W) RGB tensor in [0, 1]; got {shape}")
    if frame_a.shape != frame_b.shape:
        raise UserInputError(f"frames differ in shape: {tuple(frame_a.shape)} and {tuple(frame_b.shape)}")


def check_frame_size(height: int, width: int, method: str, source: str = "frames") -> None:
    """Refuse, in one line naming ``source``, frames too small for ``method`` (DIS: 12 pixels on each side)."""
    if method == "dis" and min(height, width) < DIS_MIN_SIDE:
        raise UserInputError(
            f"{source}: frames of {width}x{height} pixels are too small for DIS optical flow, which needs at least "
            f"{DIS_MIN_SIDE} pixels on each side; use larger frames (or method='raft_small', which pads any size)"
        )


def estimate_flow(
    frame_a: torch.Tensor,
    frame_b: torch.Tensor,
    *,
    method: str = "dis",
    device: torch.device | str | None = None,
    dis_preset: str = "medium",
    raft_updates: int = 12,
    allow_download: bool | None = None,
) -> torch.Tensor:
    """Estimate the optical flow from frame a to frame b.

    Args:
        frame_a: ``(B, 3, H, W)`` RGB frames in [0, 1].
        frame_b: ``(B, 3, H, W)`` the frames that follow (or precede) them.
        method: ``"dis"`` (OpenCV, offline), ``"raft_small"``, ``"raft_large"`` or ``"raft"`` (= large).
        device: where RAFT runs and where the result goes (default: ``frame_a.device``).
        dis_preset: OpenCV DIS preset, ``"ultrafast"``, ``"fast"`` or ``"medium"``.
        raft_updates: RAFT's number of recurrent refinement steps (12 as in torchvision's examples).
        allow_download: whether RAFT may download its weights when no local file is found (default: yes
            unless ``RECONET_OFFLINE=1``).
    Returns:
        ``(B, 2, H, W)`` float32 flow a -> b in pixels on frame a's grid.
    """
    _check_frames(frame_a, frame_b)
    device = torch.device(device) if device is not None else frame_a.device
    if method == "dis":
        return dis_flow(frame_a, frame_b, preset=dis_preset).to(device)
    if method in ("raft", "raft_small", "raft_large"):
        size = "small" if method == "raft_small" else "large"
        model = load_raft(size, device=device, allow_download=allow_download)
        return raft_flow(model, frame_a.to(device), frame_b.to(device), updates=raft_updates)
    raise UserInputError(f"unknown flow method {method!r}; choose one of {', '.join(METHODS)}")


def estimate_flows_and_valid(
    frame_a: torch.Tensor,
    frame_b: torch.Tensor,
    *,
    method: str = "dis",
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flows in both directions and the valid mask of frame a from the forward-backward check.

    Args:
        frame_a, frame_b: ``(B, 3, H, W)`` RGB frames in [0, 1].
        method, kwargs: as :func:`estimate_flow`.
    Returns:
        ``(flow_ab, flow_ba, valid_a)``: ``(B, 2, H, W)`` flow a -> b (frame a's grid), ``(B, 2, H, W)``
        flow b -> a (frame b's grid), ``(B, 1, H, W)`` float32 valid mask of frame a (1 = pixel seen in
        b with consistent flow; :func:`reconet_lib.warp.consistency_mask`).
    """
    flow_ab = estimate_flow(frame_a, frame_b, method=method, **kwargs)
    flow_ba = estimate_flow(frame_b, frame_a, method=method, **kwargs)
    return flow_ab, flow_ba, consistency_mask(flow_ab, flow_ba)


# ----------------------------------------------------------------------------------------------- DIS


def to_grey_uint8(frames: torch.Tensor) -> np.ndarray:
    """``(B, 3, H, W)`` RGB in [0, 1] -> ``(B, H, W)`` uint8 BT.709 luminance, rounded."""
    return images.to_uint8(luminance(frames.detach().float().cpu()))[..., 0]


def dis_flow(frame_a: torch.Tensor, frame_b: torch.Tensor, *, preset: str = "medium") -> torch.Tensor:
    """OpenCV DIS optical flow a -> b, computed on the CPU per batch item.

    ``cv2.DISOpticalFlow.calc(prev, next)`` returns ``flow`` with ``prev[y, x] ~ next[y + v, x + u]``,
    which is exactly our ``flow_a_to_b`` (no sign change, no transposition).

    Args:
        frame_a, frame_b: ``(B, 3, H, W)`` RGB in [0, 1] (any device).
        preset: ``"ultrafast"``, ``"fast"`` or ``"medium"`` (OpenCV's ``DISOPTICAL_FLOW_PRESET_*``).
    Returns:
        ``(B, 2, H, W)`` float32 flow on the CPU, in pixels.
    """
    _check_frames(frame_a, frame_b)
    if preset not in DIS_PRESETS:
        raise UserInputError(f"unknown DIS preset {preset!r}; choose one of {', '.join(DIS_PRESETS)}")
    check_frame_size(frame_a.shape[-2], frame_a.shape[-1], "dis")
    grey_a, grey_b = to_grey_uint8(frame_a), to_grey_uint8(frame_b)
    dis = cv2.DISOpticalFlow_create(DIS_PRESETS[preset])
    flows = [dis.calc(a, b, None) for a, b in zip(grey_a, grey_b)]  # each (H, W, 2) float32
    return torch.from_numpy(np.stack(flows)).permute(0, 3, 1, 2).contiguous()


# ---------------------------------------------------------------------------------------------- RAFT


def _raft_resource(size: str) -> str:
    return f"raft_{size}"


@functools.lru_cache(maxsize=4)
def _load_raft_cached(size: str, path: str, device: str) -> torch.nn.Module:
    # Imported here on purpose: torchvision takes seconds to import and only RAFT needs it.
    from torchvision.models.optical_flow import raft_large, raft_small

    model = (raft_small if size == "small" else raft_large)(weights=None)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable or not a tensor dict
        raise UserInputError(f"cannot read RAFT weights from {path}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        other = "raft_large" if size == "small" else "raft_small"
        raise UserInputError(
            f"{path} is not a torchvision raft_{size} state dict ({str(exc).splitlines()[0]}); "
            f"if it holds {other} weights use method={other!r}"
        ) from exc
    return model.eval().to(device)


def load_raft(
    size: str = "large",
    *,
    device: torch.device | str = "cpu",
    allow_download: bool | None = None,
) -> torch.nn.Module:
    """torchvision RAFT (``"small"`` or ``"large"``) with pretrained weights, in eval mode.

    The weights file (torchvision's default weights of that size) comes from
    :func:`reconet_lib.resources.locate`: ``$RECONET_RAFT_WEIGHTS``, the torch hub cache, a mirror, then a
    download verified by its sha256 prefix (``allow_download``: default yes unless ``RECONET_OFFLINE=1``).
    Without weights a :class:`~reconet_lib.resources.ResourceUnavailable` explains how to provide them
    (or to use ``method="dis"``). Loaded models are cached per (size, file, device).
    """
    if size not in ("small", "large"):
        raise UserInputError(f"RAFT size must be 'small' or 'large'; got {size!r}")
    try:
        path = locate(_raft_resource(size), allow_download=allow_download)
    except ResourceUnavailable as exc:
        raise ResourceUnavailable(f"{exc} Or use method='dis', which needs no weights.", exc.name) from None
    return _load_raft_cached(size, str(path), str(torch.device(device)))


def raft_flow(
    model: torch.nn.Module,
    frame_a: torch.Tensor,
    frame_b: torch.Tensor,
    *,
    updates: int = 12,
) -> torch.Tensor:
    """Run a torchvision RAFT model on frames of any size.

    The frames are mapped from [0, 1] to [-1, 1] (RAFT's input convention, as torchvision's
    ``OpticalFlow`` transform does; *not* the ImageNet normalisation), padded by edge replication on
    the right and bottom to multiples of 8 (and at least 128 pixels), and the flow is cropped back.
    Padding on the far sides leaves pixel coordinates, hence flow vectors, unchanged.

    Args:
        model: a RAFT model in eval mode (see :func:`load_raft`).
        frame_a, frame_b: ``(B, 3, H, W)`` RGB in [0, 1] on the model's device.
    Returns:
        ``(B, 2, H, W)`` float32 flow a -> b in pixels.
    """
    _check_frames(frame_a, frame_b)
    h, w = frame_a.shape[-2:]
    pad_h = max(-(-h // _RAFT_MULTIPLE) * _RAFT_MULTIPLE, _RAFT_MIN_SIDE) - h
    pad_w = max(-(-w // _RAFT_MULTIPLE) * _RAFT_MULTIPLE, _RAFT_MIN_SIDE) - w

    def prepare(frame: torch.Tensor) -> torch.Tensor:
        x = frame.float().clamp(0, 1) * 2.0 - 1.0
        return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else x

    with torch.no_grad():
        predictions = model(prepare(frame_a), prepare(frame_b), num_flow_updates=updates)
    return predictions[-1][..., :h, :w].float().contiguous()
