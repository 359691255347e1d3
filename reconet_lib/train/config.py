"""The training run's configuration: :class:`TrainConfig`, its data sources, and config files (JSON/YAML).

Every field carries its command-line help in ``metadata["help"]``; the ``train`` command builds its options
from these fields (:mod:`reconet_lib.train.command`), so a default is written once, here.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from .. import config as settings
from ..errors import UserInputError, first_line
from ..files import atomic_write_text
from ..losses import LossWeights
from ..precision import PRECISIONS

#: Dataset kinds a data source may name, and the class that reads each (see :func:`~.sampling.build_dataset`).
DATA_KINDS = ("synthetic", "sintel", "sceneflow", "chairs2", "videos")
LR_SCHEDULES = ("constant", "cosine", "step")
#: Config fields that must agree between a checkpoint and the config that resumes it.
RESUME_FIELDS = (
    "style", "style_size", "data", "resize", "crop", "flip", "scale_range", "batch_size", "model", "loss", "seed",
    "vgg_weights", "init",
)
CONFIG_NAME = "config.json"


def _default_data() -> list[dict]:
    return [{"kind": "synthetic"}]


def _help(text: str, **more) -> dict:
    return {"help": text, **more}


@dataclass
class TrainConfig:
    """Everything a training run needs, as plain values (saved with every checkpoint as a dict).

    Sizes are ``(height, width)`` in pixels (on the command line ``WxH``). Paths are strings.

    Attributes:
        style: a catalog style name (:func:`reconet_lib.styles.list_styles`) or the path of an image.
        style_size: the style image is resized to this longer side before its Gram matrices are taken (None: as is).
        data: data sources, each ``{"kind": one of DATA_KINDS, "path": folder, "weight": w, "options": {...}}``.
            ``path`` is required except for ``synthetic`` (default: the generated dataset of this mode); ``weight``
            (default 1) sets how often a source is drawn when there are several; ``options`` are passed as keyword
            arguments to the dataset class (e.g. ``{"passes": ["clean", "final"]}`` for Sintel). ``"root"`` is
            accepted as another name for ``"path"``.
        resize: resize every pair to ``(h, w)`` before cropping (None: keep the dataset's size).
        crop: random crop ``(h, w)`` the network trains on. Data smaller than the crop is enlarged first (bilinear,
            aspect kept), and training says so in a one-line notice naming the source and a crop that fits.
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
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` (autocast) or ``"fp16"`` (autocast + gradient scaler, CUDA);
            decided by :func:`reconet_lib.precision.training_precision`.
        grad_clip: clip the gradient's global L2 norm to this value (None: no clipping).
        max_nonfinite: stop after this many consecutive steps with a non-finite loss or gradient.
        seed: seeds the model's initialisation and the data order.
        init: the path of a checkpoint whose network weights start the run instead of a random initialisation
            (fine-tuning, e.g. a per-frame model fine-tuned with the temporal losses); it must hold the same
            network (``model``). The optimiser and the schedule start afresh; a resumed run ignores it (its
            checkpoint holds the weights).
        output: folder for checkpoints, ``log.jsonl`` and ``config.json``.
        checkpoint_every: write a checkpoint every this many steps (0: only at the end).
        keep_last: keep this many ``step_*.pt`` checkpoints (``last.pt`` is always kept).
        log_every: write a ``log.jsonl`` line every this many steps.
        num_workers: data loader worker processes (None: :func:`~reconet_lib.train.sampling.default_num_workers`).
        device: ``"cuda"``, ``"cuda:1"``, ``"cpu"`` ... (None: CUDA if available; see
            :func:`reconet_lib.precision.parse_device`).
    """

    style: str = field(default="mosaic", metadata=_help("catalog style name or image path"))
    style_size: int | None = field(default=512, metadata=_help("longer side of the style image in pixels (none: as is)",
                                                               metavar="N"))
    data: list[dict] = field(default_factory=_default_data, metadata=_help(
        "training data; repeat to mix sources by weight. KIND: " + ", ".join(DATA_KINDS)
        + " (e.g. synthetic, sintel:/data/Sintel/training, videos:/my/clips@0.5)", metavar="KIND[:PATH][@WEIGHT]"))
    resize: tuple[int, int] | None = field(default=None, metadata=_help(
        "resize pairs to exactly WxH before cropping (none: keep)", metavar="WxH"))
    crop: tuple[int, int] = field(default=(256, 256), metadata=_help(
        "training crop, exactly WxH (data smaller than this is enlarged to fit, with a notice)", metavar="WxH"))
    flip: float = field(default=0.5, metadata=_help("probability of a horizontal flip of a pair", metavar="P"))
    scale_range: tuple[float, float] = field(default=(1.0, 1.0), metadata=_help(
        "random rescaling factor range before the crop", metavar="LOW,HIGH"))
    batch_size: int = field(default=2, metadata=_help("pairs per step and process", metavar="B"))
    steps: int = field(default=20000, metadata=_help("total optimisation steps", metavar="N"))
    lr: float = field(default=1e-3, metadata=_help("Adam learning rate"))
    lr_schedule: str = field(default="constant", metadata=_help("learning-rate schedule", choices=LR_SCHEDULES))
    lr_min_factor: float = field(default=0.01, metadata=_help("cosine schedule: final rate as a fraction of --lr",
                                                              metavar="F"))
    lr_step_every: int = field(default=10000, metadata=_help("step schedule: steps between rate drops", metavar="N"))
    lr_step_gamma: float = field(default=0.1, metadata=_help("step schedule: factor of each drop", metavar="G"))
    loss: LossWeights = field(default_factory=LossWeights, metadata=_help("loss weights"))
    model: str | dict = field(default="paper", metadata=_help("network preset: paper, demo or tiny", flag="--preset",
                                                              metavar="PRESET"))
    vgg_weights: str | None = field(default="imagenet", metadata=_help(
        "loss network weights: imagenet (torchvision VGG-16), random (tests and offline demos only) or a "
        "state-dict file", metavar="imagenet|random|PATH"))
    precision: str = field(default="auto", metadata=_help(
        "auto (bf16/fp16 on GPU, fp32 on CPU), fp32, bf16, fp16", choices=PRECISIONS))
    grad_clip: float | None = field(default=None, metadata=_help("clip the gradient norm to NORM (none: no clipping)",
                                                                 metavar="NORM"))
    max_nonfinite: int = field(default=20, metadata=_help("stop after N consecutive non-finite steps", metavar="N"))
    seed: int = field(default=0, metadata=_help("seed of the initialisation and the data order"))
    init: str | None = field(default=None, metadata=_help(
        "start from the network weights of this checkpoint (fine-tuning; optimiser and schedule start afresh)",
        metavar="CKPT"))
    output: str = field(default="runs/reconet", metadata=_help("folder for checkpoints and logs", metavar="DIR",
                                                               short="-o"))
    checkpoint_every: int = field(default=1000, metadata=_help("checkpoint every N steps (0: only at the end)",
                                                               metavar="N"))
    keep_last: int = field(default=3, metadata=_help("keep the last K step checkpoints", metavar="K"))
    log_every: int = field(default=10, metadata=_help("log line every N steps", metavar="N"))
    num_workers: int | None = field(default=None, metadata=_help(
        "data loader workers (none: by device and CPU count)", metavar="N"))
    device: str | None = field(default=None, metadata=_help("auto, cpu, cuda or cuda:N (none: cuda if available)"))

    def __post_init__(self) -> None:
        self.validate()

    # ----------------------------------------------------------------------------------------------- checks
    def validate(self) -> TrainConfig:
        """Check and normalise every field; a bad value raises UserInputError naming the field. Returns self."""
        check = _FieldCheck(self)
        if not isinstance(self.style, (str, os.PathLike)) or not str(self.style):
            raise check.bad("style", "a catalog style name or the path of an image")
        self.style = os.fspath(self.style)
        check.integer("style_size", 16, optional=True)
        self.data = normalize_sources(self.data)
        check.size("resize", optional=True)
        check.size("crop")
        check.number("flip", 0.0, 1.0)
        try:
            low, high = (float(v) for v in self.scale_range)
        except (TypeError, ValueError):
            raise check.bad("scale_range", "a pair (low, high) of positive numbers") from None
        if not (0 < low <= high < math.inf):
            raise check.bad("scale_range", "a pair (low, high) with 0 < low <= high")
        self.scale_range = (low, high)
        check.integer("batch_size", 1)
        check.integer("steps", 1)
        check.number("lr", 0.0, open_low=True)
        check.choice("lr_schedule", LR_SCHEDULES)
        check.number("lr_min_factor", 0.0, 1.0)
        check.integer("lr_step_every", 1)
        check.number("lr_step_gamma", 0.0, 1.0, open_low=True)
        if isinstance(self.loss, Mapping):
            self.loss = LossWeights.from_dict(self.loss)
        if not isinstance(self.loss, LossWeights):
            raise check.bad("loss", "a LossWeights or a dict of its fields")
        if isinstance(self.model, Mapping):
            self.model = json.loads(json.dumps(dict(self.model)))
        elif not isinstance(self.model, str) or not self.model:
            raise check.bad("model", "a preset name ('paper', 'demo', 'tiny') or a ReCoNetConfig dict")
        if self.vgg_weights is not None:
            if not isinstance(self.vgg_weights, (str, os.PathLike)) or not str(self.vgg_weights):
                raise check.bad("vgg_weights", "'imagenet', None (random weights) or the path of a VGG-16 state dict")
            self.vgg_weights = os.fspath(self.vgg_weights)
            if self.vgg_weights.lower() in ("random", "none"):
                self.vgg_weights = None
        check.choice("precision", PRECISIONS)
        check.number("grad_clip", 0.0, optional=True, open_low=True)
        check.integer("max_nonfinite", 1)
        check.integer("seed", 0)
        if self.init is not None:
            if not isinstance(self.init, (str, os.PathLike)) or not str(self.init):
                raise check.bad("init", "None or the path of a checkpoint to start from")
            self.init = os.fspath(self.init)
        if not isinstance(self.output, (str, os.PathLike)) or not str(self.output):
            raise check.bad("output", "a folder path")
        self.output = os.fspath(self.output)
        check.integer("checkpoint_every", 0)
        check.integer("keep_last", 1)
        check.integer("log_every", 1)
        check.integer("num_workers", 0, optional=True)
        if self.device is not None:  # the name itself is judged by precision.parse_device when training starts
            if not isinstance(self.device, (str, torch.device)):
                raise check.bad("device", "'auto', 'cuda', 'cuda:N', 'cpu' or None")
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
        return settings.from_dict(cls, values, "TrainConfig")

    def save(self, path: str | os.PathLike) -> Path:
        """Write the config as JSON (``.json``) or YAML (``.yaml`` / ``.yml``), atomically."""
        path = Path(path)
        fmt = _config_format(path)
        if fmt == "json":
            text = json.dumps(self.to_dict(), indent=2) + "\n"
        else:
            text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        atomic_write_text(path, text)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrainConfig:
        """Read a config written by :meth:`save` (JSON or YAML by the file extension).

        Raises:
            FileNotFoundError: no such file.
            UserInputError: not UTF-8 text, not valid JSON/YAML, empty (no field set), or bad field values.
        """
        path = Path(path)
        fmt = _config_format(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise UserInputError(f"{path} is not UTF-8 text (byte {exc.start}); save the config as UTF-8") from None
        try:
            if fmt == "json":
                values = json.loads(text) if text.strip() else None
            else:
                values = yaml.safe_load(text)
        except Exception as exc:  # JSON and YAML syntax errors
            raise UserInputError(f"{path} is not valid {fmt.upper()}: {first_line(exc)}") from None
        if values is None or (isinstance(values, Mapping) and not values):
            raise UserInputError(
                f"{path} is empty: it sets no field, so every default would be used; write the fields to change "
                "(e.g. steps: 20000) or leave out --config"
            )
        return cls.from_dict(values)


class _FieldCheck:
    """Checks of one :class:`TrainConfig`'s fields that normalise them in place (ints, floats, sizes)."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    def bad(self, name: str, what: str) -> UserInputError:
        return UserInputError(f"TrainConfig.{name} must be {what}; got {getattr(self.config, name)!r}")

    def choice(self, name: str, choices: Sequence[str]) -> None:
        if getattr(self.config, name) not in choices:
            raise self.bad(name, f"one of {', '.join(choices)}")

    def integer(self, name: str, low: int, *, optional: bool = False) -> None:
        value = getattr(self.config, name)
        if optional and value is None:
            return
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise self.bad(name, f"an integer >= {low}" + (" or None" if optional else ""))
        setattr(self.config, name, int(value))

    def number(self, name: str, low: float, high: float = math.inf, *, optional: bool = False,
               open_low: bool = False) -> None:
        value = getattr(self.config, name)
        if optional and value is None:
            return
        ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        ok = ok and math.isfinite(value) and (value > low if open_low else value >= low) and value <= high
        if not ok:
            lower = f"> {low}" if open_low else f">= {low}"
            raise self.bad(name, f"a number {lower}" + (f" and <= {high}" if high < math.inf else ""))
        setattr(self.config, name, float(value))

    def size(self, name: str, *, optional: bool = False) -> None:
        value = getattr(self.config, name)
        if optional and value is None:
            return
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            value = (value, value)
        try:
            h, w = (int(v) for v in value)
            if any(isinstance(v, bool) or int(v) != v for v in value):
                raise ValueError
        except (TypeError, ValueError):
            raise self.bad(name, "a size (height, width) in pixels") from None
        if h < 8 or w < 8:
            raise self.bad(name, "a size (height, width) of at least 8 x 8 pixels")
        setattr(self.config, name, (h, w))


def _config_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    raise UserInputError(f"config file {path} must end in .json, .yaml or .yml")


# ==============================================================================================================
# Data sources
# ==============================================================================================================


def normalize_sources(sources) -> list[dict]:
    """Check data sources and bring them to ``{"kind", "path", "weight", "options"}`` dicts.

    Accepts a single source or a list; a source is a dict or a string ``KIND[:PATH][@WEIGHT]``
    (see :func:`parse_data_spec`).
    """
    if isinstance(sources, (str, Mapping)):
        sources = [sources]
    if not isinstance(sources, Sequence) or not sources:
        raise UserInputError(f"TrainConfig.data must be a non-empty list of data sources; got {sources!r}")
    return [_normalize_source(i, source) for i, source in enumerate(sources)]


def _normalize_source(i: int, source) -> dict:
    if isinstance(source, str):
        source = parse_data_spec(source)
    if not isinstance(source, Mapping):
        raise UserInputError(f"TrainConfig.data[{i}] must be a dict with 'kind' (and 'path'); got {source!r}")
    source = dict(source)
    if "root" in source:
        if source.get("path") not in (None, source["root"]):
            raise UserInputError(f"TrainConfig.data[{i}] has both 'root' and 'path'; give one")
        source["path"] = source.pop("root")
    unknown = sorted(str(k) for k in set(source) - {"kind", "path", "weight", "options"})
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
    return {"kind": kind, "path": path, "weight": float(weight), "options": json.loads(json.dumps(dict(options)))}


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
