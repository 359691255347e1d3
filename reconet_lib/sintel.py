"""The MPI Sintel training layout: the one place that knows its folders, file names and mask polarity.

Layout (``root`` plays Sintel's ``training`` folder; frames are numbered from 1, as Sintel does)::

    <root>/<pass>/<scene>/frame_%04d.png          pass = clean or final, k = 1..T
    <root>/flow/<scene>/frame_%04d.flo            flow frame k -> k+1, stored under k, k = 1..T-1
    <root>/occlusions/<scene>/frame_%04d.png      white where a pixel of frame k is not visible in k+1
    <root>/invalid/<scene>/frame_%04d.png         (optional, real Sintel) white where the flow of k is unknown

The synthetic generator (:mod:`reconet_lib.synthetic`) adds the backward direction, which real Sintel lacks::

    <root>/flow_backward/<scene>/frame_%04d.flo        flow frame k -> k-1, stored under k, k = 2..T
    <root>/occlusions_backward/<scene>/frame_%04d.png  white where a pixel of frame k is not visible in k-1

A file is named by its frame ``k`` and a ``step`` (+1: towards k+1, the Sintel files; -1: towards k-1, the
generator's extras); the flow stored under k always lives on frame k's grid. Masks are **white = occluded**
on disk; the readers here return the library's *valid* masks (``valid = 1 - (png > 0)``, 1 = trust).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from . import images
from .errors import UserInputError
from .flow import read_flo

#: Image pass folders of the layout.
PASSES = ("clean", "final")
#: Number of the first frame of a scene.
FIRST_FRAME = 1
#: Folder of the optional masks of unknown flow (real Sintel, forward direction only).
INVALID_FOLDER = "invalid"

_FLOW_FOLDERS = {1: "flow", -1: "flow_backward"}
_OCCLUSION_FOLDERS = {1: "occlusions", -1: "occlusions_backward"}
_FRAME_RE = re.compile(r"^frame_(\d{4,})\.(png|flo)$")


class LayoutFileMissing(UserInputError, FileNotFoundError):
    """A file the Sintel layout needs is not there; the message names it."""


def _check_step(step: int) -> int:
    if step not in _FLOW_FOLDERS:
        raise UserInputError(f"step must be +1 (flow k -> k+1, Sintel) or -1 (flow k -> k-1, generator); got {step!r}")
    return step


def flow_folder(step: int = 1) -> str:
    """Folder of the flows towards frame k + ``step``: ``"flow"`` (+1) or ``"flow_backward"`` (-1)."""
    return _FLOW_FOLDERS[_check_step(step)]


def occlusion_folder(step: int = 1) -> str:
    """Folder of the occlusion masks towards k + ``step``: ``"occlusions"`` (+1) or ``"occlusions_backward"`` (-1)."""
    return _OCCLUSION_FOLDERS[_check_step(step)]


def frame_name(k: int, suffix: str = ".png") -> str:
    """File name of frame ``k`` (from 1): ``frame_0001.png``; ``suffix=".flo"`` for flows."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < FIRST_FRAME:
        raise UserInputError(f"Sintel frame numbers start at {FIRST_FRAME}; got {k!r}")
    return f"frame_{int(k):04d}{suffix}"


def frame_numbers(folder: str | os.PathLike) -> list[int]:
    """Sorted frame numbers of the ``frame_%04d.png`` / ``.flo`` files in ``folder`` (other files ignored)."""
    numbers = set()
    for entry in os.listdir(folder):
        match = _FRAME_RE.match(entry)
        if match:
            numbers.add(int(match.group(1)))
    return sorted(numbers)


def image_path(root: str | os.PathLike, pass_name: str, scene: str, k: int) -> Path:
    """``<root>/<pass>/<scene>/frame_%04d.png``."""
    return Path(root) / pass_name / scene / frame_name(k)


def flow_path(root: str | os.PathLike, scene: str, k: int, step: int = 1) -> Path:
    """Flow frame k -> k + ``step`` on frame k's grid: ``<root>/flow[_backward]/<scene>/frame_%04d.flo``."""
    return Path(root) / flow_folder(step) / scene / frame_name(k, ".flo")


def occlusion_path(root: str | os.PathLike, scene: str, k: int, step: int = 1) -> Path:
    """Mask of frame k's pixels not visible in k + ``step`` (white = occluded)."""
    return Path(root) / occlusion_folder(step) / scene / frame_name(k)


