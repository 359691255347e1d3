"""Checkpoint files: verified atomic writes, safe loading (``weights_only=True``), a ready-to-run model, and the
files of a training run's folder (``step_*.pt``, ``last.pt``, the folder lock, which checkpoint a resume uses).

A checkpoint is a ``torch.save``-d dict of plain Python types and tensors:

``format`` (``"reconet-checkpoint"``), ``format_version``, ``model_config`` (dict of
:class:`reconet_lib.network.ReCoNetConfig`), ``model`` (state dict), ``style_name``, ``style_sha256``,
``train_config`` (dict or None) and, for training checkpoints, the training state (``step``,
``optimizer``, ``scaler``, ``rng`` ...).
"""
from __future__ import annotations

import io
import os
import re
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout

from .errors import UserInputError, first_line
from .files import atomic_output, remove_temporaries
from .network import ReCoNet, ReCoNetConfig

FORMAT = "reconet-checkpoint"
FORMAT_VERSION = 1
_REQUIRED = ("format", "format_version", "model_config", "model", "style_name", "style_sha256")
#: File names in a training run's folder.
CHECKPOINT_PATTERN = re.compile(r"^step_(\d{7,})\.pt$")
LAST_NAME = "last.pt"
LOCK_NAME = ".train.lock"


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically: a temporary file in the same folder, fsync, load it back, rename.

    The payload is serialised in memory first, so a full disk surfaces as an ``OSError`` (``ENOSPC``) of the
    write itself. An interruption or failure at any point leaves the old file under ``path`` (or none) and no
    temporary file, never a partial or unreadable file.
    """
    return _write_verified(path, _serialise(payload), payload)


def _serialise(payload: dict[str, Any]) -> memoryview:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getbuffer()


def _write_verified(path: str | os.PathLike, data: memoryview, payload: dict[str, Any]) -> Path:
    def verify(tmp: Path) -> None:
        try:
            stored = _read(tmp)
        except UserInputError as exc:
            raise OSError(f"checkpoint {path} could not be read back after writing ({exc}); nothing was replaced") from None
        if not isinstance(stored, dict) or set(stored) != set(payload) or stored.get("step") != payload.get("step"):
            raise OSError(f"checkpoint {path} did not read back as written; nothing was replaced")

    with atomic_output(path, verify=verify) as handle:
        handle.write(data)
    return Path(path)


def _read(path: Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(weights_only=True)``; any failure becomes a one-line UserInputError that says why in words."""
    if path.stat().st_size == 0:
        raise UserInputError(f"{path} is empty (0 bytes), not a ReCoNet checkpoint")
    try:
        return safe_torch_load(path, map_location)
    except Exception as exc:  # pickle, zip and format errors all mean: not a checkpoint we can read
        raise UserInputError(
            f"{path} is not a readable ReCoNet checkpoint ({describe_load_failure(path, exc)}); "
            "pass a .pt file written by `reconet train`"
        ) from None


def safe_torch_load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(weights_only=True)`` without torch's warnings on stderr (the caller explains a failure)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location=map_location, weights_only=True)


#: How files written by ``torch.save`` begin: a zip archive (PyTorch >= 1.6) or a pickle (the legacy format).
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_PICKLE_MAGIC = b"\x80"
_UNSUPPORTED_GLOBAL = re.compile(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)")


