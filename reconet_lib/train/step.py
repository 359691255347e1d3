"""One training step, the one that both :func:`reconet_lib.train.train` and ``benchmarks/gpu_check.py`` take.

:func:`train_step` runs the network on a batch of frame pairs under autocast (the dtype the precision policy chose,
:func:`reconet_lib.precision.training_precision`), backpropagates the total loss of
:func:`reconet_lib.losses.pair_losses` (all five terms), clips the gradient and updates the parameters unless the
loss or the gradient is not finite. It returns the loss terms as Python floats (one host synchronisation).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn as nn

from .. import losses
from ..losses import LossWeights
from ..precision import autocast
from .log import LOGGED


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


@dataclass(frozen=True)
class StepResult:
    """What one :func:`train_step` did.

    Attributes:
        terms: every logged loss term (``total``, the five weighted terms and their ``_raw`` values), as floats,
            averaged over the processes of a distributed run.
        grad_norm: the gradient's total 2-norm before clipping (inf/NaN when not finite).
        updated: whether the optimiser took the step (False: a non-finite loss or gradient; with a gradient scaler
            the scaler may also skip an update of inf gradients itself, and ``updated`` stays True).
        stop_requested: whether any process asked to stop (the ``stop_requested`` flags, summed over processes).
    """

    terms: dict[str, float]
    grad_norm: float
    updated: bool
    stop_requested: bool

    @property
    def loss_finite(self) -> bool:
        return math.isfinite(self.terms["total"])

    @property
    def grad_finite(self) -> bool:
        return math.isfinite(self.grad_norm)


def train_step(
    runner: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    batch: Mapping,
    *,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
    grad_clip: float | None = None,
    world_size: int = 1,
    stop_requested: bool = False,
) -> StepResult:
    """One optimisation step on a batch of frame pairs.

    Args:
        runner: a :class:`PairLoss` (or one wrapped in ``DistributedDataParallel``): ``runner(batch)`` returns the
            loss terms of :func:`~reconet_lib.losses.pair_losses`.
        optimizer: the optimiser over the network's parameters (their gradients are the ones clipped).
        scaler: the gradient scaler; enabled for fp16 autocast only (``torch.amp.GradScaler(enabled=False)``
            otherwise).
        batch: ``current``, ``previous`` ``(B, 3, H, W)`` in [0, 1], ``flow`` ``(B, 2, H, W)`` current -> previous
            in pixels, ``valid`` ``(B, 1, H, W)``; tensors are moved to ``device`` (non-blocking).
        device: the device the network lives on.
        autocast_dtype: the autocast dtype (bf16/fp16), or None for float32.
        grad_clip: the largest gradient 2-norm (None: no clipping; the norm is still measured).
        world_size: processes of a distributed run (>1: the terms, the norm and the stop flag are all-reduced).
        stop_requested: this process was asked to stop (a signal); shared with the others.
    Returns:
        a :class:`StepResult` with the terms as floats. The learning-rate schedule is not advanced here.
    """
    use_scaler = scaler.is_enabled()
    batch = {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
    optimizer.zero_grad(set_to_none=True)
    with autocast(device, autocast_dtype):
        terms = runner(batch)
    scaler.scale(terms["total"]).backward()
    if use_scaler:
        scaler.unscale_(optimizer)
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    grad_norm = torch.nn.utils.clip_grad_norm_(parameters, grad_clip if grad_clip is not None else float("inf"))
    values = torch.stack([terms[k].detach().float() for k in LOGGED] + [grad_norm.detach().float()])
    values = torch.cat([values, torch.tensor([float(stop_requested)], device=values.device)])
    if world_size > 1:
        torch.distributed.all_reduce(values)  # the sum; any non-finite rank makes it non-finite
        values = values / world_size
    *values, grad, stop = values.cpu().tolist()
    updated = math.isfinite(values[0]) and (math.isfinite(grad) or use_scaler)
    if updated:
        scaler.step(optimizer)  # with a scaler, inf gradients make it skip the update itself
    else:
        optimizer.zero_grad(set_to_none=True)
    if use_scaler:
        scaler.update()
    return StepResult(dict(zip(LOGGED, values)), grad, updated, stop > 0)