def invalid_path(root: str | os.PathLike, scene: str, k: int) -> Path:
    """Real Sintel's optional mask of unknown flow k -> k+1 (white = invalid)."""
    return Path(root) / INVALID_FOLDER / scene / frame_name(k)


def scene_files(num_frames: int, passes: Sequence[str] = ("clean",), backward: bool = True) -> dict[str, list[str]]:
    """File names per layout folder of a complete scene of ``num_frames`` frames.

    Returns:
        ``{folder: [file names]}`` for the pass folders, ``flow``/``occlusions`` (k = 1..T-1) and, with
        ``backward``, ``flow_backward``/``occlusions_backward`` (k = 2..T).
    """
    last = FIRST_FRAME + num_frames - 1
    files = {p: [frame_name(k) for k in range(FIRST_FRAME, last + 1)] for p in passes}
    steps = (1, -1) if backward else (1,)
    for step in steps:
        numbers = range(FIRST_FRAME, last) if step == 1 else range(FIRST_FRAME + 1, last + 1)
        files[flow_folder(step)] = [frame_name(k, ".flo") for k in numbers]
        files[occlusion_folder(step)] = [frame_name(k) for k in numbers]
    return files


# ---------------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------------


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """An 8-bit image file as a ``(3, H, W)`` float32 RGB tensor in [0, 1]."""
    try:
        with Image.open(path) as image:
            array = np.array(image.convert("RGB"), dtype=np.uint8)  # np.array copies: writable for torch
    except FileNotFoundError:
        raise LayoutFileMissing(f"image {path} is missing") from None
    return images.to_float(array)


def occluded_pixels(path: str | os.PathLike) -> np.ndarray:
    """A Sintel mask file read with its own polarity: ``(H, W)`` bool, True where white (any channel > 0)."""
    try:
        with Image.open(path) as image:
            array = np.asarray(image)
    except FileNotFoundError:
        raise LayoutFileMissing(
            f"mask {path} is missing: without it occluded pixels would be trusted "
            "(Sintel's occlusions come with MPI-Sintel-complete, registry key 'mpi_sintel')"
        ) from None
    return array.max(axis=-1) > 0 if array.ndim == 3 else array > 0


def read_mask(path: str | os.PathLike) -> torch.Tensor:
    """A Sintel occlusion/invalid mask as a library *valid* mask: ``(1, H, W)`` float32, ``1 - (png > 0)``."""
    return torch.from_numpy(~occluded_pixels(path))[None].float()


def read_valid(root: str | os.PathLike, scene: str, k: int, step: int = 1) -> torch.Tensor:
    """Valid mask ``(1, H, W)`` float32 of frame k towards k + ``step``: not occluded and, for real Sintel's
    step +1, not marked in ``invalid/`` when that file exists. Unknown flow values are not judged here
    (the flow readers mark them NaN). Raises :class:`LayoutFileMissing` when the occlusion mask is absent."""
    valid = read_mask(occlusion_path(root, scene, k, step))
    extra = invalid_path(root, scene, k)
    if step == 1 and extra.is_file():
        valid = valid * read_mask(extra)
    return valid


def read_flow(root: str | os.PathLike, scene: str, k: int, step: int = 1) -> torch.Tensor:
    """Flow frame k -> k + ``step`` as a ``(2, H, W)`` float32 tensor in pixels (unknown values NaN)."""
    path = flow_path(root, scene, k, step)
    if not path.is_file():
        raise LayoutFileMissing(f"flow file {path} is missing")
    return torch.from_numpy(np.ascontiguousarray(read_flo(path))).permute(2, 0, 1).contiguous()


# ---------------------------------------------------------------------------------------------------------
# Writing (used by the synthetic generator)
# ---------------------------------------------------------------------------------------------------------


def mask_png(occluded: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool, True = occluded -> uint8 image in Sintel's polarity (255 = white = occluded)."""
    return images.uint8_array(np.asarray(occluded, dtype=bool).astype(np.float32))


def write_png(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 ``(H, W, 3)`` image or ``(H, W)`` mask as PNG (the caller makes the write atomic)."""
    Image.fromarray(np.ascontiguousarray(array)).save(path, format="PNG")
