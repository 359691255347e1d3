"""The state of a training run, as one object that a checkpoint saves and restores as a whole.

:class:`RunState` holds what changes from step to step: the model, Adam, the learning-rate schedule
(``torch.optim.lr_scheduler.LambdaLR``), the gradient scaler, the step counter, the random-number state, the
log window and the non-finite counters. :meth:`RunState.checkpoint` turns it into a checkpoint payload of
tensors and plain values (``torch.load(..., weights_only=True)`` reads it); :meth:`RunState.restore` puts a
payload back. Nothing else is needed to continue a run exactly: the data a step reads is a function of
``(seed, step)`` (:mod:`reconet_lib.train.sampling`).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from ..checkpoint import model_checkpoint
from ..network import ReCoNet
from .config import TrainConfig
from .log import LogWindow


def lr_factor(config: TrainConfig, taken: int) -> float:
    """The learning rate after ``taken`` optimiser steps, as a fraction of ``config.lr``.

    ``constant``: 1; ``cosine``: from 1 down to ``lr_min_factor`` at ``steps``; ``step``:
    ``lr_step_gamma ** (taken // lr_step_every)``. Skipped (non-finite) steps count too, so the rate depends
    on the step number alone.
    """
    if config.lr_schedule == "cosine":
        progress = min(taken, config.steps) / config.steps
        return config.lr_min_factor + (1 - config.lr_min_factor) * 0.5 * (1 + math.cos(math.pi * progress))
    if config.lr_schedule == "step":
        return config.lr_step_gamma ** (taken // config.lr_step_every)
    return 1.0


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR`` with :func:`lr_factor`: step ``s`` (1-based) runs at ``config.lr * lr_factor(config, s - 1)``."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda taken: lr_factor(config, taken))


def _new_counters() -> dict[str, int]:
    return {"consecutive": 0, "total": 0}


@dataclass
class RunState:
    """Everything of a run that a step changes (see the module docstring).

    Attributes:
        model: the ReCoNet being trained (not wrapped in DistributedDataParallel).
        optimizer: Adam over the model's parameters.
        scheduler: the learning-rate schedule (:func:`make_scheduler`).
        scaler: the gradient scaler (enabled for fp16 autocast only).
        step: optimisation steps completed (skipped ones included).
        window: sums of the logged values since the last log line.
        nonfinite: ``{"consecutive": n, "total": m}`` steps skipped by the non-finite guard.

    The random-number state is torch's own (the loop runs inside ``torch.random.fork_rng``, so the caller's RNG
    is untouched): :meth:`checkpoint` saves it and :meth:`restore` sets it back.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    step: int = 0
    window: LogWindow = field(default_factory=LogWindow)
    nonfinite: dict[str, int] = field(default_factory=_new_counters)

    @classmethod
    def create(cls, config: TrainConfig, model_config, device: torch.device, use_scaler: bool) -> RunState:
        """A fresh run: the model initialised from ``config.seed`` (through torch's RNG, which the caller forks)."""
        torch.manual_seed(config.seed)
        model = ReCoNet(model_config).to(device)
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        return cls(model, optimizer, make_scheduler(optimizer, config),
                   torch.amp.GradScaler(device.type, enabled=use_scaler))

    @property
    def lr(self) -> float:
        """The learning rate of the next step."""
        return self.optimizer.param_groups[0]["lr"]

    def advance_schedule(self) -> None:
        """One step of the schedule, also after a step without an update (skipped, or the scaler's inf check)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
            self.scheduler.step()

    # ------------------------------------------------------------------------------------------- checkpoint
    def checkpoint(self, config: TrainConfig, style: tuple[str, str], extra: Mapping | None = None) -> dict:
        """The checkpoint payload: model, config and style identity plus the whole training state.

        Args:
            config: the run's config (stored as a dict).
            style: ``(style name, sha256 of the style image)``.
            extra: further plain entries (``data_state``, ``precision``, ``interrupted`` ...).
        """
        payload = model_checkpoint(self.model, style[0], style[1], config.to_dict())
        payload.update(
            step=self.step,
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict() if self.scaler.is_enabled() else {},
            rng=_rng_state(),
            log_window=self.window.state(),
            nonfinite=dict(self.nonfinite),
            **dict(extra or {}),
        )
        return payload

    def restore(self, payload: Mapping) -> None:
        """Put a checkpoint payload back (model, optimiser, schedule, scaler, step, window, counters, RNG)."""
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        schedule = payload["scheduler"]
        if "taken" in schedule:  # written by reconet_lib before LambdaLR: only the count of steps taken
            self.scheduler.last_epoch = int(schedule["taken"])
        else:
            self.scheduler.load_state_dict(schedule)
        if self.scaler.is_enabled() and payload.get("scaler"):
            self.scaler.load_state_dict(payload["scaler"])
        self.step = int(payload["step"])
        self.window = LogWindow(payload.get("log_window"))
        self.nonfinite = {k: int(v) for k, v in payload.get("nonfinite", _new_counters()).items()}
        _set_rng_state(payload.get("rng"))


def _rng_state() -> dict:
    """torch's RNG states (CPU and every CUDA device) as tensors, readable with ``weights_only=True``."""
    return {"torch": torch.get_rng_state(),
            "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else []}


def _set_rng_state(state: Mapping | None) -> None:
    if not state:
        return
    torch.set_rng_state(state["torch"])
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)
