"""Temporal pair datasets: MPI Sintel (and the project's synthetic data in its layout), Scene Flow, FlyingChairs2,
and mixtures of them.

Every dataset here yields one **pair sample** per index (``current``, ``previous``, ``flow`` current -> previous,
``valid``, ``name``; see :mod:`reconet_lib.pairs`, whose names are re-exported here). A ``DataLoader`` batches
samples into ``(B, ...)`` tensors; training reads them through :mod:`reconet_lib.train.sampling`.

Sources (see ``docs/conventions.md``, "The temporal pair"):

- :class:`SintelPairs` reads the MPI Sintel training layout (:mod:`reconet_lib.sintel`) **time-reversed**:
  current = frame k, previous = frame k+1, flow = the shipped flow k -> k+1, valid = 1 - occlusion of frame k.
  No flow is negated.
- :class:`SyntheticPairs` is the same reader over the project's generated dataset (exact ground truth,
  offline); it can also read the generator's backward flows forwards in time.
- :class:`SceneFlowPairs` (Monkaa, FlyingThings3D) and :class:`FlyingChairs2Pairs` ship backward flow and are
  read forwards: current = t, previous = t-1.
- :class:`MixedPairs` draws from several datasets by weight.
- The user's own videos: :class:`reconet_lib.video_pairs.VideoFolderPairs` (kept apart: it needs video decoding
  and flow estimation, this module needs neither).

Randomness is explicit: ``dataset.pair(index, generator)`` augments sample ``index`` with draws from
``generator``; ``dataset[index]`` uses a generator seeded by ``(seed, index)`` (the same sample every time).
:func:`read_pair` calls either kind of dataset. Nothing here reads or seeds torch's global RNG.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from . import flow as flowio
from . import sintel, synthetic
from .errors import UserInputError
from .pairs import (  # noqa: F401  (re-exported: the pair-sample names were defined here before)
    PAIR_KEYS,
    PairAugment,
    check_sample,
    hflip_pair,
    make_sample,
    random_crop_pair,
    resize_pair,
    sample_generator,
)
from .warp import consistency_mask

__all__ = [
    "DatasetNotFoundError", "FlyingChairs2Pairs", "IMAGE_SUFFIXES", "MixedPairs", "PairDataset", "SceneFlowPairs",
    "SintelPairs", "SyntheticPairs", "read_image", "read_pair",
    # re-exported from reconet_lib.pairs
    "PAIR_KEYS", "PairAugment", "check_sample", "hflip_pair", "make_sample", "random_crop_pair",
    "resize_pair", "sample_generator",
]

#: File suffixes treated as still frames (dataset images).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm", ".tif", ".tiff")
#: The one image reader of the datasets: an 8-bit file as a ``(3, H, W)`` float32 RGB tensor in [0, 1].
read_image = sintel.read_image


class DatasetNotFoundError(UserInputError, FileNotFoundError):
    """A dataset folder is missing or holds no usable data; the message says where to get it."""


def _white(path) -> np.ndarray:
    """A mask image (PNG, PGM, ...) as ``(H, W)`` bool, True where white: occluded, or a motion boundary."""
    return sintel.occluded_pixels(path)


def read_pair(dataset, index: int, generator: torch.Generator | None = None) -> dict:
    """Sample ``index`` of a pair dataset with its augmentation drawn from ``generator``.

    Datasets of this library (and any with a ``pair(index, generator)`` method) get the generator; any other
    map-style dataset is indexed as it is (``dataset[index]``).
    """
    pair = getattr(dataset, "pair", None)
    return pair(index, generator) if pair is not None else dataset[index]


class PairDataset(Dataset):
    """Base class: a list of records, a ``_load(record) -> sample`` and optional augmentation."""

    augment: PairAugment | None = None
    seed: int = 0
    records: list

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        return self.pair(index)

    def pair(self, index: int, generator: torch.Generator | None = None) -> dict:
        """Sample ``index``, augmented with draws from ``generator`` (default: :func:`sample_generator` of
        ``(seed, index)``)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {type(self).__name__} of length {len(self)}")
        index = index % len(self)
        sample = self._load(self.records[index])
        if self.augment is not None:
            sample = self.augment(sample, generator if generator is not None else sample_generator(self.seed, index))
        return sample

    def _load(self, record) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError


# ==============================================================================================================
# MPI Sintel layout (and the synthetic dataset written in it)
# ==============================================================================================================

SINTEL_DIRECTIONS = ("reversed", "forward", "both")


