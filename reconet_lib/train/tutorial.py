"""The tutorial's training runs: the notebooks' ReCoNet and per-frame baseline, trained once and cached."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

from ..checkpoint import LAST_NAME, exclusive, load_checkpoint
from ..errors import ReconetError
from ..losses import LossWeights
from ..precision import parse_device
from ..resources import tutorial_resources
from .config import TrainConfig
from .loop import train


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
    device = parse_device(device)
    common = dict(style=style, loss=weights, vgg_weights=vgg_weights, seed=0, output=os.fspath(output),
                  device=str(device), num_workers=0 if quick else None, log_every=5 if quick else 25)
    if quick:
        return TrainConfig(data=[{"kind": "synthetic", "options": {"quick": True}}], model="tiny", style_size=256,
                           crop=(64, 64), batch_size=2, steps=100, lr=2e-3, checkpoint_every=50, keep_last=1,
                           precision="fp32", **common)
    return TrainConfig(data=[{"kind": "synthetic", "options": {"quick": False}}], model="paper", style_size=512,
                       crop=(256, 256), batch_size=4, steps=4000, lr=1e-3, lr_schedule="cosine",
                       checkpoint_every=500, keep_last=2, precision="auto", **common)


#: Part of the tutorial checkpoints' cache key: bump it to retrain them after a change of the training code.
TUTORIAL_VERSION = 2


def _finished(last: Path, steps: int) -> bool:
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
    VGG-16 and style: :func:`reconet_lib.resources.tutorial_resources` (ImageNet weights and 'candy' whenever
    they can be had, else seeded random weights and the procedural 'mosaic', announced).

    Args:
        quick: quick mode (CPU sizes, see :func:`tutorial_config`).
        device: where to train.
        output_dir: cache folder instead of the default.
        progress: show progress bars.
    Returns:
        ``{"reconet": path, "baseline": path}`` of ``last.pt`` checkpoints.
    """
    from ..config import data_dir

    folder = Path(output_dir) if output_dir is not None else data_dir() / "checkpoints" / ("quick" if quick else "full")
    # ImageNet VGG-16 and 'candy' whenever they can be had (file, cache, mirror, download); otherwise random
    # weights and 'mosaic', announced in one message (reconet_lib.resources).
    chosen = tutorial_resources()
    vgg_weights, style = chosen.vgg_weights, chosen.style
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
