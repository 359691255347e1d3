"""The training data as a function of ``(seed, step)``: the dataset of a config, the sample stream, the batches of a
step, and the one loader that reads them.

Sample number ``n`` is the dataset item at position ``n % len`` of a permutation seeded by ``(seed, epoch)``, with
its augmentation drawn from a ``torch.Generator`` seeded by ``(seed, n)`` and handed to the dataset
(:func:`reconet_lib.data.read_pair`). Step ``s`` reads fixed sample numbers (:class:`StepBatches`). Nothing
depends on a loader's internal state, on worker processes or on torch's global RNG, which is why a resumed run
sees the very same data as an uninterrupted one.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from .. import data
from ..errors import UserInputError
from ..pairs import PairAugment
from ..video_pairs import VideoFolderPairs
from .config import TrainConfig


def _mix(*numbers: int) -> int:
    """A 63-bit seed derived from integers (``numpy.random.SeedSequence``)."""
    state = np.random.SeedSequence([int(n) & 0xFFFFFFFF for n in numbers] + [len(numbers)]).generate_state(2, np.uint32)
    return (int(state[0]) << 31 | int(state[1])) & (2**63 - 1)


class SampleStream(torch.utils.data.Dataset):
    """An endless, reproducible stream of pair samples: sample number ``n`` is a function of ``(seed, n)`` only.

    Epoch ``e = n // len(dataset)`` visits the dataset in the order of a permutation seeded by ``(seed, e)``.
    The dataset's augmentation draws from a ``torch.Generator`` seeded by ``(seed, n)``, passed to it explicitly
    (:func:`reconet_lib.data.read_pair`); torch's global RNG is neither read nor changed. Whether the sample is
    read in the main process or a loader worker, first or after a resume, it comes out the same.
    """

    def __init__(self, dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, int(seed)
        self.epoch_length = len(dataset)
        if self.epoch_length == 0:
            raise UserInputError("the training data holds no pairs")
        self._order: tuple[int, torch.Tensor] | None = None

    def __len__(self) -> int:  # a DataLoader needs a length; the stream itself is endless
        return 2**62

    def index_of(self, n: int) -> int:
        """The dataset index that sample number ``n`` reads."""
        epoch, position = divmod(int(n), self.epoch_length)
        if self._order is None or self._order[0] != epoch:
            generator = torch.Generator().manual_seed(_mix(self.seed, epoch, 1))
            self._order = (epoch, torch.randperm(self.epoch_length, generator=generator))
        return int(self._order[1][position])

    def generator(self, n: int) -> torch.Generator:
        """The generator sample number ``n``'s augmentation draws from (a fresh one, seeded by ``(seed, n)``)."""
        return torch.Generator().manual_seed(_mix(self.seed, n, 2))

    def __getitem__(self, n: int) -> dict:
        return data.read_pair(self.dataset, self.index_of(n), self.generator(n))


class StepBatches(torch.utils.data.Sampler):
    """Batches of sample numbers: step ``s`` (1-based) of process ``rank`` reads samples
    ``((s - 1) * world_size + rank) * batch_size + j`` for ``j < batch_size``.

    Steps ``first_step .. last_step`` are produced; starting at a later step is all a resume needs.
    """

    def __init__(self, first_step: int, last_step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        self.first_step, self.last_step = int(first_step), int(last_step)
        self.batch_size, self.rank, self.world_size = int(batch_size), int(rank), int(world_size)

    def __len__(self) -> int:
        return max(0, self.last_step - self.first_step + 1)

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.first_step, self.last_step + 1):
            start = ((step - 1) * self.world_size + self.rank) * self.batch_size
            yield list(range(start, start + self.batch_size))


def build_dataset(config: TrainConfig):
    """The training dataset of ``config``: one pair dataset, or a :class:`~reconet_lib.data.MixedPairs` of several.

    Every source gets the same :class:`~reconet_lib.pairs.PairAugment` (resize, scale, crop, flip), so that all
    samples share the crop size. Missing folders raise the dataset's own error (a ``FileNotFoundError`` and
    ``UserInputError`` that says where to get the data). Own videos (``kind="videos"``) get their flow estimated
    and cached here, before training (:class:`reconet_lib.video_pairs.VideoFolderPairs`).
    """
    augment = PairAugment(size=config.resize, crop=config.crop, flip_probability=config.flip,
                          scale_range=config.scale_range)
    datasets = [(_source_dataset(i, source, augment, config.seed + i), source["weight"])
                for i, source in enumerate(config.data)]
    if len(datasets) == 1:
        return datasets[0][0]
    length = sum(len(d) for d, _ in datasets)
    return data.MixedPairs(datasets, length=length, seed=config.seed)


