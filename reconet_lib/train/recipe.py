"""The full-mode training recipe: ReCoNet trained on real frames, every value with where it comes from.

Quick mode (CPU) trains the tutorial's small models on generated scenes. Full mode trains the ``paper``
network on **real video**: MPI Sintel's training frames (downloaded and verified by
:func:`prepare_sintel`, read time-reversed with their exact flow and occlusions) and/or the user's own clips
with RAFT flow estimated once and cached. :data:`RECIPE` states each value and its source:

* ``paper``: ReCoNet (Gao et al. 2018) itself: the network, the five loss terms, training on frame pairs.
* ``fast_neural_style``: PyTorch's ``examples/fast_neural_style`` (Johnson et al. 2016 re-implemented):
  Adam with learning rate 1e-3, batch 4, 256 x 256 training images, the content/style weight ratio.
* ``ours``: chosen by this project, with the reason; change them freely.

The paper's own numeric hyper-parameters could not be consulted here (see :class:`reconet_lib.losses.LossWeights`),
so no value below claims to be the paper's unless marked so. The Colab time is an **estimate** from arithmetic,
not a measurement.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..config import data_dir
from ..download import extract
from ..errors import UserInputError
from ..losses import LossWeights
from ..resources import locate
from .config import TrainConfig


@dataclass(frozen=True)
class RecipeValue:
    """One setting of the recipe: the :class:`~reconet_lib.train.TrainConfig` field, its value, its source, why."""

    field: str
    value: object
    source: str  # "paper", "fast_neural_style" or "ours"
    why: str


RECIPE: tuple[RecipeValue, ...] = (
    RecipeValue("model", "paper", "paper", "the ReCoNet encoder-decoder as published (3.1 M parameters)"),
    RecipeValue("loss", "LossWeights()", "ours",
                "the five terms are the paper's; the weights' derivation (fast_neural_style's content/style ratio, "
                "temporal ratios of a public re-implementation) is in reconet_lib.losses.LossWeights"),
    RecipeValue("lr", 1e-3, "fast_neural_style", "Adam at 1e-3, as fast_neural_style trains its networks"),
    RecipeValue("batch_size", 4, "fast_neural_style", "4 pairs (8 frames) per step, fast_neural_style's batch"),
    RecipeValue("crop", (256, 256), "fast_neural_style", "fast_neural_style trains on 256 x 256 images"),
    RecipeValue("scale_range", (0.5, 1.0), "ours",
                "Sintel frames are 1024 x 436: rescaling by 0.5-1 before the crop shows whole objects, not only texture"),
    RecipeValue("flip", 0.5, "ours", "horizontal flips (the flow's u is negated with the image) double the motions seen"),
    RecipeValue("steps", 20000, "ours",
                "about 38 passes over Sintel's 2 x 1,041 training pairs (clean and final) at batch 4"),
    RecipeValue("lr_schedule", "cosine", "ours", "decays to 1 % of the rate, so the last steps refine"),
    RecipeValue("style", "candy", "ours", "the seed's style image, shown in every notebook"),
    RecipeValue("style_size", 512, "ours", "Grams of a 512-pixel style image: strokes at the scale of 256-pixel crops"),
    RecipeValue("vgg_weights", "imagenet", "paper", "the perceptual losses need a VGG-16 trained on ImageNet"),
    RecipeValue("precision", "auto", "ours", "mixed precision on the GPU (reconet_lib.precision decides)"),
)

#: Steps per second assumed for the Colab estimate (T4, fp16): about 2 TFLOP per step (network forward and
#: backward on 8 frames, VGG-16 to relu4_3 on 16 images) at roughly 8 TFLOP/s achieved. NOT measured.
_ESTIMATED_T4_SECONDS_PER_STEP = (0.2, 0.3)


def colab_time_estimate(steps: int = 20000) -> str:
    """The recipe's training time on a Colab T4, as a labelled estimate (arithmetic, not a measurement)."""
    low, high = (steps * s / 60.0 for s in _ESTIMATED_T4_SECONDS_PER_STEP)
    return (f"estimate, not measured: {low:.0f}-{high:.0f} minutes for {steps} steps on a Colab T4 "
            f"({_ESTIMATED_T4_SECONDS_PER_STEP[0]}-{_ESTIMATED_T4_SECONDS_PER_STEP[1]} s per step, from about "
            "2 TFLOP per step; data loading and checkpoints add to it)")


def prepare_sintel(*, allow_download: bool | None = None, progress: bool = True) -> Path:
    """MPI Sintel's ``training`` folder, downloaded (about 5.3 GB, registry key ``mpi_sintel``) and extracted once.

    The zip comes from the resource policy (:func:`reconet_lib.resources.locate`: cache, mirror, download
    unless ``RECONET_OFFLINE=1``) and is extracted safely into ``data_dir()/"sintel"``.

    Returns:
        The folder that holds ``clean/``, ``final/``, ``flow/`` and ``occlusions/`` (pass it to ``SintelPairs``).
    """
    archive = locate("mpi_sintel", allow_download=allow_download, progress=progress)
    target = extract(archive, data_dir() / "sintel")
    for candidate in (target / "training", *sorted(p / "training" for p in target.iterdir() if p.is_dir())):
        if (candidate / "flow").is_dir():
            return candidate
    raise UserInputError(f"{archive.name} extracted into {target} holds no training/flow folder; is it MPI-Sintel-complete?")


def full_recipe(
    *,
    sintel: str | os.PathLike | None = None,
    clips: str | os.PathLike | None = None,
    output: str | os.PathLike = "runs/reconet-full",
    device: str | None = None,
):
    """The full-mode :class:`~reconet_lib.train.TrainConfig`: the values of :data:`RECIPE` on real frames.

    Args:
        sintel: MPI Sintel's ``training`` folder (see :func:`prepare_sintel`); both passes are used.
        clips: a folder of your own videos (or frame folders); their flow is estimated with RAFT (large) once
            and cached, at 640 pixels on the longer side.
        output: run folder. device: as in ``TrainConfig``.
    Raises:
        UserInputError: neither ``sintel`` nor ``clips`` given (the recipe never falls back to generated scenes).
    """
    data = []
    if sintel is not None:
        data.append({"kind": "sintel", "path": os.fspath(sintel), "weight": 1.0,
                     "options": {"passes": ["clean", "final"]}})
    if clips is not None:
        data.append({"kind": "videos", "path": os.fspath(clips), "weight": 1.0,
                     "options": {"method": "raft", "size": 640}})
    if not data:
        raise UserInputError("full_recipe needs real frames: give sintel=prepare_sintel() and/or clips=<folder of videos>")
    values = {v.field: v.value for v in RECIPE if v.field != "loss"}
    return TrainConfig(data=data, loss=LossWeights(), output=os.fspath(output), device=device,
                       checkpoint_every=1000, keep_last=2, log_every=25, **values)