def _sintel_missing_message(root: Path, problem: str) -> str:
    return (
        f"MPI Sintel: {problem}. Expected the Sintel *training* folder with clean/<scene>/frame_0001.png, "
        f"flow/<scene>/frame_0001.flo and occlusions/<scene>/frame_0001.png. Get MPI-Sintel-complete with "
        f"reconet_lib.download.fetch('mpi_sintel') (registry key 'mpi_sintel') and pass its 'training' folder; "
        f"for an offline stand-in with exact ground truth use SyntheticPairs(). (root: {root})"
    )


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
        seed: augmentation seed when no generator is passed (see :func:`~reconet_lib.pairs.sample_generator`).
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
        if not (root / sintel.flow_folder(1)).is_dir() and (root / "training" / sintel.flow_folder(1)).is_dir():
            root = root / "training"
        if direction not in SINTEL_DIRECTIONS:
            raise UserInputError(f"SintelPairs: direction must be one of {SINTEL_DIRECTIONS}; got {direction!r}")
        if isinstance(passes, str):
            passes = (passes,)
        self.root, self.passes, self.direction = root, tuple(passes), direction
        self.augment, self.seed, self.source_name = augment, int(seed), source_name
        directions = ("reversed", "forward") if direction == "both" else (direction,)
        steps = {"reversed": 1, "forward": -1}  # previous = frame k + step; the flow k -> k + step is stored under k
        needed = {d: (sintel.flow_folder(step), sintel.occlusion_folder(step)) for d, step in steps.items()}
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
                numbers = set(sintel.frame_numbers(root / p / scene))
                for d in directions:
                    step = steps[d]
                    flow_dir = root / sintel.flow_folder(step) / scene
                    if not flow_dir.is_dir():
                        continue
                    flows = {f.name for f in os.scandir(flow_dir)}
                    for k in sorted(numbers):
                        if k + step in numbers and sintel.frame_name(k, ".flo") in flows:
                            self.records.append((p, scene, k, d))
        if not self.records:
            raise DatasetNotFoundError(
                _sintel_missing_message(root, f"no frame pairs with flow for passes {self.passes}, scenes {chosen}")
            )

    def _load(self, record) -> dict:
        p, scene, k, direction = record
        step = 1 if direction == "reversed" else -1  # previous = frame k + step; flow k -> k + step
        other = k + step
        current = sintel.read_image(sintel.image_path(self.root, p, scene, k))
        previous = sintel.read_image(sintel.image_path(self.root, p, scene, other))
        flow = sintel.read_flow(self.root, scene, k, step)
        valid = sintel.read_valid(self.root, scene, k, step)  # 1 - occlusion (and 1 - invalid/ for step +1)
        name = f"{self.source_name}/{p}/{scene}/frame_{k:04d}->frame_{other:04d}"
        return make_sample(current, previous, flow, valid[0], name)


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
            valid &= torch.from_numpy(~_white(root / "motion_boundaries" / rel / "into_past" / side / f"{stem}.pgm"))
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
            valid = torch.from_numpy(~_white(occ_path))
        else:
            flow_01 = flowio.read_flo(base / f"{key}-flow_01.flo")
            valid = consistency_mask(
                torch.from_numpy(flow_10).permute(2, 0, 1)[None], torch.from_numpy(flow_01).permute(2, 0, 1)[None]
            )[0, 0] > 0.5
        mb_path = base / f"{key}-mb_10.png"
        if self.use_motion_boundaries and mb_path.is_file():
            valid &= torch.from_numpy(~_white(mb_path))
        current = read_image(base / f"{key}-img_1.png")
        previous = read_image(base / f"{key}-img_0.png")
        return make_sample(current, previous, flow_10, valid, f"flyingchairs2/{self.split}/{key}-img_1->img_0")


# ==============================================================================================================
# Mixtures
# ==============================================================================================================


class MixedPairs(Dataset):
    """Draw samples from several pair datasets by weight.

    Index ``i`` picks a source with probability ``weight / sum(weights)`` and a uniform index inside it, both
    from ``numpy.random.default_rng((seed, i))``: the same index always gives the same source sample; its
    augmentation comes from the generator passed to :meth:`pair`. Sources of different frame sizes need an augmentation with a fixed ``size``
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
        return self.pair(index)

    def pair(self, index: int, generator: torch.Generator | None = None) -> dict:
        """Sample ``index``: the chosen source's sample, augmented from ``generator`` (see :func:`read_pair`)."""
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for MixedPairs of length {self.length}")
        source, inner = self.choice(index % self.length)
        return read_pair(self.datasets[source], inner, generator)
