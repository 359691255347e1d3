"""Temporal pair datasets and the transforms that keep frames, flow and mask consistent.

Every dataset here yields one **pair sample** per index, a dict (no batch dimension):

- ``current``  ``(3, H, W)`` float32 RGB in [0, 1]: frame t;
- ``previous`` ``(3, H, W)`` float32 RGB in [0, 1]: frame t-1 (or, time-reversed, frame k+1);
- ``flow``     ``(2, H, W)`` float32, flow **current -> previous** in pixels, on the current frame's grid,
  so ``warp(previous, flow)`` lines up with ``current``;
- ``valid``    ``(1, H, W)`` float32, 1 = this pixel of the current frame is visible in the previous one
  (not occluded, flow known, target inside the frame);
- ``name``     a string ``"<source>/<...>/<current>-><previous>"`` naming the two frames.

Unknown flow (NaN, or beyond 1e9 in ``.flo`` files) becomes flow 0 with valid 0, and a pixel whose flow points
outside the previous frame is invalid. A ``DataLoader`` batches samples into ``(B, ...)`` tensors.

Sources (see ``docs/conventions.md``, "The temporal pair"):

- :class:`SintelPairs` reads the MPI Sintel training layout **time-reversed**: current = frame k,
  previous = frame k+1, flow = the shipped flow k -> k+1, valid = 1 - occlusion of frame k. No flow is negated.
- :class:`SyntheticPairs` is the same reader over the project's generated dataset (exact ground truth,
  offline); it can also read the generator's backward flows forwards in time.
- :class:`SceneFlowPairs` (Monkaa, FlyingThings3D) and :class:`FlyingChairs2Pairs` ship backward flow and are
  read forwards: current = t, previous = t-1.
- :class:`VideoFolderPairs` estimates flow on the user's own clips once, caches it on disk, and reads the cache.
- :class:`MixedPairs` draws from several datasets by weight.

Augmentation (:class:`PairAugment`: resize, random scale, random crop, horizontal flip) acts on the whole
pair so that the warp relation survives: see :func:`resize_pair`, :func:`random_crop_pair`, :func:`hflip_pair`.
Randomness comes from a ``torch.Generator`` that the caller passes in; datasets seed one per sample from
``(seed, index, one draw of torch's global RNG)``, so a run is reproducible under ``torch.manual_seed`` (and,
in DataLoader workers, under the loader's seeded generator) while every epoch sees new crops and flips.

Decoding videos and estimating flow never happen inside ``__getitem__`` of a training step: datasets read
image and flow files, or the cache that :meth:`VideoFolderPairs.prepare` writes beforehand.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from . import flow as flowio
from .errors import UserInputError
from .files import atomic_output, atomic_write_text
from .warp import consistency_mask, inside_mask

#: The keys of a pair sample, in documentation order.
PAIR_KEYS = ("current", "previous", "flow", "valid", "name")
#: File suffixes treated as video clips by :class:`VideoFolderPairs`.
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm")
#: File suffixes treated as still frames (frame folders, dataset images).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm", ".tif", ".tiff")


class DatasetNotFoundError(UserInputError, FileNotFoundError):
    """A dataset folder is missing or holds no usable data; the message says where to get it."""


# ==============================================================================================================
# Reading files and building samples
# ==============================================================================================================


def read_image(path) -> torch.Tensor:
    """Read an image file as a ``(3, H, W)`` float32 RGB tensor in [0, 1] (8-bit files)."""
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return image_to_tensor(array)


def image_to_tensor(array: np.ndarray) -> torch.Tensor:
    """uint8 ``(H, W, 3)`` -> float32 ``(3, H, W)`` in [0, 1]."""
    array = np.ascontiguousarray(array)
    if not array.flags.writeable:  # e.g. np.asarray of a PIL image; torch wants writable memory
        array = array.copy()
    return torch.from_numpy(array).permute(2, 0, 1).float().div_(255.0)


def read_mask(path) -> np.ndarray:
    """Read a binary mask image (PNG, PGM, ...): True where any channel is non-zero (white). ``(H, W)`` bool."""
    with Image.open(path) as image:
        array = np.asarray(image)
    return array.max(axis=-1) > 0 if array.ndim == 3 else array > 0


def make_sample(current, previous, flow, valid, name: str) -> dict:
    """Assemble a pair sample and apply the rules every dataset shares.

    Unknown flow (NaN / infinite / beyond 1e9) becomes 0 with valid 0; pixels whose target ``x + flow(x)``
    falls outside the previous frame become invalid; ``valid`` is binarised (1 only where it is >= 1).

    Args:
        current, previous: ``(3, H, W)`` float tensors in [0, 1] or uint8 ``(H, W, 3)`` arrays.
        flow: ``(2, H, W)`` tensor or ``(H, W, 2)`` numpy flow current -> previous, pixels.
        valid: ``(1, H, W)`` / ``(H, W)`` tensor or array, 1 (True) = visible in the previous frame.
        name: names the source frames.
    Returns:
        the sample dict described in the module docstring.
    """
    current = _as_image(current, "current")
    previous = _as_image(previous, "previous")
    if isinstance(flow, np.ndarray):
        flow = torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32)).permute(2, 0, 1)
    flow = flow.float()
    valid = torch.as_tensor(np.asarray(valid) if not isinstance(valid, torch.Tensor) else valid).float()
    if valid.dim() == 2:
        valid = valid[None]
    h, w = current.shape[-2:]
    if previous.shape != current.shape or flow.shape != (2, h, w) or valid.shape != (1, h, w):
        raise UserInputError(
            f"{name}: pair parts differ in size: current {tuple(current.shape)}, previous {tuple(previous.shape)}, "
            f"flow {tuple(flow.shape)}, valid {tuple(valid.shape)}; all must share the current frame's H, W"
        )
    known = ~flowio.unknown_mask(flow)  # (H, W)
    flow = torch.where(known[None], flow, torch.zeros((), dtype=flow.dtype))
    valid = (valid >= 1) & known[None]
    valid = valid.float() * inside_mask(flow[None])[0]
    return {"current": current, "previous": previous, "flow": flow.contiguous(), "valid": valid, "name": str(name)}


def _as_image(image, what: str) -> torch.Tensor:
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
            raise UserInputError(f"{what}: numpy frames must be uint8 (H, W, 3); got {image.dtype} {image.shape}")
        return image_to_tensor(image)
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3:
        shape = tuple(image.shape) if hasattr(image, "shape") else type(image).__name__
        raise UserInputError(f"{what}: frames must be (3, H, W) tensors in [0, 1]; got {shape}")
    return image.float()


def check_sample(sample: dict) -> None:
    """Raise ``UserInputError`` unless ``sample`` is a pair sample (keys, shapes, dtypes)."""
    missing = [k for k in PAIR_KEYS if k not in sample]
    if missing:
        raise UserInputError(f"a pair sample needs the keys {PAIR_KEYS}; missing {missing}")
    current = sample["current"]
    if not isinstance(current, torch.Tensor) or current.dim() != 3 or current.shape[0] != 3:
        raise UserInputError(f"sample['current'] must be (3, H, W); got {getattr(current, 'shape', current)!r}")
    h, w = current.shape[-2:]
    expected = {"previous": (3, h, w), "flow": (2, h, w), "valid": (1, h, w)}
    for key, shape in expected.items():
        value = sample[key]
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
            raise UserInputError(f"sample[{key!r}] must have shape {shape}; got {tuple(getattr(value, 'shape', ()))}")


# ==============================================================================================================
# Pair transforms
# ==============================================================================================================


def resize_pair(sample: dict, size: tuple[int, int]) -> dict:
    """Resize a pair to ``size = (h, w)``.

    - Images: bilinear with antialiasing (``align_corners=False``), so shrinking averages instead of aliasing.
    - Flow: :func:`reconet_lib.flow.resize_flow` (bilinear, ``u *= w / W``, ``v *= h / H``).
    - Valid, conservatively: a new pixel is valid only if **every** source pixel that the (antialiased)
      bilinear filter draws on with a non-zero weight is valid. This is the invalid mask ``valid < 1``
      resized with the same filter, then "any invalid contribution makes it invalid" (max-pooling semantics
      over the filter's support). Flow interpolated across an occlusion edge is thus never trusted.
      Finally pixels whose resized flow leaves the frame are invalid.

    Args:
        sample: a pair sample (see the module docstring).
        size: target ``(h, w)``.
    Returns:
        a new sample of size ``(h, w)`` (same ``name``).
    """
    h, w = flowio.size_pair(size, "resize_pair")
    if tuple(sample["current"].shape[-2:]) == (h, w):
        return dict(sample)
    images = torch.stack([sample["current"], sample["previous"]])
    images = F.interpolate(images, size=(h, w), mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)
    flow = flowio.resize_flow(sample["flow"][None].float(), (h, w))
    invalid = (sample["valid"][None] < 1).float()
    invalid = F.interpolate(invalid, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    valid = (invalid <= 0).float() * inside_mask(flow)
    return {**sample, "current": images[0], "previous": images[1], "flow": flow[0], "valid": valid[0]}


def random_crop_pair(sample: dict, size: tuple[int, int], generator: torch.Generator | None = None) -> dict:
    """Cut the same random window ``(h, w)`` out of both frames, the flow and the mask.

    Both frames move by the same offset, so flow vectors (displacements) are unchanged. Pixels whose
    correspondence now falls outside the cropped previous frame become invalid.

    Args:
        sample: a pair sample of size ``(H, W)`` with ``h <= H`` and ``w <= W``.
        size: crop ``(h, w)``. A crop larger than the sample raises ``UserInputError``
            (:class:`PairAugment` instead enlarges the sample first).
        generator: source of the random offset (``None``: torch's global RNG).
    Returns:
        a new sample of size ``(h, w)``.
    """
    h, w = flowio.size_pair(size, "random_crop_pair")
    height, width = sample["current"].shape[-2:]
    if h > height or w > width:
        raise UserInputError(
            f"random_crop_pair: crop {(h, w)} is larger than the sample {(height, width)} ({sample.get('name')}); "
            "resize the pair first (resize_pair), or use PairAugment, which enlarges small samples to fit"
        )
    top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
    window = (..., slice(top, top + h), slice(left, left + w))
    flow = sample["flow"][window]
    valid = sample["valid"][window] * inside_mask(flow[None])[0]
    return {
        **sample,
        "current": sample["current"][window],
        "previous": sample["previous"][window],
        "flow": flow,
        "valid": valid,
    }


def hflip_pair(sample: dict) -> dict:
    """Mirror a pair left-right: both frames and the mask are flipped, the flow by ``hflip_flow`` (flip, -u).

    The flow keeps its direction in time (current -> previous); this is a change of coordinates. Applying it
    twice returns the original sample exactly.
    """
    return {
        **sample,
        "current": sample["current"].flip(-1),
        "previous": sample["previous"].flip(-1),
        "flow": flowio.hflip_flow(sample["flow"][None])[0],
        "valid": sample["valid"].flip(-1),
    }


@dataclass
class PairAugment:
    """Augmentation of pair samples, applied in this order:

    1. ``size``: resize to ``(h, w)`` (:func:`resize_pair`), if given;
    2. ``scale_range``: resize by a random factor drawn uniformly from ``(low, high)`` (aspect kept);
    3. ``crop``: random crop ``(h, w)`` (:func:`random_crop_pair`). A sample smaller than the crop is first
       enlarged (aspect kept) by the smallest factor that makes it fit;
    4. ``flip_probability``: horizontal flip (:func:`hflip_pair`) with this probability.

    Call it as ``augment(sample, generator)``. Use a fixed ``size`` or ``crop`` whenever samples of different
    sizes end up in one batch.
    """

    size: tuple[int, int] | None = None
    crop: tuple[int, int] | None = None
    flip_probability: float = 0.5
    scale_range: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self) -> None:
        if self.size is not None:
            self.size = flowio.size_pair(self.size, "PairAugment.size")
        if self.crop is not None:
            self.crop = flowio.size_pair(self.crop, "PairAugment.crop")
        if not 0.0 <= float(self.flip_probability) <= 1.0:
            raise UserInputError(f"PairAugment.flip_probability must be in [0, 1]; got {self.flip_probability!r}")
        low, high = (float(s) for s in self.scale_range)
        if not (0 < low <= high and math.isfinite(high)):
            raise UserInputError(
                f"PairAugment.scale_range must be (low, high) with 0 < low <= high; got {self.scale_range!r}"
            )
        self.scale_range = (low, high)

    def __call__(self, sample: dict, generator: torch.Generator | None = None) -> dict:
        if self.size is not None:
            sample = resize_pair(sample, self.size)
        low, high = self.scale_range
        if high > low or low != 1.0:
            factor = low + (high - low) * float(torch.rand((), generator=generator))
            height, width = sample["current"].shape[-2:]
            sample = resize_pair(sample, (max(1, round(height * factor)), max(1, round(width * factor))))
        if self.crop is not None:
            height, width = sample["current"].shape[-2:]
            ch, cw = self.crop
            if ch > height or cw > width:
                factor = max(ch / height, cw / width)
                sample = resize_pair(sample, (max(ch, math.ceil(height * factor)), max(cw, math.ceil(width * factor))))
            sample = random_crop_pair(sample, self.crop, generator)
        if self.flip_probability > 0 and float(torch.rand((), generator=generator)) < self.flip_probability:
            sample = hflip_pair(sample)
        return sample


def sample_generator(seed: int, index: int) -> torch.Generator:
    """A ``torch.Generator`` for augmenting sample ``index``: seeded by ``(seed, index, a global-RNG draw)``.

    The global-RNG draw makes epochs differ while staying reproducible under ``torch.manual_seed`` (DataLoader
    workers seed torch's global RNG from the loader's generator).
    """
    token = int(torch.randint(0, 2**31 - 1, (1,)))
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(index), token]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class PairDataset(Dataset):
    """Base class: a list of records, a ``_load(record) -> sample`` and optional augmentation."""

    augment: PairAugment | None = None
    seed: int = 0
    records: list

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {type(self).__name__} of length {len(self)}")
        index = index % len(self)
        sample = self._load(self.records[index])
        if self.augment is not None:
            sample = self.augment(sample, sample_generator(self.seed, index))
        return sample

    def _load(self, record) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError


# ==============================================================================================================
# MPI Sintel layout (and the synthetic dataset written in it)
# ==============================================================================================================

_FRAME_RE = re.compile(r"^frame_(\d+)\.png$")
SINTEL_DIRECTIONS = ("reversed", "forward", "both")


def _sintel_missing_message(root: Path, problem: str) -> str:
    return (
        f"MPI Sintel: {problem}. Expected the Sintel *training* folder with clean/<scene>/frame_0001.png, "
        f"flow/<scene>/frame_0001.flo and occlusions/<scene>/frame_0001.png. Get MPI-Sintel-complete with "
        f"reconet_lib.download.fetch('mpi_sintel') (registry key 'mpi_sintel') and pass its 'training' folder; "
        f"for an offline stand-in with exact ground truth use SyntheticPairs(). (root: {root})"
    )


def _frame_numbers(folder: Path) -> list[int]:
    numbers = []
    for entry in os.listdir(folder):
        match = _FRAME_RE.match(entry)
        if match:
            numbers.append(int(match.group(1)))
    return sorted(numbers)


class SintelPairs(PairDataset):
    """Pairs from the MPI Sintel training layout, read **time-reversed** (``docs/conventions.md``).

    For frame k of a scene (``direction="reversed"``, the default):
    current = ``<pass>/<scene>/frame_k.png``, previous = ``frame_{k+1}.png``,
    flow = ``flow/<scene>/frame_k.flo`` (flow k -> k+1 on frame k's grid: exactly current -> previous),
    valid = ``1 - (occlusions/<scene>/frame_k.png > 0)`` (white = pixel of frame k not visible in k+1),
    times ``1 - (invalid/<scene>/frame_k.png > 0)`` when that file exists. No flow is ever negated.

    ``direction="forward"`` reads the generator's extra folders instead (:mod:`reconet_lib.synthetic`):
    current = frame k, previous = frame k-1, flow = ``flow_backward/<scene>/frame_k.flo`` (k -> k-1),
    valid = ``1 - occlusions_backward/<scene>/frame_k.png``. ``"both"`` yields both kinds. Real Sintel has no
    backward folders.

    Args:
        root: the ``training`` folder (a folder that contains ``training/`` is accepted too).
        passes: image passes to read, e.g. ``("clean",)`` or ``("clean", "final")``.
        scenes: scene names to keep (default: all).
        augment: optional :class:`PairAugment`.
        seed: augmentation seed (see :func:`sample_generator`).
        direction: ``"reversed"``, ``"forward"`` or ``"both"``.
        source_name: first part of each sample's ``name``.
    """

    def __init__(
        self,
        root,
        *,
        passes: Sequence[str] = ("clean",),
        scenes: Sequence[str] | None = None,
        augment: PairAugment | None = None,
        seed: int = 0,
        direction: str = "reversed",
        source_name: str = "sintel",
    ) -> None:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise DatasetNotFoundError(_sintel_missing_message(root, "the folder does not exist"))
        if not (root / "flow").is_dir() and (root / "training" / "flow").is_dir():
            root = root / "training"
        if direction not in SINTEL_DIRECTIONS:
            raise UserInputError(f"SintelPairs: direction must be one of {SINTEL_DIRECTIONS}; got {direction!r}")
        if isinstance(passes, str):
            passes = (passes,)
        self.root, self.passes, self.direction = root, tuple(passes), direction
        self.augment, self.seed, self.source_name = augment, int(seed), source_name
        directions = ("reversed", "forward") if direction == "both" else (direction,)
        needed = {"reversed": ("flow", "occlusions"), "forward": ("flow_backward", "occlusions_backward")}
        for d in directions:
            for folder in needed[d]:
                if not (root / folder).is_dir():
                    hint = (
                        " (only the synthetic generator writes backward flow; real Sintel is read time-reversed)"
                        if d == "forward" else ""
                    )
                    raise DatasetNotFoundError(_sintel_missing_message(root, f"no '{folder}' folder{hint}"))
        for p in self.passes:
            if not (root / p).is_dir():
                present = sorted(d.name for d in root.iterdir() if d.is_dir())
                raise DatasetNotFoundError(_sintel_missing_message(root, f"no '{p}' pass folder (found: {present})"))
        available = sorted(d.name for d in (root / self.passes[0]).iterdir() if d.is_dir())
        if scenes is None:
            chosen = available
        else:
            chosen = [scenes] if isinstance(scenes, str) else list(scenes)
            unknown = sorted(set(chosen) - set(available))
            if unknown:
                raise UserInputError(f"SintelPairs: unknown scenes {unknown}; available: {available}")
        self.scenes = chosen
        self.records = []
        for p in self.passes:
            for scene in chosen:
                if not (root / p / scene).is_dir():
                    continue
                numbers = set(_frame_numbers(root / p / scene))
                for d in directions:
                    flow_dir = root / ("flow" if d == "reversed" else "flow_backward") / scene
                    if not flow_dir.is_dir():
                        continue
                    flows = {f.name for f in os.scandir(flow_dir)}
                    step = 1 if d == "reversed" else -1
                    for k in sorted(numbers):
                        if k + step in numbers and f"frame_{k:04d}.flo" in flows:
                            self.records.append((p, scene, k, d))
        if not self.records:
            raise DatasetNotFoundError(
                _sintel_missing_message(root, f"no frame pairs with flow for passes {self.passes}, scenes {chosen}")
            )

    def _load(self, record) -> dict:
        p, scene, k, direction = record
        root = self.root
        other = k + 1 if direction == "reversed" else k - 1
        suffix = "" if direction == "reversed" else "_backward"
        flow_folder, occ_folder = "flow" + suffix, "occlusions" + suffix
        current = read_image(root / p / scene / f"frame_{k:04d}.png")
        previous = read_image(root / p / scene / f"frame_{other:04d}.png")
        flow = flowio.read_flo(root / flow_folder / scene / f"frame_{k:04d}.flo")
        occ_path = root / occ_folder / scene / f"frame_{k:04d}.png"
        if not occ_path.is_file():
            raise DatasetNotFoundError(
                f"{occ_path} is missing: without the occlusion mask occluded pixels would be trusted. "
                "Sintel's occlusions come with MPI-Sintel-complete (registry key 'mpi_sintel')."
            )
        valid = ~read_mask(occ_path)
        invalid_path = root / "invalid" / scene / f"frame_{k:04d}.png"
        if direction == "reversed" and invalid_path.is_file():
            valid &= ~read_mask(invalid_path)
        name = f"{self.source_name}/{p}/{scene}/frame_{k:04d}->frame_{other:04d}"
        return make_sample(current, previous, flow, valid, name)


class SyntheticPairs(SintelPairs):
    """:class:`SintelPairs` over the project's generated dataset (:mod:`reconet_lib.synthetic`).

    With ``root=None`` the dataset of :func:`reconet_lib.synthetic.default_dataset` is used (generated on first
    use under ``data_dir()``; ``quick=None`` follows :func:`reconet_lib.config.quick_mode`). A given ``root`` must
    hold a dataset written by :func:`reconet_lib.synthetic.generate_dataset`.

    ``direction``: ``"reversed"`` (current = k, previous = k+1, flow k -> k+1, as for Sintel), ``"forward"``
    (current = k, previous = k-1 from ``flow_backward`` / ``occlusions_backward``) or ``"both"``.
    """

    def __init__(
        self,
        root=None,
        quick: bool | None = None,
        *,
        passes: Sequence[str] = ("clean",),
        scenes: Sequence[str] | None = None,
        augment: PairAugment | None = None,
        seed: int = 0,
        direction: str = "reversed",
    ) -> None:
        if root is None:
            from . import synthetic

            root = synthetic.default_dataset(quick)
        super().__init__(
            root, passes=passes, scenes=scenes, augment=augment, seed=seed, direction=direction, source_name="synthetic"
        )


# ==============================================================================================================
# Scene Flow (Monkaa, FlyingThings3D)
# ==============================================================================================================

SCENEFLOW_SUBSETS = ("monkaa", "flyingthings3d")


class SceneFlowPairs(PairDataset):
    """Forward-time pairs from the Scene Flow datasets (Mayer et al. 2016), as used by ReCoNet.

    Layout below ``root`` (the folder holding ``frames_finalpass``, ``optical_flow``, ``motion_boundaries``)::

        Monkaa:          frames_<pass>/<scene>/left/0000.png
        FlyingThings3D:  frames_<pass>/<TRAIN|TEST>/<A|B|C>/<0000>/left/0006.png
        flow:            optical_flow/<same>/into_past/left/OpticalFlowIntoPast_0006_L.pfm    (frame t -> t-1)
                         optical_flow/<same>/into_future/left/OpticalFlowIntoFuture_0005_L.pfm (frame t-1 -> t)
        boundaries:      motion_boundaries/<same>/into_past/left/0006.pgm (non-zero = motion boundary)

    Pair for frames t-1, t: current = t, previous = t-1, flow = ``into_past`` of t (t -> t-1 on frame t's grid,
    used as shipped). Scene Flow has no occlusion masks, so valid comes from the forward-backward check
    :func:`reconet_lib.warp.consistency_mask` (``into_past`` of t against ``into_future`` of t-1) and excludes
    the shipped motion boundaries of t (when ``use_motion_boundaries``).

    Args:
        root: the subset's folder.
        subset: ``"monkaa"`` or ``"flyingthings3d"``.
        split: ``"TRAIN"`` or ``"TEST"`` (FlyingThings3D only).
        pass_name: ``"finalpass"`` (the paper's choice) or ``"cleanpass"``.
        side: ``"left"`` or ``"right"`` camera.
        use_motion_boundaries: exclude ``motion_boundaries`` pixels (a pair whose file is missing is skipped).
        augment, seed: see :class:`SintelPairs`.
    """

    def __init__(
        self,
        root,
        subset: str = "monkaa",
        *,
        split: str = "TRAIN",
        pass_name: str = "finalpass",
        side: str = "left",
        use_motion_boundaries: bool = True,
        augment: PairAugment | None = None,
        seed: int = 0,
    ) -> None:
        root = Path(root).expanduser()
        subset = subset.lower()
        if subset not in SCENEFLOW_SUBSETS:
            raise UserInputError(f"SceneFlowPairs: subset must be one of {SCENEFLOW_SUBSETS}; got {subset!r}")
        if split not in ("TRAIN", "TEST"):
            raise UserInputError(f"SceneFlowPairs: split must be 'TRAIN' or 'TEST'; got {split!r}")
        if side not in ("left", "right"):
            raise UserInputError(f"SceneFlowPairs: side must be 'left' or 'right'; got {side!r}")
        frames_root = root / f"frames_{pass_name}"
        hint = (
            "Download the Scene Flow datasets (RGB images finalpass, optical flow, motion boundaries) from "
            "https://lmb.informatik.uni-freiburg.de/resources/datasets/SceneFlowDatasets.en.html and pass the folder "
            "that holds frames_finalpass/, optical_flow/ and motion_boundaries/"
        )
        if not frames_root.is_dir() or not (root / "optical_flow").is_dir():
            raise DatasetNotFoundError(
                f"Scene Flow {subset}: no frames_{pass_name}/ or optical_flow/ under {root}. {hint}"
            )
        if use_motion_boundaries and not (root / "motion_boundaries").is_dir():
            raise DatasetNotFoundError(
                f"Scene Flow {subset}: no motion_boundaries/ under {root}; "
                "download it or pass use_motion_boundaries=False"
            )
        self.root, self.subset, self.split, self.pass_name, self.side = root, subset, split, pass_name, side
        self.use_motion_boundaries, self.augment, self.seed = use_motion_boundaries, augment, int(seed)
        letter = side[0].upper()
        if subset == "monkaa":
            sequences = [Path(d.name) for d in sorted(frames_root.iterdir()) if d.is_dir()]
        else:
            split_root = frames_root / split
            sequences = [
                Path(split) / group.name / seq.name
                for group in sorted(split_root.iterdir()) if group.is_dir()
                for seq in sorted(group.iterdir()) if seq.is_dir()
            ] if split_root.is_dir() else []
        self.records = []
        for rel in sequences:
            frame_dir = frames_root / rel / side
            if not frame_dir.is_dir():
                continue
            frames = {
                int(f.stem): f.name
                for f in frame_dir.iterdir()
                if f.stem.isdigit() and f.suffix.lower() in IMAGE_SUFFIXES
            }
            past = _listing(root / "optical_flow" / rel / "into_past" / side)
            future = _listing(root / "optical_flow" / rel / "into_future" / side)
            boundaries = _listing(root / "motion_boundaries" / rel / "into_past" / side)
            for t in sorted(frames):
                if t - 1 not in frames:
                    continue
                stem, prev_stem = Path(frames[t]).stem, Path(frames[t - 1]).stem
                files_ok = (
                    f"OpticalFlowIntoPast_{stem}_{letter}.pfm" in past
                    and f"OpticalFlowIntoFuture_{prev_stem}_{letter}.pfm" in future
                    and (not use_motion_boundaries or f"{stem}.pgm" in boundaries)
                )
                if files_ok:
                    self.records.append((rel, frames[t], frames[t - 1]))
        if not self.records:
            raise DatasetNotFoundError(
                f"Scene Flow {subset}: no frame pairs with flow found under {root} ({split}). {hint}"
            )

    def _load(self, record) -> dict:
        rel, current_file, previous_file = record
        root, side, letter = self.root, self.side, self.side[0].upper()
        stem, prev_stem = Path(current_file).stem, Path(previous_file).stem
        frames = root / f"frames_{self.pass_name}" / rel / side
        flows = root / "optical_flow" / rel
        into_past = flowio.read_flow(flows / "into_past" / side / f"OpticalFlowIntoPast_{stem}_{letter}.pfm")
        into_future = flowio.read_flow(flows / "into_future" / side / f"OpticalFlowIntoFuture_{prev_stem}_{letter}.pfm")
        past_t = torch.from_numpy(into_past).permute(2, 0, 1)[None]
        future_tm1 = torch.from_numpy(into_future).permute(2, 0, 1)[None]
        valid = consistency_mask(past_t, future_tm1)[0, 0] > 0.5
        if self.use_motion_boundaries:
            valid &= torch.from_numpy(~read_mask(root / "motion_boundaries" / rel / "into_past" / side / f"{stem}.pgm"))
        name = f"{self.subset}/{rel.as_posix()}/{side}/{stem}->{prev_stem}"
        current, previous = read_image(frames / current_file), read_image(frames / previous_file)
        return make_sample(current, previous, into_past, valid, name)


def _listing(folder: Path) -> set[str]:
    try:
        return set(os.listdir(folder))
    except OSError:
        return set()


# ==============================================================================================================
# FlyingChairs2
# ==============================================================================================================


class FlyingChairs2Pairs(PairDataset):
    """Pairs from FlyingChairs2 (Ilg et al. 2018), read forwards.

    File names, as in the released dataset (``<root>/<train|val>/``; the same names appear in ptlflow's
    FlyingChairs2 loader and mmflow's test data): ``0000000-img_0.png``, ``0000000-img_1.png``,
    ``0000000-flow_01.flo`` (img_0 -> img_1), ``0000000-flow_10.flo`` (img_1 -> img_0, on img_1's grid),
    ``0000000-occ_01.png`` / ``0000000-occ_10.png`` (white = pixel of img_0 / img_1 occluded in the other image),
    ``0000000-mb_01.png`` / ``0000000-mb_10.png`` (motion boundaries).

    Pair: current = img_1, previous = img_0, flow = ``flow_10`` as shipped, valid = ``1 - (occ_10 > 0)``;
    without ``occ_10`` the forward-backward check of ``flow_10`` against ``flow_01`` is used. With
    ``use_motion_boundaries`` the pixels of ``mb_10`` (when present) are excluded too.

    Args:
        root: the dataset folder holding ``train/`` and ``val/``.
        split: ``"train"`` or ``"val"``.
        augment, seed: see :class:`SintelPairs`.
    """

    def __init__(
        self,
        root,
        split: str = "train",
        *,
        use_motion_boundaries: bool = False,
        augment: PairAugment | None = None,
        seed: int = 0,
    ) -> None:
        root = Path(root).expanduser()
        folder = root / split
        if not folder.is_dir():
            raise DatasetNotFoundError(
                f"FlyingChairs2: no '{split}' folder under {root}. Download FlyingChairs2.zip from "
                "https://lmb.informatik.uni-freiburg.de/resources/datasets/FlyingChairs.en.html and pass the "
                "extracted FlyingChairs2 folder (it holds train/ and val/)"
            )
        self.root, self.split, self.folder = root, split, folder
        self.use_motion_boundaries, self.augment, self.seed = use_motion_boundaries, augment, int(seed)
        names = set(os.listdir(folder))
        self.records = []
        for entry in sorted(names):
            if not entry.endswith("-img_1.png"):
                continue
            key = entry[: -len("-img_1.png")]
            if f"{key}-img_0.png" not in names or f"{key}-flow_10.flo" not in names:
                continue
            if f"{key}-occ_10.png" not in names and f"{key}-flow_01.flo" not in names:
                raise DatasetNotFoundError(
                    f"FlyingChairs2: {folder / (key + '-occ_10.png')} and {key}-flow_01.flo are both missing; one "
                    "of them is needed to know which pixels of img_1 are occluded in img_0"
                )
            self.records.append(key)
        if not self.records:
            raise DatasetNotFoundError(
                f"FlyingChairs2: no '*-img_1.png' with '-img_0.png' and '-flow_10.flo' in {folder}"
            )

    def _load(self, key) -> dict:
        base = self.folder
        flow_10 = flowio.read_flo(base / f"{key}-flow_10.flo")
        occ_path = base / f"{key}-occ_10.png"
        if occ_path.is_file():
            valid = torch.from_numpy(~read_mask(occ_path))
        else:
            flow_01 = flowio.read_flo(base / f"{key}-flow_01.flo")
            valid = consistency_mask(
                torch.from_numpy(flow_10).permute(2, 0, 1)[None], torch.from_numpy(flow_01).permute(2, 0, 1)[None]
            )[0, 0] > 0.5
        mb_path = base / f"{key}-mb_10.png"
        if self.use_motion_boundaries and mb_path.is_file():
            valid &= torch.from_numpy(~read_mask(mb_path))
        current = read_image(base / f"{key}-img_1.png")
        previous = read_image(base / f"{key}-img_0.png")
        return make_sample(current, previous, flow_10, valid, f"flyingchairs2/{self.split}/{key}-img_1->img_0")


# ==============================================================================================================
# The user's own videos: estimated flow, cached on disk
# ==============================================================================================================

#: Bump when the cache file format changes; old caches are then ignored.
CACHE_VERSION = 1


def find_clips(source) -> list[Path]:
    """Video files and frame folders under ``source`` (a clip, a frame folder, a folder of them, or a list).

    A frame folder is a folder that directly holds image files. Returns sorted, de-duplicated paths.
    """
    sources = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    clips: list[Path] = []
    for item in sources:
        path = Path(item).expanduser()
        if path.is_file():
            if path.suffix.lower() not in VIDEO_SUFFIXES:
                raise UserInputError(f"{path} is not a video file ({', '.join(VIDEO_SUFFIXES)})")
            clips.append(path)
        elif path.is_dir():
            if _is_frame_folder(path):
                clips.append(path)
                continue
            for child in sorted(path.iterdir()):
                if child.is_file() and child.suffix.lower() in VIDEO_SUFFIXES:
                    clips.append(child)
                elif child.is_dir() and _is_frame_folder(child):
                    clips.append(child)
        else:
            raise UserInputError(
                f"video source {path} does not exist; pass a video file, a frame folder or a folder of clips"
            )
    unique = sorted({c.resolve() for c in clips})
    if not unique:
        raise UserInputError(
            f"no clips found in {source}: expected video files ({', '.join(VIDEO_SUFFIXES)}) or folders of frames"
        )
    return unique


def _frame_images(folder: Path) -> list[Path]:
    """The files of ``folder`` that :func:`reconet_lib.video.read_frames` reads as frames."""
    from .video import FRAME_SUFFIXES

    return [
        f for f in folder.iterdir() if f.suffix.lower() in FRAME_SUFFIXES and not f.name.startswith(".") and f.is_file()
    ]


def _is_frame_folder(path: Path) -> bool:
    return bool(_frame_images(path))


def _fingerprint(clip: Path) -> dict:
    """Path, size and modification time of a clip (for frame folders: over its frame files)."""
    if clip.is_file():
        stat = clip.stat()
        return {"path": str(clip), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    stats = [f.stat() for f in _frame_images(clip)]
    return {
        "path": str(clip),
        "size": sum(s.st_size for s in stats),
        "mtime_ns": max((s.st_mtime_ns for s in stats), default=0),
        "files": len(stats),
    }


class VideoFolderPairs(Dataset):
    """Pairs from the user's own videos, with optical flow estimated once and cached on disk.

    For consecutive kept frames t-1, t of each clip: current = t, previous = t-1, flow = the estimated flow
    t -> t-1, valid = the forward-backward check of the two estimated directions
    (:func:`reconet_lib.estimate.estimate_flows_and_valid`, called with frame_a = t, frame_b = t-1).

    The cache holds one compressed ``.npz`` per pair (uint8 frames, float32 flow, uint8 valid) in a folder per
    clip, named by a hash of the clip's path, size and modification time plus ``method``, ``size``, ``stride``
    and ``max_pairs``; a ``manifest.json`` written last marks a clip as complete. All writes are atomic.
    :meth:`prepare` fills the cache (with a progress bar); ``len()`` and indexing call it if needed, so call it
    yourself before training to keep estimation out of the training loop. ``__getitem__`` only reads the cache.

    Args:
        source: a video file, a frame folder, a folder of clips (mp4/mov/avi/mkv/webm) and/or frame folders,
            or a list of these.
        cache_dir: cache folder (default ``data_dir()/cache/video_pairs``).
        method: flow estimator, ``"dis"`` (offline) or a RAFT variant (see :mod:`reconet_lib.estimate`).
        size: frame size for :func:`reconet_lib.video.read_frames`: ``(h, w)``, an int (longer side, aspect
            kept) or None (as stored).
        stride: keep every ``stride``-th frame (pairs are frames ``t - stride``, ``t``).
        max_pairs: at most this many pairs per clip (None: all).
        augment, seed: see :class:`SintelPairs`.
        device: where the estimator runs (RAFT); estimate_options: further keywords for the estimator.
        batch_size: pairs estimated at once. progress: show a ``tqdm.auto`` bar in :meth:`prepare`.
    """

    def __init__(
        self,
        source,
        cache_dir=None,
        *,
        method: str = "dis",
        size: int | tuple[int, int] | None = None,
        stride: int = 1,
        max_pairs: int | None = None,
        augment: PairAugment | None = None,
        seed: int = 0,
        device=None,
        estimate_options: dict | None = None,
        batch_size: int = 8,
        progress: bool = True,
    ) -> None:
        from .estimate import METHODS

        if method not in METHODS:
            raise UserInputError(
                f"VideoFolderPairs: unknown flow method {method!r}; choose one of {', '.join(METHODS)}"
            )
        if int(stride) != stride or stride < 1:
            raise UserInputError(f"VideoFolderPairs: stride must be a positive integer; got {stride!r}")
        if max_pairs is not None and (int(max_pairs) != max_pairs or max_pairs < 1):
            raise UserInputError(f"VideoFolderPairs: max_pairs must be a positive integer or None; got {max_pairs!r}")
        if cache_dir is None:
            from .config import data_dir

            cache_dir = data_dir() / "cache" / "video_pairs"
        self.clips = find_clips(source)
        self.cache_dir = Path(cache_dir).expanduser()
        self.method, self.stride, self.max_pairs = method, int(stride), max_pairs
        if size is not None and not isinstance(size, int):
            size = flowio.size_pair(size, "VideoFolderPairs")
        self.size = size
        self.augment, self.seed = augment, int(seed)
        self.device, self.estimate_options = device, dict(estimate_options or {})
        self.batch_size, self.progress = max(1, int(batch_size)), progress
        self.records: list[tuple[str, int, str]] | None = None

    # ---------------------------------------------------------------------------------------------- cache keys
    def clip_key(self, clip: Path) -> str:
        """The cache folder name of ``clip``: a hash of its fingerprint and the estimation settings."""
        settings = {
            "version": CACHE_VERSION,
            "clip": _fingerprint(clip),
            "method": self.method,
            "size": self.size,
            "stride": self.stride,
            "max_pairs": self.max_pairs,
        }
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]
        return f"{clip.stem[:40]}-{digest}"

    def _manifest(self, key: str) -> dict | None:
        path = self.cache_dir / key / "manifest.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    # ---------------------------------------------------------------------------------------------- building
    def prepare(self) -> "VideoFolderPairs":
        """Estimate and cache every clip that is not cached yet, then build the index. Returns ``self``."""
        records = []
        for clip in self.clips:
            key = self.clip_key(clip)
            manifest = self._manifest(key)
            if manifest is None:
                manifest = self._build_clip(clip, key)
            records.extend((key, i, name) for i, name in enumerate(manifest["names"]))
        if not records:
            raise UserInputError(f"VideoFolderPairs: no clip in {[str(c) for c in self.clips]} has two frames or more")
        self.records = records
        return self

    def _build_clip(self, clip: Path, key: str) -> dict:
        from tqdm.auto import tqdm

        from . import estimate, video

        folder = self.cache_dir / key
        names: list[str] = []
        pending: list[tuple[np.ndarray, np.ndarray, str]] = []
        bar = tqdm(desc=f"flow {clip.name}", unit="pair", disable=not self.progress, total=self.max_pairs)

        def flush() -> None:
            current = torch.stack([image_to_tensor(c) for c, _, _ in pending])
            previous = torch.stack([image_to_tensor(p) for _, p, _ in pending])
            options = dict(self.estimate_options)
            if self.device is not None:
                options["device"] = self.device
            flow, _, valid = estimate.estimate_flows_and_valid(current, previous, method=self.method, **options)
            flow, valid = flow.float().cpu().numpy(), (valid.cpu().numpy()[:, 0] >= 1).astype(np.uint8)
            for j, (c, p, name) in enumerate(pending):
                arrays = {"current": c, "previous": p, "flow": flow[j], "valid": valid[j]}
                with atomic_output(folder / f"pair_{len(names):06d}.npz") as handle:
                    np.savez_compressed(handle, **arrays)
                names.append(name)
                bar.update(1)
            pending.clear()

        previous_frame, previous_index = None, None
        label = clip.name
        for index, frame in enumerate(video.read_frames(clip, size=self.size)):
            if index % self.stride:
                continue
            frame = np.ascontiguousarray(frame, dtype=np.uint8)
            if previous_frame is not None:
                pending.append((frame, previous_frame, f"video/{label}/{index:06d}->{previous_index:06d}"))
                if len(pending) >= self.batch_size:
                    flush()
            previous_frame, previous_index = frame, index
            if self.max_pairs is not None and len(names) + len(pending) >= self.max_pairs:
                break
        if pending:
            flush()
        bar.close()
        if not names:
            warnings.warn(f"VideoFolderPairs: {clip} has fewer than two frames; skipped", stacklevel=3)
        manifest = {
            "source": str(clip), "method": self.method, "size": self.size, "stride": self.stride, "names": names
        }
        atomic_write_text(folder / "manifest.json", json.dumps(manifest, indent=1))
        return manifest

    # ---------------------------------------------------------------------------------------------- reading
    def __len__(self) -> int:
        if self.records is None:
            self.prepare()
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for VideoFolderPairs of length {n}")
        index %= n
        key, i, name = self.records[index]
        with np.load(self.cache_dir / key / f"pair_{i:06d}.npz") as data:
            flow = data["flow"].transpose(1, 2, 0)  # stored (2, H, W)
            sample = make_sample(data["current"], data["previous"], flow, data["valid"], name)
        if self.augment is not None:
            sample = self.augment(sample, sample_generator(self.seed, index))
        return sample


# ==============================================================================================================
# Mixtures
# ==============================================================================================================


class MixedPairs(Dataset):
    """Draw samples from several pair datasets by weight.

    Index ``i`` picks a source with probability ``weight / sum(weights)`` and a uniform index inside it, both
    from ``numpy.random.default_rng((seed, i))``: the same index always gives the same sample (before each
    source's own augmentation). Sources of different frame sizes need an augmentation with a fixed ``size``
    or ``crop`` to be batched together.

    Args:
        sources: ``[(dataset, weight), ...]`` with positive weights and non-empty datasets.
        length: the number of indices (an "epoch").
        seed: seeds the choices.
    """

    def __init__(self, sources, length: int, seed: int = 0) -> None:
        sources = list(sources)
        if not sources:
            raise UserInputError("MixedPairs needs at least one (dataset, weight) source")
        weights = []
        for item in sources:
            try:
                dataset, weight = item
            except (TypeError, ValueError):
                raise UserInputError(f"MixedPairs sources are (dataset, weight) pairs; got {item!r}") from None
            if not (float(weight) > 0 and math.isfinite(float(weight))):
                raise UserInputError(f"MixedPairs weights must be positive numbers; got {weight!r}")
            if len(dataset) == 0:
                raise UserInputError(f"MixedPairs: source {type(dataset).__name__} is empty")
            weights.append(float(weight))
        if int(length) != length or length < 1:
            raise UserInputError(f"MixedPairs length must be a positive integer; got {length!r}")
        self.datasets = [d for d, _ in sources]
        self.probabilities = np.asarray(weights) / sum(weights)
        self.length, self.seed = int(length), int(seed)

    def __len__(self) -> int:
        return self.length

    def choice(self, index: int) -> tuple[int, int]:
        """``(source number, index in that source)`` that index ``index`` reads."""
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, int(index)])
        source = int(rng.choice(len(self.datasets), p=self.probabilities))
        return source, int(rng.integers(len(self.datasets[source])))

    def __getitem__(self, index: int) -> dict:
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for MixedPairs of length {self.length}")
        source, inner = self.choice(index % self.length)
        return self.datasets[source][inner]


# ==============================================================================================================
# Loader
# ==============================================================================================================


def default_num_workers(cuda: bool | None = None) -> int:
    """Loader worker processes: ``min(4, cpus)`` with CUDA; on the CPU ``min(2, cpus - 1)`` (0 on 1-2 cores),
    so that loading does not compete with the training step for the few cores."""
    cuda = torch.cuda.is_available() if cuda is None else cuda
    cpus = os.cpu_count() or 1
    if cuda:
        return min(4, cpus)
    return 0 if cpus <= 2 else min(2, cpus - 1)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed numpy and ``random`` from the worker's torch seed."""
    import random

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(
    dataset,
    batch_size: int,
    *,
    shuffle: bool = True,
    num_workers: int | None = None,
    pin_memory: bool | None = None,
    seed: int = 0,
    distributed: bool = False,
    drop_last: bool = False,
) -> DataLoader:
    """A ``DataLoader`` over a pair dataset, batching samples to ``current (B, 3, H, W)``, ``previous``,
    ``flow (B, 2, H, W)``, ``valid (B, 1, H, W)`` and ``name`` (a list of B strings).

    Args:
        dataset: a pair dataset (all samples of one size, e.g. through ``PairAugment(crop=...)``).
        batch_size: samples per batch.
        shuffle: reshuffle every epoch (with the seeded generator).
        num_workers: worker processes (default :func:`default_num_workers`); workers persist across epochs.
        pin_memory: page-locked batches for fast GPU copies (default: when CUDA is available).
        seed: seeds the shuffling generator, hence (through torch's worker seeding) the workers' augmentation.
        distributed: shard the dataset with ``DistributedSampler`` (each process of an initialised process
            group reads its own part; call ``loader.sampler.set_epoch(epoch)`` every epoch).
        drop_last: drop the last incomplete batch.
    """
    if int(batch_size) != batch_size or batch_size < 1:
        raise UserInputError(f"make_loader: batch_size must be a positive integer; got {batch_size!r}")
    if isinstance(dataset, VideoFolderPairs) and dataset.records is None:
        dataset.prepare()  # estimate flow here, in the main process, never in workers or the training step
    workers = default_num_workers() if num_workers is None else int(num_workers)
    pin = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
    generator = torch.Generator().manual_seed(int(seed))
    sampler = None
    if distributed:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=int(seed), drop_last=drop_last)
    return DataLoader(
        dataset,
        batch_size=int(batch_size),
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin,
        drop_last=drop_last,
        persistent_workers=workers > 0,
        worker_init_fn=seed_worker if workers > 0 else None,
        generator=generator,
    )
