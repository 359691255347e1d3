"""The tutorial's training runs: the notebooks' ReCoNet and per-frame baseline, trained once and cached."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

from ..checkpoint import LAST_NAME, exclusive, load_checkpoint
from ..config import data_dir
from ..errors import ReconetError
from ..losses import LossWeights
from ..precision import parse_device
from ..resources import tutorial_resources
from . import recipe
from .config import TrainConfig
from .loop import train


#: The loss networks the tutorial can train with: :class:`LossWeights` and VGG weights of each. The first is the
#: real one (the paper's); the second the announced offline stand-in; the third the studied alternative.
TUTORIAL_LOSS_NETWORKS = {
    "vgg16_imagenet": (LossWeights, "imagenet"),
    "vgg16_random": (LossWeights.offline, None),
    "random_texture": (LossWeights.offline_texture, None),
}


def tutorial_config(quick: bool, device, *, temporal: bool = True, loss_network: str = "vgg16_imagenet",
                    style: str = "mosaic", output: str | os.PathLike = "runs/tutorial",
                    sintel: str | os.PathLike | None = None, init: str | os.PathLike | None = None) -> TrainConfig:
    """The training run the notebooks use: ReCoNet (``temporal=True``) or the per-frame baseline (lambda_f = lambda_o = 0).

    Quick (CPU): :data:`QUICK_RECIPE` (the ``tiny`` preset on the quick generated photo scenes, 112 x 112 crops,
    chosen by ``benchmarks/quick_recipe.py``; table in ``docs/results.md``). The baseline trains
    ``QUICK_RECIPE.steps`` steps from random weights; ReCoNet trains ``QUICK_RECIPE.reconet_steps`` steps with all
    five loss terms, starting from ``init`` (:func:`ensure_tutorial_checkpoints` passes the baseline's checkpoint:
    the same network fine-tuned with the temporal losses, so the two differ by the temporal losses alone).

    ``loss_network`` (:data:`TUTORIAL_LOSS_NETWORKS`): ``"vgg16_imagenet"`` (the paper's loss network, default
    weights), ``"vgg16_random"`` (the offline stand-in: seeded random VGG-16 with relative terms,
    :meth:`LossWeights.offline`) or ``"random_texture"`` (:meth:`LossWeights.offline_texture`, the alternative
    the study measured).

    Full (GPU): the values of :data:`reconet_lib.train.recipe.RECIPE` (``paper`` preset, 256 x 256 crops, batch 4,
    lr 1e-3 with a cosine schedule, scale and flip augmentation, mixed precision), but 4000 steps instead of 20000
    so that a notebook run stays within a Colab session, on **real frames**: MPI Sintel's training folder
    ``sintel`` (clean and final passes, read time-reversed with exact flow). Without ``sintel`` (offline) it
    trains on the full-size generated photo scenes; :func:`ensure_tutorial_checkpoints` says so when it happens.
    Time: see :func:`reconet_lib.train.recipe.colab_time_estimate` (an estimate, not a measurement).
    """
    if loss_network not in TUTORIAL_LOSS_NETWORKS:
        raise ReconetError(f"loss_network must be one of {list(TUTORIAL_LOSS_NETWORKS)}; got {loss_network!r}")
    make_weights, vgg_weights = TUTORIAL_LOSS_NETWORKS[loss_network]
    weights = make_weights()
    if not temporal:
        weights = dataclasses.replace(weights, lambda_f=0.0, lambda_o=0.0)
    device = parse_device(device)
    common = dict(style=style, loss=weights, vgg_weights=vgg_weights, seed=0, output=os.fspath(output),
                  device=str(device), num_workers=0 if quick else None, log_every=5 if quick else 25)
    if quick:
        r = QUICK_RECIPE
        steps, schedule = (r.reconet_steps, r.reconet_lr_schedule) if temporal else (r.steps, r.lr_schedule)
        return TrainConfig(data=[{"kind": "synthetic", "options": {"quick": True}}], model=r.model,
                           style_size=r.style_size, crop=r.crop, batch_size=r.batch_size, steps=steps, lr=r.lr,
                           lr_schedule=schedule, checkpoint_every=steps // 2, keep_last=1, precision="fp32",
                           init=None if init is None else os.fspath(init), **common)
    values = {v.field: v.value for v in recipe.RECIPE if v.field not in ("loss", "style", "vgg_weights", "steps")}
    data = ([{"kind": "sintel", "path": os.fspath(sintel), "options": {"passes": ["clean", "final"]}}] if sintel
            else [{"kind": "synthetic", "options": {"quick": False}}])
    return TrainConfig(data=data, steps=4000, checkpoint_every=500, keep_last=2, **{**values, **common})


@dataclasses.dataclass(frozen=True)
class QuickRecipe:
    """The quick-mode (CPU) training recipe of the tutorial models; chosen by ``benchmarks/quick_recipe.py``.

    Attributes:
        model: network preset.
        crop: training crop (width, height) in pixels, cut from the quick photo scenes (256 x 192).
        batch_size: frame pairs per step.
        steps: optimisation steps of the per-frame baseline (from random weights). 300 on 112 x 112 crops rather
            than 150 on 128 x 128 (session 6 of the study): the picture keeps more of the footage's structure
            (edge correlation 0.58 -> 0.64 on held-out footage), and the smaller crops pay for the extra steps.
        reconet_steps: optimisation steps of ReCoNet, fine-tuned from the baseline with all five loss terms.
        reconet_lr_schedule: its learning-rate schedule: cosine, because at a constant rate the picture still
            swings between checkpoints (edge correlation 0.50 to 0.71 every 25 steps in the study).
        lr, lr_schedule: Adam learning rate and the baseline's schedule.
        style_size: longer side of the style image in pixels.
    """

    model: str = "tiny"
    crop: tuple[int, int] = (112, 112)
    batch_size: int = 2
    steps: int = 300
    reconet_steps: int = 200
    lr: float = 2e-3
    lr_schedule: str = "constant"
    reconet_lr_schedule: str = "cosine"
    style_size: int = 256


#: The recipe :func:`tutorial_config` uses in quick mode.
QUICK_RECIPE = QuickRecipe()


def expected_time(quick: bool, steps: int, loss_network: str = "vgg16_random") -> str:
    """What a learner should expect one tutorial model to take, said before it starts.

    Quick mode: measured on a 2-core CPU (``docs/results.md``). With the offline stand-in (``"vgg16_random"``,
    style up to ``relu3_3``): one to two minutes per model. With the ImageNet VGG-16 (online, ``"vgg16_imagenet"``:
    the default :class:`LossWeights`, style up to ``relu4_3``, about 1.5 times the loss network's work per step,
    timed side by side with a VGG-16 of the same architecture): two to three minutes per model. Full mode: the
    labelled Colab estimate.
    """
    if quick:
        if loss_network == "vgg16_imagenet":
            return (f"quick mode with the ImageNet VGG-16: {steps} steps, two to three minutes on two idle CPU cores, "
                    "several minutes while other programs keep them busy")
        return (f"quick mode: {steps} steps, one to two minutes on two idle CPU cores, a few minutes while other "
                "programs keep them busy")
    return f"full mode: {recipe.colab_time_estimate(steps)}"


#: Part of the tutorial checkpoints' cache key: bump it to retrain them after a change of the training code.
TUTORIAL_VERSION = 6  # 6: baseline 300 steps on 112 x 112 crops; 5: quick ReCoNet fine-tuned from the baseline; 4: 256 x 192 scenes, offline loss network


def _real_frames(allow_download: bool | None = None) -> Path | None:
    """MPI Sintel's training folder for full mode (downloaded and verified once), or None with one message.

    ``allow_download=False`` uses a copy already cached or mirrored but never starts the multi-GB download.
    """
    try:
        return recipe.prepare_sintel(allow_download=allow_download)
    except ReconetError as exc:
        print(f"full mode trains on generated photo scenes instead of MPI Sintel: {exc}")
        return None


def _finished(last: Path, steps: int) -> bool:
    try:
        return last.is_file() and int(load_checkpoint(last).get("step", -1)) >= steps
    except ReconetError:
        return False


def ensure_tutorial_checkpoints(quick: bool, device, *, output_dir: str | os.PathLike | None = None,
                                progress: bool = False, download_sintel: bool | None = None) -> dict[str, Path]:
    """The notebooks' two trained models, trained now if they are not cached yet.

    ``"baseline"``: a per-frame style transfer network (``lambda_f = lambda_o = 0``); ``"reconet"``: the same
    network with all five loss terms (in quick mode fine-tuned from the baseline's weights, see
    :func:`tutorial_config`). Cached under
    ``data_dir()/"checkpoints"/("quick" | "full")/<name>-<config hash>/last.pt``; an interrupted run is resumed.
    VGG-16 and style: :func:`reconet_lib.resources.tutorial_resources` (ImageNet weights and 'candy' whenever
    they can be had, else seeded random weights and the procedural 'mosaic', announced).

    Args:
        quick: quick mode (CPU sizes, see :func:`tutorial_config`).
        device: where to train.
        output_dir: cache folder instead of the default.
        progress: show progress bars.
        download_sintel: full mode only: ``False`` never starts MPI Sintel's download (about 5.3 GB; a cached
            or mirrored copy is still used), ``None`` follows ``$RECONET_OFFLINE`` (the notebooks ask first).
    Returns:
        ``{"reconet": path, "baseline": path}`` of ``last.pt`` checkpoints.
    """
    folder = Path(output_dir) if output_dir is not None else data_dir() / "checkpoints" / ("quick" if quick else "full")
    # ImageNet VGG-16 and 'candy' whenever they can be had (file, cache, mirror, download); otherwise random
    # weights and 'mosaic', announced in one message (reconet_lib.resources).
    chosen = tutorial_resources()
    sintel = None if quick else _real_frames(download_sintel)
    result, digests = {}, {}
    # Quick mode: the baseline first, then ReCoNet fine-tuned from it (QUICK_RECIPE); full mode: both from scratch.
    for name, temporal in (("baseline", False), ("reconet", True)):
        init = result["baseline"] if quick and temporal else None
        config = tutorial_config(quick, device, temporal=temporal, loss_network=chosen.loss_network,
                                 style=chosen.style, sintel=sintel, init=init)
        identity = {k: v for k, v in config.to_dict().items() if k not in ("output", "device", "num_workers", "init")}
        identity["tutorial_version"] = TUTORIAL_VERSION
        identity["init_from"] = digests["baseline"] if init is not None else None
        digest = digests[name] = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
        run_dir = folder / f"{name}-{digest}"
        config.output = os.fspath(run_dir)
        last = run_dir / LAST_NAME
        # Notebooks may run side by side: the first one trains, the others wait for it and reuse the result.
        with exclusive(folder / f".{run_dir.name}.lock", wait=True):
            if not _finished(last, config.steps):
                print(f"training the tutorial's {name!r} model ({expected_time(quick, config.steps, chosen.loss_network)}) "
                      f"into {run_dir}")
                train(config, resume=True, progress=progress, verbose=False)
        result[name] = last
    return {"reconet": result["reconet"], "baseline": result["baseline"]}