def _source_dataset(i: int, source: dict, augment, seed: int):
    """The dataset of ``TrainConfig.data[i]``."""
    kind, path, options = source["kind"], source["path"], dict(source["options"])
    if kind == "videos":
        options.setdefault("progress", False)
        dataset_class = VideoFolderPairs
    else:
        if path is not None and not Path(path).expanduser().exists():
            raise data.DatasetNotFoundError(f"{kind} data folder {path} does not exist; check --data / TrainConfig.data[{i}]")
        dataset_class = {"synthetic": data.SyntheticPairs, "sintel": data.SintelPairs,
                         "sceneflow": data.SceneFlowPairs, "chairs2": data.FlyingChairs2Pairs}[kind]
        if kind == "synthetic":
            options.setdefault("direction", "both")
            if path is None:
                options.setdefault("quick", None)
    try:
        dataset = dataset_class(path, augment=augment, seed=seed, **options)
    except TypeError as exc:
        raise UserInputError(f"TrainConfig.data[{i}].options do not fit {dataset_class.__name__}: {exc}") from None
    if kind == "videos":
        dataset.prepare()
    notice = enlargement_notice(source, dataset, augment)
    if notice:
        print(notice)
    return dataset


def enlargement_notice(source: dict, dataset, augment) -> str:
    """One line saying that ``source``'s frames are smaller than the crop and get enlarged ("" when they fit).

    Judged on the source's first pair as stored (its augmentation switched off for that one read), after
    ``TrainConfig.resize``; a random ``scale_range`` below 1 that the crop then undoes is not counted.
    """
    if augment.crop is None or len(dataset) == 0:
        return ""
    kept, dataset.augment = dataset.augment, None
    try:
        height, width = dataset.pair(0)["current"].shape[-2:]
    finally:
        dataset.augment = kept
    factor = augment.enlargement(height, width)
    if factor <= 1.0:
        return ""
    (ch, cw), where = augment.crop, f" {source['path']}" if source.get("path") else ""
    height, width = augment.size or (height, width)
    size = f"{width}x{height}" + (" (resized)" if augment.size else "")
    return (f"notice: the {source['kind']} data{where} has {size} frames, smaller than the {cw}x{ch} crop: pairs are "
            f"enlarged {factor:.2f}x (bilinear) before cropping; pass --crop {min(cw, width)}x{min(ch, height)} "
            "or smaller to train at the data's own scale")


def default_num_workers(cuda: bool | None = None) -> int:
    """Loader worker processes: ``min(4, cpus)`` with CUDA; on the CPU ``min(2, cpus - 1)`` (0 on 1-2 cores),
    so that loading does not compete with the training step for the few cores."""
    cuda = torch.cuda.is_available() if cuda is None else cuda
    cpus = os.cpu_count() or 1
    if cuda:
        return min(4, cpus)
    return 0 if cpus <= 2 else min(2, cpus - 1)


def make_step_loader(stream: SampleStream, first_step: int, last_step: int, batch_size: int, *,
                     rank: int = 0, world_size: int = 1, num_workers: int = 0, pin_memory: bool = False):
    """The one training loader: a ``DataLoader`` that yields the batches of steps ``first_step .. last_step``.

    Each batch holds ``current (B, 3, H, W)``, ``previous``, ``flow (B, 2, H, W)``, ``valid (B, 1, H, W)`` (float32)
    and ``name`` (a list of B strings); which samples is fixed by :class:`StepBatches`, and each sample by
    :class:`SampleStream`, so the batches do not depend on ``num_workers``.
    """
    return torch.utils.data.DataLoader(
        stream,
        batch_sampler=StepBatches(first_step, last_step, batch_size, rank, world_size),
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,
        prefetch_factor=4 if num_workers > 0 else None,
    )
