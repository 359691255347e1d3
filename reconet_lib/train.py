"""Training ReCoNet: configuration, the training loop, checkpoints, resuming, logging and the ``train`` command.

One training step takes a batch of frame pairs (``current``, ``previous``, ``flow`` current -> previous,
``valid``; see ``docs/design.md``), runs the network on both frames and minimises the paper's total loss over
the pair (:func:`reconet_lib.losses.pair_losses`): content, style and total-variation terms on both frames plus
the feature-map and output temporal terms once per pair. The optimiser is Adam.

What the loop takes care of:

* **Mixed precision**: ``precision="auto"`` uses bf16 autocast on GPUs that support it (Ampere and newer), fp16
  autocast with a gradient scaler on older GPUs (a Colab T4) and float32 on the CPU. The losses themselves are
  computed in float32.
* **A non-finite guard**: a step whose loss or gradient is NaN/inf is skipped (no parameter update) and counted;
  after ``max_nonfinite`` such steps in a row training stops with :class:`TrainingDivergedError`.
* **Checkpoints** every ``checkpoint_every`` steps and at the end: ``step_0001000.pt`` and a copy ``last.pt``,
  written atomically, the oldest ones deleted beyond ``keep_last``. They hold the model, optimiser, scheduler,
  gradient scaler, step, RNG states, data position, config, style name and style sha256, all as tensors and plain
  Python types so that ``torch.load(..., weights_only=True)`` reads them. ``reconet_lib.load_model(path)``
  turns any of them into a ready-to-run model.
* **Exact resuming**: the data a step sees is a function of ``(seed, step)`` only (:class:`SampleStream`,
  :class:`StepBatches`), never of a loader's internal state. So ``resume=True`` after an interruption at any
  step continues the very same loss trajectory (bit-identical on the CPU in float32).
* **Logging**: every ``log_every`` steps one JSON line with every loss term (weighted and raw, averaged over the
  steps since the last line) is appended to ``<output>/log.jsonl``; :func:`plot_losses` draws it.
* **Several GPUs**: started with ``torchrun --nproc_per_node N -m reconet_lib train ...`` the same code wraps the
  model in ``DistributedDataParallel`` (NCCL on CUDA, Gloo on the CPU); each process reads its own share of the
  samples and process 0 alone writes checkpoints and logs.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import random
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from . import losses
from .errors import ReconetError, UserInputError
from .files import atomic_write_text
from .losses import LOSS_TERMS, LossWeights

#: Dataset kinds a data source may name, and the class that reads each (see :func:`build_dataset`).
DATA_KINDS = ("synthetic", "sintel", "sceneflow", "chairs2", "videos")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
LR_SCHEDULES = ("constant", "cosine", "step")
#: Config fields that must agree between a checkpoint and the config that resumes it.
RESUME_FIELDS = (
    "style", "style_size", "data", "resize", "crop", "flip", "scale_range", "batch_size", "model", "loss", "seed",
    "vgg_weights",
)
CHECKPOINT_PATTERN = re.compile(r"^step_(\d{7,})\.pt$")
LOG_NAME = "log.jsonl"
CONFIG_NAME = "config.json"
LAST_NAME = "last.pt"
LOCK_NAME = ".train.lock"


class TrainingDivergedError(ReconetError):
    """Too many consecutive training steps had a non-finite loss or gradient; the message says what to try."""


# ==============================================================================================================
# Configuration
# ==============================================================================================================


def _default_data() -> list[dict]:
    return [{"kind": "synthetic"}]


@dataclass
class TrainConfig:
    """Everything a training run needs, as plain values (saved with every checkpoint as a dict).

    Sizes are ``(height, width)`` in pixels. Paths are strings.

    Attributes:
        style: a catalog style name (:func:`reconet_lib.styles.list_styles`) or the path of an image.
        style_size: the style image is resized to this longer side before its Gram matrices are taken (None: as is).
        data: data sources, each ``{"kind": one of DATA_KINDS, "path": folder, "weight": w, "options": {...}}``.
            ``path`` is required except for ``synthetic`` (default: the generated dataset of this mode); ``weight``
            (default 1) sets how often a source is drawn when there are several; ``options`` are passed as keyword
            arguments to the dataset class (e.g. ``{"passes": ["clean", "final"]}`` for Sintel). ``"root"`` is
            accepted as another name for ``"path"``.
        resize: resize every pair to ``(h, w)`` before cropping (None: keep the dataset's size).
        crop: random crop ``(h, w)`` the network trains on (a smaller sample is enlarged first).
        flip: probability of a horizontal flip of a pair.
        scale_range: random rescaling factor range ``(low, high)`` applied before the crop.
        batch_size: pairs per step (per process when training on several GPUs).
        steps: total number of optimisation steps.
        lr: Adam learning rate.
        lr_schedule: ``"constant"``, ``"cosine"`` (down to ``lr * lr_min_factor`` at the last step) or ``"step"``
            (multiply by ``lr_step_gamma`` every ``lr_step_every`` steps).
        loss: the :class:`~reconet_lib.losses.LossWeights` (alpha, beta, gamma, lambda_f, lambda_o, layers).
        model: a preset name of :class:`reconet_lib.network.ReCoNetConfig` (``"paper"``, ``"demo"``, ``"tiny"``)
            or a full ``ReCoNetConfig`` dict.
        vgg_weights: ``"imagenet"`` (torchvision's VGG-16), None (seeded random weights: tests and offline demos
            only) or the path of a VGG-16 state dict.
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` (autocast) or ``"fp16"`` (autocast + gradient scaler, CUDA).
        grad_clip: clip the gradient's global L2 norm to this value (None: no clipping).
        max_nonfinite: stop after this many consecutive steps with a non-finite loss or gradient.
        seed: seeds the model's initialisation and the data order.
        output: folder for checkpoints, ``log.jsonl`` and ``config.json``.
        checkpoint_every: write a checkpoint every this many steps (0: only at the end).
        keep_last: keep this many ``step_*.pt`` checkpoints (``last.pt`` is always kept).
        log_every: write a ``log.jsonl`` line every this many steps.
        num_workers: data loader worker processes (None: :func:`reconet_lib.data.default_num_workers`).
        device: ``"cuda"``, ``"cuda:1"``, ``"cpu"`` ... (None: CUDA if available).
    """

    style: str = "mosaic"
    style_size: int | None = 512
    data: list[dict] = field(default_factory=_default_data)
    resize: tuple[int, int] | None = None
    crop: tuple[int, int] = (256, 256)
    flip: float = 0.5
    scale_range: tuple[float, float] = (1.0, 1.0)
    batch_size: int = 2
    steps: int = 20000
    lr: float = 1e-3
    lr_schedule: str = "constant"
    lr_min_factor: float = 0.01
    lr_step_every: int = 10000
    lr_step_gamma: float = 0.1
    loss: LossWeights = field(default_factory=LossWeights)
    model: str | dict = "paper"
    vgg_weights: str | None = "imagenet"
    precision: str = "auto"
    grad_clip: float | None = None
    max_nonfinite: int = 20
    seed: int = 0
    output: str = "runs/reconet"
    checkpoint_every: int = 1000
    keep_last: int = 3
    log_every: int = 10
    num_workers: int | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    # ----------------------------------------------------------------------------------------------- checks
    def validate(self) -> TrainConfig:
        """Check and normalise every field; a bad value raises UserInputError naming the field. Returns self."""

        def bad(name: str, what: str) -> UserInputError:
            return UserInputError(f"TrainConfig.{name} must be {what}; got {getattr(self, name)!r}")

        def integer(name: str, low: int, *, optional: bool = False) -> None:
            value = getattr(self, name)
            if optional and value is None:
                return
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise bad(name, f"an integer >= {low}" + (" or None" if optional else ""))
            setattr(self, name, int(value))

        def number(name: str, low: float, high: float = math.inf, *, optional: bool = False, open_low=False) -> None:
            value = getattr(self, name)
            if optional and value is None:
                return
            ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
            ok = ok and math.isfinite(value) and (value > low if open_low else value >= low) and value <= high
            if not ok:
                lower = f"> {low}" if open_low else f">= {low}"
                raise bad(name, f"a number {lower}" + (f" and <= {high}" if high < math.inf else ""))
            setattr(self, name, float(value))

        def size(name: str, *, optional: bool = False) -> None:
            value = getattr(self, name)
            if optional and value is None:
                return
            if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
                value = (value, value)
            try:
                h, w = (int(v) for v in value)
                if any(isinstance(v, bool) or int(v) != v for v in value):
                    raise ValueError
            except (TypeError, ValueError):
                raise bad(name, "a size (height, width) in pixels") from None
            if h < 8 or w < 8:
                raise bad(name, "a size (height, width) of at least 8 x 8 pixels")
            setattr(self, name, (h, w))

        if not isinstance(self.style, (str, os.PathLike)) or not str(self.style):
            raise bad("style", "a catalog style name or the path of an image")
        self.style = os.fspath(self.style)
        integer("style_size", 16, optional=True)
        self.data = normalize_sources(self.data)
        size("resize", optional=True)
        size("crop")
        number("flip", 0.0, 1.0)
        try:
            low, high = (float(v) for v in self.scale_range)
        except (TypeError, ValueError):
            raise bad("scale_range", "a pair (low, high) of positive numbers") from None
        if not (0 < low <= high < math.inf):
            raise bad("scale_range", "a pair (low, high) with 0 < low <= high")
        self.scale_range = (low, high)
        integer("batch_size", 1)
        integer("steps", 1)
        number("lr", 0.0, open_low=True)
        if self.lr_schedule not in LR_SCHEDULES:
            raise bad("lr_schedule", f"one of {', '.join(LR_SCHEDULES)}")
        number("lr_min_factor", 0.0, 1.0)
        integer("lr_step_every", 1)
        number("lr_step_gamma", 0.0, 1.0, open_low=True)
        if isinstance(self.loss, Mapping):
            self.loss = _loss_weights_from_dict(self.loss)
        if not isinstance(self.loss, LossWeights):
            raise bad("loss", "a LossWeights or a dict of its fields")
        if isinstance(self.model, Mapping):
            self.model = json.loads(json.dumps(dict(self.model)))
        elif not isinstance(self.model, str) or not self.model:
            raise bad("model", "a preset name ('paper', 'demo', 'tiny') or a ReCoNetConfig dict")
        if self.vgg_weights is not None:
            if not isinstance(self.vgg_weights, (str, os.PathLike)) or not str(self.vgg_weights):
                raise bad("vgg_weights", "'imagenet', None (random weights) or the path of a VGG-16 state dict")
            self.vgg_weights = os.fspath(self.vgg_weights)
            if self.vgg_weights in ("random", "none", "None"):
                self.vgg_weights = None
        if self.precision not in PRECISIONS:
            raise bad("precision", f"one of {', '.join(PRECISIONS)}")
        number("grad_clip", 0.0, optional=True, open_low=True)
        integer("max_nonfinite", 1)
        integer("seed", 0)
        if not isinstance(self.output, (str, os.PathLike)) or not str(self.output):
            raise bad("output", "a folder path")
        self.output = os.fspath(self.output)
        integer("checkpoint_every", 0)
        integer("keep_last", 1)
        integer("log_every", 1)
        integer("num_workers", 0, optional=True)
        if self.device is not None:
            if not isinstance(self.device, (str, torch.device)):
                raise bad("device", "'cuda', 'cuda:N', 'cpu' or None")
            try:
                torch.device(self.device)
            except (RuntimeError, TypeError):
                raise bad("device", "'cuda', 'cuda:N', 'cpu' or None") from None
            self.device = str(self.device)
        return self

    # ----------------------------------------------------------------------------------------------- I/O
    def to_dict(self) -> dict:
        """A JSON-ready dict of plain values (tuples become lists, the loss weights a nested dict)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["loss"] = dataclasses.asdict(self.loss)
        return json.loads(json.dumps(values))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build a config from :meth:`to_dict`'s output (or any subset of its keys: the rest keep their defaults)."""
        if not isinstance(values, Mapping):
            raise UserInputError(f"a training config must be a mapping of field names to values; got {type(values).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise UserInputError(f"unknown TrainConfig fields {unknown}; known fields: {', '.join(sorted(names))}")
        return cls(**dict(values))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the config as JSON (``.json``) or YAML (``.yaml`` / ``.yml``), atomically."""
        path = Path(path)
        fmt = _config_format(path)
        if fmt == "json":
            text = json.dumps(self.to_dict(), indent=2) + "\n"
        else:
            import yaml

            text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        atomic_write_text(path, text)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrainConfig:
        """Read a config written by :meth:`save` (JSON or YAML by the file extension)."""
        path = Path(path)
        fmt = _config_format(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        text = path.read_text(encoding="utf-8")
        try:
            if fmt == "json":
                values = json.loads(text)
            else:
                import yaml

                values = yaml.safe_load(text)
        except Exception as exc:  # JSON and YAML syntax errors
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserInputError(f"{path} is not valid {fmt.upper()}: {first}") from None
        return cls.from_dict(values or {})


def _config_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    raise UserInputError(f"config file {path} must end in .json, .yaml or .yml")


def _loss_weights_from_dict(values: Mapping) -> LossWeights:
    names = {f.name for f in dataclasses.fields(LossWeights)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise UserInputError(f"unknown TrainConfig.loss fields {unknown}; known: {', '.join(sorted(names))}")
    return LossWeights(**dict(values))


def normalize_sources(sources) -> list[dict]:
    """Check data sources and bring them to ``{"kind", "path", "weight", "options"}`` dicts.

    Accepts a single source or a list; a source is a dict or a string ``KIND[:PATH][@WEIGHT]``
    (see :func:`parse_data_spec`).
    """
    if isinstance(sources, (str, Mapping)):
        sources = [sources]
    if not isinstance(sources, Sequence) or not sources:
        raise UserInputError(f"TrainConfig.data must be a non-empty list of data sources; got {sources!r}")
    result = []
    for i, source in enumerate(sources):
        if isinstance(source, str):
            source = parse_data_spec(source)
        if not isinstance(source, Mapping):
            raise UserInputError(f"TrainConfig.data[{i}] must be a dict with 'kind' (and 'path'); got {source!r}")
        source = dict(source)
        if "root" in source:
            if source.get("path") not in (None, source["root"]):
                raise UserInputError(f"TrainConfig.data[{i}] has both 'root' and 'path'; give one")
            source["path"] = source.pop("root")
        unknown = sorted(set(source) - {"kind", "path", "weight", "options"})
        if unknown:
            raise UserInputError(f"TrainConfig.data[{i}] has unknown keys {unknown}; use kind, path, weight, options")
        kind = source.get("kind")
        if kind not in DATA_KINDS:
            raise UserInputError(f"TrainConfig.data[{i}].kind must be one of {', '.join(DATA_KINDS)}; got {kind!r}")
        path = source.get("path")
        if path is not None:
            if not isinstance(path, (str, os.PathLike)) or not str(path):
                raise UserInputError(f"TrainConfig.data[{i}].path must be a folder path; got {path!r}")
            path = os.fspath(path)
        elif kind != "synthetic":
            raise UserInputError(f"TrainConfig.data[{i}] ({kind}) needs a 'path': the dataset's folder")
        weight = source.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not (0 < weight < math.inf):
            raise UserInputError(f"TrainConfig.data[{i}].weight must be a positive number; got {weight!r}")
        options = source.get("options") or {}
        if not isinstance(options, Mapping):
            raise UserInputError(f"TrainConfig.data[{i}].options must be a dict of keyword arguments; got {options!r}")
        result.append({"kind": kind, "path": path, "weight": float(weight), "options": json.loads(json.dumps(dict(options)))})
    return result


def parse_data_spec(text: str) -> dict:
    """``"sintel:/data/Sintel/training@2"`` -> ``{"kind": "sintel", "path": "/data/...", "weight": 2.0}``.

    The form is ``KIND[:PATH][@WEIGHT]``; ``KIND`` is one of :data:`DATA_KINDS`. An ``@`` not followed by a
    number belongs to the path.
    """
    body, weight = text, 1.0
    head, at, tail = text.rpartition("@")
    if at:
        try:
            weight = float(tail)
            body = head
        except ValueError:
            pass
    kind, _, path = body.partition(":")
    kind = kind.strip().lower()
    if kind not in DATA_KINDS:
        raise UserInputError(
            f"--data {text!r}: unknown kind {kind!r}; use KIND[:PATH][@WEIGHT] with KIND one of {', '.join(DATA_KINDS)}"
        )
    return {"kind": kind, "path": path or None, "weight": weight}


# ==============================================================================================================
# Data: a sample order that depends on (seed, step) only
# ==============================================================================================================


def _mix(*numbers: int) -> int:
    """A 63-bit seed derived from integers (``numpy.random.SeedSequence``)."""
    state = np.random.SeedSequence([int(n) & 0xFFFFFFFF for n in numbers] + [len(numbers)]).generate_state(2, np.uint32)
    return (int(state[0]) << 31 | int(state[1])) & (2**63 - 1)


class SampleStream(torch.utils.data.Dataset):
    """An endless, reproducible stream of pair samples: sample number ``n`` is a function of ``(seed, n)`` only.

    Epoch ``e = n // len(dataset)`` visits the dataset in the order of a permutation seeded by ``(seed, e)``.
    The dataset's own augmentation draws its randomness from torch's global RNG, which is seeded by
    ``(seed, n)`` for the duration of that one ``__getitem__`` (and restored afterwards). Whether the sample is
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

    def __getitem__(self, n: int) -> dict:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_mix(self.seed, n, 2))
            return self.dataset[self.index_of(n)]


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

    Every source gets the same :class:`~reconet_lib.data.PairAugment` (resize, scale, crop, flip), so that all
    samples share the crop size. Missing folders raise the dataset's own error (a ``FileNotFoundError`` and
    ``UserInputError`` that says where to get the data).
    """
    from . import data

    augment = data.PairAugment(size=config.resize, crop=config.crop, flip_probability=config.flip, scale_range=config.scale_range)
    classes = {
        "synthetic": data.SyntheticPairs,
        "sintel": data.SintelPairs,
        "sceneflow": data.SceneFlowPairs,
        "chairs2": data.FlyingChairs2Pairs,
        "videos": data.VideoFolderPairs,
    }
    datasets = []
    for i, source in enumerate(config.data):
        options = dict(source["options"])
        kind, path = source["kind"], source["path"]
        if path is not None and kind != "videos" and not Path(path).expanduser().exists():
            raise data.DatasetNotFoundError(f"{kind} data folder {path} does not exist; check --data / TrainConfig.data[{i}]")
        if kind == "synthetic":
            options.setdefault("direction", "both")
            if path is None:
                options.setdefault("quick", None)
        if kind == "videos":
            options.setdefault("progress", False)
        try:
            dataset = classes[kind](path, augment=augment, seed=config.seed + i, **options)
        except TypeError as exc:
            raise UserInputError(f"TrainConfig.data[{i}].options do not fit {classes[kind].__name__}: {exc}") from None
        if kind == "videos":
            dataset.prepare()
        datasets.append((dataset, source["weight"]))
    if len(datasets) == 1:
        return datasets[0][0]
    length = sum(len(d) for d, _ in datasets)
    return data.MixedPairs(datasets, length=length, seed=config.seed)


def make_step_loader(stream: SampleStream, first_step: int, last_step: int, batch_size: int, *,
                     rank: int = 0, world_size: int = 1, num_workers: int = 0, pin_memory: bool = False):
    """A DataLoader that yields the batches of steps ``first_step .. last_step`` (see :class:`StepBatches`)."""
    from .data import seed_worker

    return torch.utils.data.DataLoader(
        stream,
        batch_sampler=StepBatches(first_step, last_step, batch_size, rank, world_size),
        num_workers=num_workers,
        pin_memory=pin_memory,
        worker_init_fn=seed_worker if num_workers > 0 else None,
        persistent_workers=False,
        prefetch_factor=4 if num_workers > 0 else None,
    )


# ==============================================================================================================
# Devices, precision, processes
# ==============================================================================================================


@dataclass
class _Processes:
    """This process's place in a (possibly single-process) training run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()


def _start_processes(device: torch.device) -> _Processes:
    """Join the process group that ``torchrun`` describes in the environment (NCCL on CUDA, Gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return _Processes()
    import torch.distributed as dist

    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        owns = True
    return _Processes(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), owns)


def resolve_device(config: TrainConfig) -> torch.device:
    """The device of ``config`` (CUDA when available by default; ``cuda:LOCAL_RANK`` under torchrun)."""
    from .config import default_device

    device = torch.device(config.device) if config.device else default_device()
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserInputError(f"TrainConfig.device is {config.device!r} but CUDA is not available; use --device cpu")
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        elif device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    return device


def resolve_precision(precision: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """``(autocast dtype or None for float32, whether a gradient scaler is needed)``.

    ``"auto"``: bf16 on CUDA GPUs of compute capability 8.0 or newer, fp16 with a scaler on older GPUs,
    float32 on the CPU. ``"fp16"`` needs CUDA.
    """
    if precision == "auto":
        if device.type != "cuda":
            return None, False
        precision = "bf16" if torch.cuda.get_device_capability(device) >= (8, 0) else "fp16"
    if precision == "fp32":
        return None, False
    if precision == "bf16":
        return torch.bfloat16, False
    if device.type != "cuda":
        raise UserInputError("precision 'fp16' needs a CUDA GPU; on the CPU use 'fp32' or 'bf16'")
    return torch.float16, True


def _precision_name(dtype: torch.dtype | None, scaler: bool) -> str:
    return "fp32" if dtype is None else ("fp16 + gradient scaler" if scaler else "bf16")


# ==============================================================================================================
# Model construction and the loss module
# ==============================================================================================================


def model_config_of(config: TrainConfig):
    """The :class:`~reconet_lib.network.ReCoNetConfig` that ``config.model`` names."""
    from .network import ReCoNetConfig

    try:
        if isinstance(config.model, str):
            return ReCoNetConfig.preset(config.model)
        return ReCoNetConfig.from_dict(config.model)
    except UserInputError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise UserInputError(f"TrainConfig.model {config.model!r} is not a preset or ReCoNetConfig dict: {exc}") from None


class PairLoss(nn.Module):
    """The network plus its frozen loss network: ``forward(batch)`` returns :func:`~reconet_lib.losses.pair_losses`.

    Wrapping both in one module lets ``DistributedDataParallel`` see the whole step as one forward pass.
    """

    def __init__(self, model: nn.Module, vgg: nn.Module, grams: dict[str, torch.Tensor], weights: LossWeights) -> None:
        super().__init__()
        self.model, self.vgg = model, vgg
        self.grams, self.weights = grams, weights

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return losses.pair_losses(self.model, self.vgg, batch, self.grams, self.weights)


class LRSchedule:
    """The learning rate as a function of the number of optimiser steps taken (set on the optimiser every step).

    ``constant``: ``lr``; ``cosine``: from ``lr`` down to ``lr * lr_min_factor`` at ``steps``; ``step``:
    ``lr * lr_step_gamma ** (taken // lr_step_every)``. Skipped (non-finite) steps advance it too, so the rate
    depends on the step number alone.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, config: TrainConfig) -> None:
        self.optimizer, self.config = optimizer, config
        self.taken = 0
        self._apply()

    def factor(self, taken: int) -> float:
        c = self.config
        if c.lr_schedule == "cosine":
            progress = min(taken, c.steps) / c.steps
            return c.lr_min_factor + (1 - c.lr_min_factor) * 0.5 * (1 + math.cos(math.pi * progress))
        if c.lr_schedule == "step":
            return c.lr_step_gamma ** (taken // c.lr_step_every)
        return 1.0

    def lr(self) -> float:
        return self.config.lr * self.factor(self.taken)

    def _apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr()

    def step(self) -> None:
        self.taken += 1
        self._apply()

    def state_dict(self) -> dict:
        return {"taken": self.taken, "schedule": self.config.lr_schedule, "lr": self.config.lr}

    def load_state_dict(self, state: Mapping) -> None:
        self.taken = int(state["taken"])
        self._apply()


def _style_identity(style: str) -> tuple[str, str]:
    """``(style name, sha256 of the style file)``: catalog name, or the file's stem and its digest."""
    from . import styles

    if style in styles.list_styles():
        return style, styles.style_sha256(style)
    path = Path(style).expanduser()
    if not path.is_file():
        raise UserInputError(
            f"style {style!r} is neither a catalog style ({', '.join(styles.list_styles())}) nor an image file"
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return path.stem, digest


# ==============================================================================================================
# Checkpoints
# ==============================================================================================================


def _rng_state() -> dict:
    """Every RNG state as tensors and plain values (readable with ``weights_only=True``)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(np_state[0]),
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": int(py_state[0]), "state": list(py_state[1]), "gauss": py_state[2]},
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
    }
    return state


def _set_rng_state(state: Mapping) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)


def checkpoint_files(output_dir: str | os.PathLike) -> list[Path]:
    """The ``step_*.pt`` checkpoints in ``output_dir``, oldest first."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), folder / name) for name in os.listdir(folder) if (m := CHECKPOINT_PATTERN.match(name))]
    return [path for _, path in sorted(found)]


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The checkpoint a resume starts from: ``last.pt`` if present, else the newest ``step_*.pt``, else None."""
    folder = Path(output_dir)
    if (folder / LAST_NAME).is_file():
        return folder / LAST_NAME
    files = checkpoint_files(folder)
    return files[-1] if files else None


def _prune(output_dir: Path, keep_last: int) -> None:
    for path in checkpoint_files(output_dir)[:-keep_last]:
        path.unlink(missing_ok=True)


# ==============================================================================================================
# Logging
# ==============================================================================================================


@contextmanager
def exclusive(path: str | os.PathLike, *, wait: bool):
    """Hold an exclusive lock on the file ``path`` (created if needed) for the ``with`` block.

    ``wait=False`` raises UserInputError at once if another process holds it. Where locks are not available
    (no ``fcntl``, or a file system without locks such as some network drives) the block runs unlocked.
    """
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise UserInputError(
                f"another process is training into {path.parent} right now; wait for it to finish or choose "
                "another output folder"
            ) from None
        except OSError:
            pass
        yield  # closing the file releases the lock


def read_log(source: str | os.PathLike) -> list[dict]:
    """The records of a ``log.jsonl`` (or of ``<folder>/log.jsonl``), in order."""
    path = Path(source)
    if path.is_dir():
        path = path / LOG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"training log {path} does not exist; train first (it is written every log_every steps)")
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                records.append(json.loads(line))
            except ValueError:  # a line cut short by a crash: ignore it
                continue
    return records


def _truncate_log(path: Path, last_step: int) -> None:
    """Keep only the records up to ``last_step`` (what a resume from that step must not repeat)."""
    if not path.is_file():
        return
    kept = [r for r in read_log(path) if r.get("step", 0) <= last_step]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


_LOGGED = ("total", *LOSS_TERMS, *(f"{t}_raw" for t in LOSS_TERMS))


class _Window:
    """Sums of the logged values since the last log line (part of the checkpoint, so resuming is exact)."""

    def __init__(self, state: Mapping | None = None) -> None:
        state = dict(state or {})
        self.sums = {k: float(v) for k, v in state.get("sums", {}).items()}
        self.count = int(state.get("count", 0))
        self.skipped = int(state.get("skipped", 0))
        self.grad_norm = float(state.get("grad_norm", 0.0))
        self.grad_count = int(state.get("grad_count", 0))

    def add(self, values: Mapping[str, float], grad_norm: float | None) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.count += 1
        if grad_norm is not None:
            self.grad_norm += grad_norm
            self.grad_count += 1

    def state(self) -> dict:
        return {"sums": dict(self.sums), "count": self.count, "skipped": self.skipped,
                "grad_norm": self.grad_norm, "grad_count": self.grad_count}


# ==============================================================================================================
# The training loop
# ==============================================================================================================


@dataclass
class TrainResult:
    """What :func:`train` did.

    Attributes:
        output_dir: the run's folder.
        checkpoint: ``last.pt`` if a checkpoint exists (None if the run stopped before its first one).
        step: steps completed in total (including those of earlier, resumed-from runs).
        start_step: the step this call started from (0, or the checkpoint's step when resuming).
        finished: whether ``config.steps`` were reached.
        skipped_steps: steps skipped by the non-finite guard during this call.
        history: the log records this call wrote.
        seconds: wall-clock time of this call's training loop.
    """

    output_dir: Path
    checkpoint: Path | None
    step: int
    start_step: int
    finished: bool
    skipped_steps: int
    history: list[dict]
    seconds: float

    @property
    def log_path(self) -> Path:
        return self.output_dir / LOG_NAME


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    verbose: bool = True,
) -> TrainResult:
    """Train ReCoNet as ``config`` says, writing checkpoints and ``log.jsonl`` to ``config.output``.

    Args:
        config: the :class:`TrainConfig`.
        resume: continue from the latest checkpoint in ``config.output`` (start afresh if there is none).
            Without it, a folder that already holds checkpoints is refused (so nothing is overwritten by mistake).
        progress: show a ``tqdm.auto`` progress bar (process 0 only).
        stop_after: stop after this many steps of this call without a final checkpoint, as an interruption
            would (for tests and demonstrations of resuming).
        verbose: print what is being trained (process 0, stdout).
    Returns:
        a :class:`TrainResult`.
    Raises:
        UserInputError / FileNotFoundError: bad config, missing data or style.
        TrainingDivergedError: ``config.max_nonfinite`` consecutive steps were non-finite.
    """
    config = TrainConfig.from_dict(config.to_dict())  # a private, validated copy
    if stop_after is not None and (int(stop_after) != stop_after or stop_after < 1):
        raise UserInputError(f"stop_after must be a positive number of steps or None; got {stop_after!r}")
    device = resolve_device(config)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    autocast_dtype, use_scaler = resolve_precision(config.precision, device)
    procs = _start_processes(device)
    try:
        with ExitStack() as locks:
            return _train(config, device, autocast_dtype, use_scaler, procs, resume, progress, stop_after, verbose,
                          locks)
    finally:
        if procs.owns_group:
            torch.distributed.destroy_process_group()


def _train(config, device, autocast_dtype, use_scaler, procs, resume, progress, stop_after, verbose,
           locks: ExitStack) -> TrainResult:
    from .checkpoint import load_checkpoint, model_checkpoint, save_checkpoint
    from .data import default_num_workers
    from .network import ReCoNet
    from .styles import load_style

    say = print if (verbose and procs.main) else (lambda *a, **k: None)
    output = Path(config.output).expanduser()
    style_name, style_sha = _style_identity(config.style)
    model_cfg = model_config_of(config)

    # Data first: a missing dataset should fail before anything is written. Process 0 prepares caches first.
    if not procs.main:
        procs.barrier()
    dataset = build_dataset(config)
    if procs.main:
        procs.barrier()
    stream = SampleStream(dataset, config.seed)

    # One training process per output folder: process 0 holds a lock on it until the run ends.
    if procs.main:
        locks.enter_context(exclusive(output / LOCK_NAME, wait=False))

    # Where do we start?
    payload = None
    existing = latest_checkpoint(output)
    if existing is not None and not resume:
        raise UserInputError(
            f"{output} already holds checkpoints ({existing.name}); pass resume=True (--resume) to continue that "
            "run, or choose another output folder"
        )
    if resume and existing is not None:
        payload = load_checkpoint(existing)
        _check_resumable(payload, config, style_sha, existing)
    start_step = int(payload["step"]) if payload is not None else 0
    if start_step > config.steps:
        raise UserInputError(f"the checkpoint {existing} is at step {start_step}, beyond TrainConfig.steps={config.steps}")

    # Model, loss network, style target (its Gram matrices are computed once, here).
    torch.manual_seed(config.seed)
    model = ReCoNet(model_cfg).to(device)
    model.train()
    vgg = losses.VGGFeatures(config.vgg_weights, layers=config.loss.vgg_layers, device=device, seed=config.seed)
    style_image = load_style(config.style, size=config.style_size, device=device)
    grams = losses.style_grams(vgg, style_image, list(config.loss.style_layer_weights))
    step_module = PairLoss(model, vgg, grams, config.loss)
    runner: nn.Module = step_module
    if procs.distributed:
        runner = nn.parallel.DistributedDataParallel(
            step_module, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False
        )

    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = LRSchedule(optimizer, config)
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    window = _Window()
    nonfinite = {"consecutive": 0, "total": 0}
    if payload is not None:
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        if use_scaler and payload.get("scaler"):
            scaler.load_state_dict(payload["scaler"])
        _set_rng_state(payload["rng"])
        window = _Window(payload.get("log_window"))
        nonfinite = {k: int(v) for k, v in payload.get("nonfinite", nonfinite).items()}
        previous_world = int(payload.get("data_state", {}).get("world_size", procs.world_size))
        if previous_world != procs.world_size:
            say(f"note: the checkpoint was written by {previous_world} process(es), this run has {procs.world_size}: "
                "the data order from here on differs from an uninterrupted run")

    log_path = output / LOG_NAME
    if procs.main:
        output.mkdir(parents=True, exist_ok=True)
        if payload is not None:
            _truncate_log(log_path, start_step)
        else:
            log_path.unlink(missing_ok=True)
        config.save(output / CONFIG_NAME)
    procs.barrier()

    workers = default_num_workers(device.type == "cuda") if config.num_workers is None else config.num_workers
    loader = make_step_loader(stream, start_step + 1, config.steps, config.batch_size, rank=procs.rank,
                              world_size=procs.world_size, num_workers=workers, pin_memory=device.type == "cuda")

    say(f"training ReCoNet ({config.model if isinstance(config.model, str) else 'custom'} preset, "
        f"{sum(p.numel() for p in model.parameters()):,} parameters) on {len(dataset)} pairs "
        f"({', '.join(s['kind'] for s in config.data)}), crop {config.crop[0]}x{config.crop[1]} (HxW), "
        f"batch {config.batch_size} x {procs.world_size} process(es), style {style_name!r}, VGG weights "
        f"{vgg.weights_source}, {_precision_name(autocast_dtype, use_scaler)} on {device}")
    if payload is not None:
        say(f"resuming from {existing} at step {start_step}")

    def save(step: int) -> Path | None:
        path = None
        procs.barrier()
        if procs.main:
            payload_out = model_checkpoint(model, style_name, style_sha, config.to_dict())
            payload_out.update(
                step=step,
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                scaler=scaler.state_dict() if use_scaler else {},
                rng=_rng_state(),
                data_state={"seed": config.seed, "next_sample": step * procs.world_size * config.batch_size,
                            "world_size": procs.world_size, "batch_size": config.batch_size},
                log_window=window.state(),
                nonfinite=dict(nonfinite),
                precision=_precision_name(autocast_dtype, use_scaler),
            )
            path = save_checkpoint(output / f"step_{step:07d}.pt", payload_out)
            save_checkpoint(output / LAST_NAME, payload_out)
            _prune(output, config.keep_last)
        procs.barrier()
        return path

    from tqdm.auto import tqdm

    bar = tqdm(total=config.steps, initial=start_step, desc="training", unit="step",
               disable=not (progress and procs.main), dynamic_ncols=True)
    autocast = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext())
    history: list[dict] = []
    step, skipped_here, consistent, saved_step = start_step, 0, True, start_step
    started = time.perf_counter()
    window_started = time.perf_counter()
    try:
        for batch in loader:
            batch = {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
            consistent = False
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                terms = runner(batch)
            total = terms["total"]
            scaler.scale(total).backward()
            if use_scaler:
                scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(
                model.parameters(), config.grad_clip if config.grad_clip is not None else float("inf")
            )
            values = torch.stack([terms[k].detach().float() for k in _LOGGED] + [grad_norm.detach().float()])
            if procs.distributed:
                torch.distributed.all_reduce(values)  # the sum; any non-finite rank makes it non-finite
                values = values / procs.world_size
            values = values.cpu().tolist()
            loss_ok, grad_ok = math.isfinite(values[0]), math.isfinite(values[-1])
            if loss_ok and (grad_ok or use_scaler):
                scaler.step(optimizer)  # with a scaler, inf gradients make it skip the update itself
                nonfinite["consecutive"] = 0
                window.add(dict(zip(_LOGGED, values[:-1])), values[-1] if grad_ok else None)
            else:
                optimizer.zero_grad(set_to_none=True)
                nonfinite["consecutive"] += 1
                nonfinite["total"] += 1
                window.skipped += 1
                skipped_here += 1
            if use_scaler:
                scaler.update()
            scheduler.step()
            step += 1
            consistent = True
            bar.update(1)

            diverged = nonfinite["consecutive"] >= config.max_nonfinite
            if step % config.log_every == 0 or step == config.steps or diverged:
                now = time.perf_counter()
                record = _log_record(step, window, scheduler, now - window_started, config.batch_size * procs.world_size)
                record["elapsed_s"] = now - started
                window = _Window()
                window_started = time.perf_counter()
                if procs.main:
                    with open(log_path, "a", encoding="utf-8") as handle:
                        handle.write(json.dumps(record) + "\n")
                    history.append(record)
                    if "total" in record:
                        bar.set_postfix(loss=f"{record['total']:.4g}", refresh=False)
            if diverged:
                bar.close()
                last = latest_checkpoint(output)
                raise TrainingDivergedError(
                    f"training stopped at step {step}: {nonfinite['consecutive']} steps in a row had a non-finite "
                    f"loss or gradient ({nonfinite['total']} in all) and were skipped. Last checkpoint: "
                    f"{last or 'none'}. Try a lower learning rate (--lr), gradient clipping (--grad-clip 1.0) or "
                    "--precision fp32/bf16"
                )
            if (config.checkpoint_every and step % config.checkpoint_every == 0) or step == config.steps:
                save(step)
                saved_step = step
            if stop_after is not None and step - start_step >= stop_after and step < config.steps:
                break
    except KeyboardInterrupt:
        # A checkpoint of the last completed step lets the run resume; skip it if the update was cut in half.
        if consistent and step > saved_step and not procs.distributed:
            say(f"\ninterrupted: saving step {step} so that resume=True continues from here")
            save(step)
        raise
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    last = output / LAST_NAME
    if step >= config.steps:
        say(f"done: {step} steps in {seconds:.1f} s; checkpoint {last}")
    return TrainResult(output, last if last.is_file() else None, step, start_step, step >= config.steps,
                       skipped_here, history, seconds)


def _log_record(step: int, window: _Window, scheduler, seconds: float, samples_per_step: int) -> dict:
    record: dict[str, Any] = {"step": step, "lr": scheduler.config.lr * scheduler.factor(step - 1)}  # lr of this step
    if window.count:
        record.update({k: v / window.count for k, v in window.sums.items()})
    if window.grad_count:
        record["grad_norm"] = window.grad_norm / window.grad_count
    record["skipped"] = window.skipped
    steps_in_window = window.count + window.skipped
    if seconds > 0 and steps_in_window:
        record["pairs_per_s"] = steps_in_window * samples_per_step / seconds
    return record


def _check_resumable(payload: Mapping, config: TrainConfig, style_sha: str, path: Path) -> None:
    stored = payload.get("train_config") or {}
    current = config.to_dict()
    different = [name for name in RESUME_FIELDS if name in stored and stored[name] != current[name]]
    if different:
        detail = "; ".join(f"{n}: checkpoint {stored[n]!r}, now {current[n]!r}" for n in different)
        raise UserInputError(
            f"cannot resume from {path}: the config differs in {', '.join(different)} ({detail}). Resume with the "
            f"run's own config ({path.parent / CONFIG_NAME}) or train into a new output folder"
        )
    if payload.get("style_sha256") != style_sha:
        raise UserInputError(f"cannot resume from {path}: the style image changed (sha256 differs)")


# ==============================================================================================================
# Plotting
# ==============================================================================================================


def plot_losses(source, *, raw: bool = False, terms: Sequence[str] | None = None, dpi: int = 75):
    """A figure of the logged loss terms against the step.

    Args:
        source: a ``log.jsonl``, a run folder, or ``{label: log or folder}`` to overlay several runs.
        raw: plot the unweighted terms (``<term>_raw``) instead of the weighted ones.
        terms: which terms (default ``total`` and the five terms of :data:`~reconet_lib.losses.LOSS_TERMS`).
        dpi: figure resolution.
    Returns:
        a ``matplotlib.figure.Figure`` (not registered with pyplot; display it or ``savefig`` it).
    """
    from matplotlib.figure import Figure

    runs = dict(source) if isinstance(source, Mapping) else {None: source}
    terms = list(terms) if terms is not None else ["total", *LOSS_TERMS]
    cols = min(3, len(terms))
    rows = math.ceil(len(terms) / cols)
    fig = Figure(figsize=(4.0 * cols, 2.8 * rows), dpi=dpi, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for (label, run) in runs.items():
        records = read_log(run)
        for ax, term in zip(axes, terms):
            key = term if (term == "total" or not raw) else f"{term}_raw"
            points = [(r["step"], r[key]) for r in records if key in r]
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, label=label)
    for ax, term in zip(axes, terms):
        ax.set_title(term if (term == "total" or not raw) else f"{term} (unweighted)", fontsize=10)
        ax.set_xlabel("step")
        values = [v for line in ax.get_lines() for v in line.get_ydata()]
        if values and min(values) > 0 and max(values) / min(values) > 20:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        if len(runs) > 1 and ax is axes[0]:
            ax.legend(fontsize=8)
    for ax in axes[len(terms):]:
        ax.set_visible(False)
    return fig


# ==============================================================================================================
# The tutorial's checkpoints
# ==============================================================================================================


def tutorial_config(quick: bool, device, *, temporal: bool = True, vgg_weights: str | None = "imagenet",
                    style: str = "mosaic", output: str | os.PathLike = "runs/tutorial") -> TrainConfig:
    """The training run the notebooks use: ReCoNet (``temporal=True``) or the per-frame baseline (lambda_f = lambda_o = 0).

    Quick (CPU): the ``tiny`` preset on the quick synthetic dataset, 64 x 64 crops, batch 2, 100 steps: 33 CPU
    seconds (one thread, measured), so about half a minute on two idle cores.

    Full (GPU): the ``paper`` preset on the full synthetic dataset, 256 x 256 crops, batch 4, 4000 steps with a
    cosine schedule, mixed precision. Not timed on a Colab T4 yet; from the arithmetic (about 2 TFLOP per step:
    0.9 for the network's forward and backward passes on 8 frames, 1.2 for VGG-16 up to relu4_3 on 8 outputs
    with gradients and 8 inputs without) expect roughly 0.2-0.3 s per step in fp16, i.e. 15-20 minutes.
    """
    weights = LossWeights()
    if not temporal:
        weights = dataclasses.replace(weights, lambda_f=0.0, lambda_o=0.0)
    device = torch.device(device)
    common = dict(style=style, loss=weights, vgg_weights=vgg_weights, seed=0, output=os.fspath(output),
                  device=str(device), num_workers=0 if quick else None, log_every=5 if quick else 25)
    if quick:
        return TrainConfig(data=[{"kind": "synthetic", "options": {"quick": True}}], model="tiny", style_size=256,
                           crop=(64, 64), batch_size=2, steps=100, lr=2e-3, checkpoint_every=50, keep_last=1,
                           precision="fp32", **common)
    return TrainConfig(data=[{"kind": "synthetic", "options": {"quick": False}}], model="paper", style_size=512,
                       crop=(256, 256), batch_size=4, steps=4000, lr=1e-3, lr_schedule="cosine",
                       checkpoint_every=500, keep_last=2, precision="auto", **common)


def _tutorial_style(quick: bool) -> str:
    """``candy`` when its file is at hand without a download (or a mirror is configured), else ``mosaic``."""
    from . import download, styles
    from .config import data_dir

    local = data_dir() / "styles" / "candy.jpg"
    if local.is_file() or os.environ.get(download.MIRROR_ENV):
        try:
            styles.style_path("candy")
            return "candy"
        except ReconetError:
            pass
    return "mosaic"


#: Part of the tutorial checkpoints' cache key: bump it to retrain them after a change of the training code.
TUTORIAL_VERSION = 2


def _finished(last: Path, steps: int) -> bool:
    from .checkpoint import load_checkpoint

    try:
        return last.is_file() and int(load_checkpoint(last).get("step", -1)) >= steps
    except ReconetError:
        return False


def ensure_tutorial_checkpoints(quick: bool, device, *, output_dir: str | os.PathLike | None = None,
                                progress: bool = False) -> dict[str, Path]:
    """The notebooks' two trained models, trained now if they are not cached yet.

    ``"reconet"``: ReCoNet with all five loss terms; ``"baseline"``: the same network, data and steps with
    ``lambda_f = lambda_o = 0`` (a per-frame style transfer network). Cached under
    ``data_dir()/"checkpoints"/("quick" | "full")/<name>-<config hash>/last.pt``; an interrupted run is resumed.
    VGG-16: the ImageNet weights if they are available offline, else seeded random weights (announced).

    Args:
        quick: quick mode (CPU sizes, see :func:`tutorial_config`).
        device: where to train.
        output_dir: cache folder instead of the default.
        progress: show progress bars.
    Returns:
        ``{"reconet": path, "baseline": path}`` of ``last.pt`` checkpoints.
    """
    from .config import data_dir

    folder = Path(output_dir) if output_dir is not None else data_dir() / "checkpoints" / ("quick" if quick else "full")
    vgg_weights = "imagenet" if losses.VGGFeatures.available("imagenet") else None
    if vgg_weights is None:
        print("ensure_tutorial_checkpoints: the ImageNet VGG-16 weights are not available offline, so the loss "
              "network uses RANDOM weights: the losses fall and the temporal terms work, but the 'style' is not "
              "a real painting's style. Put the weights in place (see reconet_lib.losses) for real results.")
    style = _tutorial_style(quick)
    result = {}
    for name, temporal in (("reconet", True), ("baseline", False)):
        config = tutorial_config(quick, device, temporal=temporal, vgg_weights=vgg_weights, style=style)
        identity = {k: v for k, v in config.to_dict().items() if k not in ("output", "device", "num_workers")}
        identity["tutorial_version"] = TUTORIAL_VERSION
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
        run_dir = folder / f"{name}-{digest}"
        config.output = os.fspath(run_dir)
        last = run_dir / LAST_NAME
        # Notebooks may run side by side: the first one trains, the others wait for it and reuse the result.
        with exclusive(folder / f".{run_dir.name}.lock", wait=True):
            if not _finished(last, config.steps):
                print(f"training the tutorial's {name!r} model ({'quick' if quick else 'full'} mode) into {run_dir}")
                train(config, resume=True, progress=progress, verbose=False)
        result[name] = last
    return result


# ==============================================================================================================
# Command line
# ==============================================================================================================


def _size_arg(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; give N (square) or HxW (e.g. 360x640)")
    h = int(match.group(1))
    w = int(match.group(2)) if match.group(2) is not None else h
    return h, w


def _optional_float(text: str) -> float | None:
    if text.lower() in ("none", "off", "0"):
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (or 'none')") from None


def add_train_command(subparsers) -> argparse.ArgumentParser:
    """Register ``reconet train`` on the command line's sub-parsers."""
    defaults = TrainConfig()
    parser = subparsers.add_parser(
        "train",
        help="train a ReCoNet on frame pairs (checkpoints, resume, several GPUs with torchrun)",
        description=(
            "Train a ReCoNet for one style on frame pairs with optical flow. Checkpoints (step_*.pt and last.pt) and "
            "log.jsonl go to --output; --resume continues an interrupted run exactly. Options override --config; "
            "without --config, --resume reuses the run's stored config.json. On several GPUs: "
            "torchrun --nproc_per_node N -m reconet_lib train ..."
        ),
    )
    a = parser.add_argument
    a("--config", metavar="FILE", help="start from this config (JSON or YAML); other options override it")
    a("--style", help=f"catalog style name or image path (default {defaults.style!r})")
    a("--style-size", type=int, metavar="N", help=f"longer side of the style image in pixels (default {defaults.style_size})")
    a("--data", action="append", metavar="KIND[:PATH][@WEIGHT]",
      help="training data; repeat to mix sources by weight. KIND: " + ", ".join(DATA_KINDS)
      + " (e.g. synthetic, sintel:/data/Sintel/training, videos:/my/clips@0.5). Default: synthetic")
    a("--size", type=_size_arg, metavar="N|HxW", help="training crop: N (square) or HxW, e.g. 360x640 (default 256)")
    a("--resize", type=_size_arg, metavar="N|HxW", help="resize pairs to this size before cropping (default: keep)")
    a("--batch-size", type=int, metavar="B", help=f"pairs per step and process (default {defaults.batch_size})")
    a("--steps", type=int, help=f"total optimisation steps (default {defaults.steps})")
    a("--lr", type=float, help=f"Adam learning rate (default {defaults.lr:g})")
    a("--lr-schedule", choices=LR_SCHEDULES, help="learning-rate schedule (default constant)")
    a("--preset", help="network preset: paper, demo or tiny (default paper)")
    a("--alpha", type=float, help=f"content loss weight (default {defaults.loss.alpha:g})")
    a("--beta", type=float, help=f"style loss weight (default {defaults.loss.beta:g})")
    a("--gamma", type=float, help=f"total-variation weight (default {defaults.loss.gamma:g})")
    a("--lambda-f", type=float, help=f"feature temporal loss weight (default {defaults.loss.lambda_f:g})")
    a("--lambda-o", type=float, help=f"output temporal loss weight (default {defaults.loss.lambda_o:g}); "
                                     "0 for both lambdas gives a per-frame baseline")
    a("--vgg-weights", metavar="imagenet|random|PATH",
      help="loss network weights: imagenet (torchvision VGG-16), random (tests only) or a state-dict file")
    a("--precision", choices=PRECISIONS, help="auto (bf16/fp16 on GPU, fp32 on CPU), fp32, bf16, fp16 (default auto)")
    a("--grad-clip", type=_optional_float, metavar="NORM", help="clip the gradient norm to NORM (default: none)")
    a("--max-nonfinite", type=int, metavar="N",
      help=f"stop after N consecutive non-finite steps (default {defaults.max_nonfinite})")
    a("--seed", type=int, help="seed of the initialisation and the data order (default 0)")
    a("--output", "-o", metavar="DIR", help=f"folder for checkpoints and logs (default {defaults.output})")
    a("--checkpoint-every", type=int, metavar="N", help=f"checkpoint every N steps (default {defaults.checkpoint_every})")
    a("--keep-last", type=int, metavar="K", help=f"keep the last K step checkpoints (default {defaults.keep_last})")
    a("--log-every", type=int, metavar="N", help=f"log line every N steps (default {defaults.log_every})")
    a("--num-workers", type=int, metavar="N", help="data loader workers (default: by device and CPU count)")
    a("--device", help="cuda, cuda:1, cpu (default: cuda if available)")
    a("--resume", action="store_true", help="continue from the latest checkpoint in --output")
    a("--save-config", metavar="FILE", help="write the resulting config to FILE (JSON/YAML) and exit")
    a("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_train_command)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` that the parsed ``train`` options describe."""
    stored = Path(args.output or TrainConfig().output) / CONFIG_NAME
    if args.config:
        values = TrainConfig.load(args.config).to_dict()
    elif args.resume and stored.is_file():
        values = TrainConfig.load(stored).to_dict()
    else:
        values = TrainConfig().to_dict()
    simple = {
        "style": args.style, "style_size": args.style_size, "crop": args.size, "resize": args.resize,
        "batch_size": args.batch_size, "steps": args.steps, "lr": args.lr, "lr_schedule": args.lr_schedule,
        "model": args.preset, "precision": args.precision, "max_nonfinite": args.max_nonfinite, "seed": args.seed,
        "output": args.output, "checkpoint_every": args.checkpoint_every, "keep_last": args.keep_last,
        "log_every": args.log_every, "num_workers": args.num_workers, "device": args.device,
    }
    values.update({k: v for k, v in simple.items() if v is not None})
    if args.grad_clip is not None:
        values["grad_clip"] = args.grad_clip
    if args.vgg_weights is not None:
        values["vgg_weights"] = None if args.vgg_weights.lower() in ("random", "none") else args.vgg_weights
    if args.data:
        values["data"] = [parse_data_spec(spec) for spec in args.data]
    for name, value in (("alpha", args.alpha), ("beta", args.beta), ("gamma", args.gamma),
                        ("lambda_f", args.lambda_f), ("lambda_o", args.lambda_o)):
        if value is not None:
            values["loss"][name] = value
    return TrainConfig.from_dict(values)


def run_train_command(args: argparse.Namespace) -> int:
    """``reconet train``: build the config, then train (or only save the config with ``--save-config``)."""
    config = config_from_args(args)
    if args.save_config:
        config.save(args.save_config)
        print(f"wrote {args.save_config}")
        return 0
    result = train(config, resume=args.resume, progress=not args.no_progress)
    return 0 if result.finished else 1