def describe_load_failure(path: str | os.PathLike, exc: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` failed on ``path``, in words a user understands (never a bare
    ``KeyError: 101``, and never torch's advice to load with ``weights_only=False``, which runs stored code)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        head = b""
    if head and not head.startswith(_ZIP_MAGIC) and not head.startswith(_PICKLE_MAGIC):
        kind = "; it looks like a text file" if _looks_like_text(head) else ""
        return f"not a PyTorch checkpoint file: it does not start like one{kind}"
    message = str(exc)
    unsupported = _UNSUPPORTED_GLOBAL.search(message)
    if unsupported:
        return (f"it holds code or a Python object ({unsupported.group(1)}) that safe loading (weights_only=True) "
                "refuses to run; only tensors and plain values are loaded. Use a file you trust that holds weights "
                "only")
    if isinstance(exc, (KeyError, IndexError, EOFError)) or "zip archive" in message or "Weights only load failed" in message:
        return "a PyTorch file that is damaged or incomplete, e.g. cut off while being copied or written"
    return f"{type(exc).__name__}: {first_line(exc, 120)}".replace("weights_only", "safe loading")


def state_dict_mismatch(exc: BaseException) -> str:
    """The first specific line of ``load_state_dict``'s error (a key and its shapes), not its heading."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = [line for line in lines if not line.startswith("Error(s) in loading state_dict")]
    return (detail or lines or [type(exc).__name__])[0][:300]


def _looks_like_text(head: bytes) -> bool:
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a multi-byte character cut at the end of ``head`` is still text
        return exc.start >= len(head) - 3
    return True


def _directory_candidates(folder: Path, limit: int = 3) -> tuple[list[Path], int]:
    """Checkpoint files in ``folder`` (or, if none, ``last.pt`` of its sub-folders), best first; and how many.

    Order: ``last.pt``, then ``step_*.pt`` newest first, then any other ``*.pt`` by name.
    """
    def ranked(paths: list[Path]) -> list[Path]:
        def key(path: Path):
            step = checkpoint_step(path)
            return (0, 0, "") if path.name == LAST_NAME else (1, -step, "") if step is not None else (2, 0, path.name)
        return sorted(paths, key=key)

    try:
        found = ranked([p for p in folder.glob("*.pt") if p.is_file()])
        if not found:
            found = sorted(p for p in folder.glob(f"*/{LAST_NAME}") if p.is_file())
    except OSError:
        return [], 0
    return found[:limit], len(found)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a ReCoNet checkpoint with ``torch.load(weights_only=True)`` and check its format.

    Raises:
        FileNotFoundError: no such file.
        UserInputError: ``path`` is a folder (the message names the checkpoints in it), or the file is not a
            ReCoNet checkpoint (or is damaged); the message says which.
    """
    path = Path(path)
    if path.is_dir():
        candidates, count = _directory_candidates(path)
        if not candidates:
            raise UserInputError(
                f"checkpoint {path} is a directory with no checkpoint (.pt) files in it; pass a .pt file written by "
                "`reconet train` (e.g. <run folder>/last.pt)"
            )
        more = f" ({count - len(candidates)} more there)" if count > len(candidates) else ""
        raise UserInputError(
            f"checkpoint {path} is a directory, not a file; pass one of the checkpoints in it: "
            f"{', '.join(str(c) for c in candidates)}{more}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; train one with `python -m reconet_lib train`")
    payload = _read(path, map_location)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserInputError(f"{path} is not a ReCoNet checkpoint (no format tag {FORMAT!r}); pass a file written by `reconet train`")
    missing = [key for key in _REQUIRED if key not in payload]
    if missing:
        raise UserInputError(f"{path} is an incomplete ReCoNet checkpoint: missing {', '.join(missing)}")
    if not isinstance(payload["format_version"], int) or payload["format_version"] > FORMAT_VERSION:
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
    payload = load_checkpoint(path)
    try:
        model = ReCoNet(ReCoNetConfig.from_dict(payload["model_config"]))
        model.load_state_dict(payload["model"])
    except (TypeError, KeyError, RuntimeError) as exc:
        raise UserInputError(f"{path}: the stored model does not match its config ({state_dict_mismatch(exc)}); "
                             "it was written by another version of the network: retrain or use its own code") from None
    model.style_name = payload["style_name"]
    model.style_sha256 = payload["style_sha256"]
    model.to(device=device or "cpu", dtype=dtype)
    return model.eval()


# ==============================================================================================================
# A training run's folder
# ==============================================================================================================


def step_checkpoint_path(folder: str | os.PathLike, step: int) -> Path:
    """``<folder>/step_0001000.pt``: the checkpoint of ``step``."""
    return Path(folder) / f"step_{int(step):07d}.pt"


def checkpoint_step(path: str | os.PathLike) -> int | None:
    """The step in a ``step_*.pt`` file name (None for other names)."""
    match = CHECKPOINT_PATTERN.match(Path(path).name)
    return int(match.group(1)) if match else None


def checkpoint_files(output_dir: str | os.PathLike) -> list[Path]:
    """The ``step_*.pt`` checkpoints in ``output_dir``, oldest first."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [(checkpoint_step(name), folder / name) for name in os.listdir(folder) if CHECKPOINT_PATTERN.match(name)]
    return [path for _, path in sorted(found)]


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The checkpoint a resume starts from: ``last.pt`` if present, else the newest ``step_*.pt``, else None."""
    folder = Path(output_dir)
    if (folder / LAST_NAME).is_file():
        return folder / LAST_NAME
    files = checkpoint_files(folder)
    return files[-1] if files else None


def save_step_checkpoint(folder: str | os.PathLike, payload: dict[str, Any], keep_last: int) -> Path:
    """Save ``payload`` (which has a ``step``) as ``last.pt`` and ``step_<step>.pt`` (two verified copies), then
    delete the oldest ``step_*.pt`` beyond ``keep_last``. Returns the step file.

    ``last.pt`` is written first: whatever fails later, it is never older than the newest ``step_*.pt``. A failure
    at any point leaves every earlier checkpoint intact.
    """
    folder = Path(folder)
    data = _serialise(payload)
    _write_verified(folder / LAST_NAME, data, payload)
    path = _write_verified(step_checkpoint_path(folder, payload["step"]), data, payload)
    for old in checkpoint_files(folder)[:-keep_last]:
        old.unlink(missing_ok=True)
    return path


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete half-written checkpoint files a killed process left in a run folder (call it under the lock)."""
    return remove_temporaries(folder, "*.pt")


@contextmanager
def exclusive(path: str | os.PathLike, *, wait: bool):
    """Hold an exclusive lock on the file ``path`` (created, with its folder, if needed) for the ``with`` block.

    Uses the ``filelock`` package (``flock`` on POSIX, ``msvcrt`` on Windows). ``wait=False`` raises
    UserInputError at once if another process holds it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, timeout=-1 if wait else 0)
    try:
        lock.acquire()
    except Timeout:
        raise UserInputError(
            f"another process is training into {path.parent} right now; wait for it to finish or choose "
            "another output folder"
        ) from None
    try:
        yield
    finally:
        lock.release()


def resume_point(folder: str | os.PathLike) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint a resume in ``folder`` continues from, loaded, or None when there is none.

    ``last.pt`` is used when it is readable and not older than the newest ``step_*.pt``; otherwise the resume is
    refused with a line naming the file to delete and the intact checkpoint a resume would then use.

    Returns:
        ``(path, payload)`` or None.
    Raises:
        UserInputError: ``last.pt`` is damaged or stale, or the newest checkpoint is damaged.
    """
    folder = Path(folder)
    last, steps = folder / LAST_NAME, checkpoint_files(folder)
    if not last.is_file():
        if not steps:
            return None
        try:
            return steps[-1], load_checkpoint(steps[-1])
        except UserInputError as exc:
            raise UserInputError(f"cannot resume: {exc}; {_fallback_hint(steps[-1], steps[:-1])}") from None
    try:
        payload = load_checkpoint(last)
    except UserInputError as exc:
        raise UserInputError(f"cannot resume: {exc}; {_fallback_hint(last, steps)}") from None
    step = payload.get("step")
    newest = checkpoint_step(steps[-1]) if steps else None
    if newest is not None and (not isinstance(step, int) or step < newest):
        raise UserInputError(
            f"cannot resume: {last} (step {step}) is older than {steps[-1].name} (step {newest}), so it is not this "
            f"run's latest checkpoint; delete {last} to resume from {steps[-1]}"
        )
    return last, payload


def _fallback_hint(bad: Path, candidates: list[Path]) -> str:
    """What to do about an unreadable checkpoint: name the newest intact one among ``candidates``."""
    for candidate in reversed(candidates):
        try:
            step = load_checkpoint(candidate)["step"]
        except (UserInputError, KeyError):
            continue
        return f"delete {bad} to resume from {candidate} (step {step}), the newest intact checkpoint"
    return f"no intact checkpoint is beside it: delete {bad} (and start afresh without --resume)"
