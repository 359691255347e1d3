"""Checkpoint files: atomic writes, safe loading (``weights_only=True``) and a ready-to-run model.

A checkpoint is a ``torch.save``-d dict of plain Python types and tensors:

``format`` (``"reconet-checkpoint"``), ``format_version``, ``model_config`` (dict of
:class:`reconet_lib.network.ReCoNetConfig`), ``model`` (state dict), ``style_name``, ``style_sha256``,
``train_config`` (dict or None) and, for training checkpoints, the training state (``step``,
``optimizer``, ``scaler``, ``rng`` ...).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .errors import UserInputError
from .files import atomic_output

FORMAT = "reconet-checkpoint"
FORMAT_VERSION = 1
_REQUIRED = ("format", "format_version", "model_config", "model", "style_name", "style_sha256")


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically: a temporary file in the same folder, fsync, then rename.

    An interruption at any point leaves either the old file or the new one under ``path``, never a partial file.
    """
    with atomic_output(path) as handle:
        torch.save(payload, handle)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a ReCoNet checkpoint with ``torch.load(weights_only=True)`` and check its format.

    Raises:
        FileNotFoundError: no such file.
        UserInputError: the file is not a ReCoNet checkpoint (or is damaged); the message says which.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; train one with `python -m reconet_lib train`")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle, zip and format errors all mean: not a checkpoint we can read
        raise UserInputError(
            f"{path} is not a readable ReCoNet checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); "
            "pass a .pt file written by `reconet train`"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserInputError(f"{path} is not a ReCoNet checkpoint (no format tag {FORMAT!r}); pass a file written by `reconet train`")
    missing = [key for key in _REQUIRED if key not in payload]
    if missing:
        raise UserInputError(f"{path} is an incomplete ReCoNet checkpoint: missing {', '.join(missing)}")
    if payload["format_version"] > FORMAT_VERSION:
        raise UserInputError(
            f"{path} was written by a newer reconet_lib (checkpoint format {payload['format_version']}, "
            f"this one reads up to {FORMAT_VERSION}); upgrade reconet_lib"
        )
    return payload


def model_checkpoint(model, style_name: str, style_sha256: str, train_config: dict | None = None) -> dict[str, Any]:
    """The minimal checkpoint dict for a trained model (no optimiser state)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": model.config.to_dict(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "style_name": style_name,
        "style_sha256": style_sha256,
        "train_config": train_config,
    }


def load_model(path: str | os.PathLike, device: str | torch.device | None = None, dtype: torch.dtype | None = None):
    """Build the :class:`~reconet_lib.network.ReCoNet` stored in a checkpoint, in eval mode.

    Args:
        path: a checkpoint written by :func:`save_checkpoint` (training or model-only).
        device: where to put the model (default CPU).
        dtype: optional parameter dtype (e.g. ``torch.float16`` on CUDA).
    Returns:
        ``ReCoNet`` in eval mode (its forward clamps to [0, 1]), with ``style_name`` and ``style_sha256`` attributes.
    """
    from .network import ReCoNet, ReCoNetConfig

    payload = load_checkpoint(path)
    try:
        model = ReCoNet(ReCoNetConfig.from_dict(payload["model_config"]))
        model.load_state_dict(payload["model"])
    except (TypeError, KeyError, RuntimeError) as exc:
        raise UserInputError(f"{path}: the stored model does not match its config ({str(exc).splitlines()[0][:160]})") from None
    model.style_name = payload["style_name"]
    model.style_sha256 = payload["style_sha256"]
    model.to(device=device or "cpu", dtype=dtype)
    return model.eval()
