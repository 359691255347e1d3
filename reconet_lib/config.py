"""Run-time settings shared by the notebooks: quick mode, device choice and data folders.

Nothing here runs at import time; every function reads the environment when it is called.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from .errors import UserInputError
from .precision import parse_device

#: Environment variable that forces quick mode on (``1``) or off (``0``).
QUICK_ENV = "RECONET_QUICK"
T = TypeVar("T")

#: Environment variable that moves the data folder (downloads, generated data, outputs).
DATA_ENV = "RECONET_DATA"


def quick_mode() -> bool:
    """Whether notebooks and scripts should use small sizes and few iterations.

    ``RECONET_QUICK=1`` forces quick mode, ``RECONET_QUICK=0`` forces full mode; otherwise quick
    mode is chosen automatically when no CUDA GPU is available.
    """
    value = os.environ.get(QUICK_ENV, "").strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    if value:
        raise UserInputError(f"{QUICK_ENV}={value!r} is not understood; use 1 (quick) or 0 (full), or unset it")
    return not torch.cuda.is_available()


def default_device() -> torch.device:
    """``cuda:N`` when a GPU is available, otherwise ``cpu`` (:func:`reconet_lib.precision.parse_device` of "auto").

    Callers pass the result on explicitly.
    """
    return parse_device("auto")


#: The project's repository: the one place that names it (a fork changes this line; the notebooks' setup
#: cells and the README's install command must name it too, since they run before the library is installed).
REPOSITORY_URL = "https://github.com/reconet-tutorial/reconet"


def project_root() -> Path:
    """The folder that holds ``reconet_lib``: the repository root in a source checkout, ``site-packages`` otherwise."""
    return Path(__file__).resolve().parent.parent


def source_checkout() -> Path | None:
    """The repository root when the library runs from a source checkout (editable install, ``PYTHONPATH``), else None.

    A checkout has ``pyproject.toml`` beside ``reconet_lib``; an installed copy lives in ``site-packages`` (or
    ``dist-packages``), where no data may be written.
    """
    root = project_root()
    installed = any(part in ("site-packages", "dist-packages") for part in root.parts)
    return root if (root / "pyproject.toml").is_file() and not installed else None


def data_dir() -> Path:
    """Folder for downloads, generated data and outputs, visible and writable whatever the install mode.

    ``$RECONET_DATA`` when set; else ``<repository>/data`` in a source checkout; else ``./data`` in the current
    working folder (a non-editable install, e.g. on Colab: never inside ``site-packages``). An absolute path.
    """
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser().resolve()
    checkout = source_checkout()
    return checkout / "data" if checkout is not None else Path.cwd().resolve() / "data"


@dataclass(frozen=True)
class RunSettings:
    """What a notebook's setup cell needs to know, in one object."""

    quick: bool
    device: torch.device

    @property
    def summary(self) -> str:
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "CPU"
        mode = "quick mode (small sizes, few iterations)" if self.quick else "full mode"
        return f"device: {self.device} ({name}); {mode}; torch {torch.__version__}"


def run_settings() -> RunSettings:
    """The quick-mode flag and the device, read now from the environment and the hardware."""
    return RunSettings(quick=quick_mode(), device=default_device())


def from_dict(cls: type[T], values: Mapping[str, Any], what: str | None = None) -> T:
    """Build the dataclass ``cls`` from a mapping of its field names (the inverse of ``dataclasses.asdict``).

    Missing fields keep their defaults; the dataclass's own checks (``__post_init__``) judge the values.

    Args:
        cls: a dataclass type.
        values: ``{field name: value}``.
        what: how error messages name the thing (default: the class name).
    Raises:
        UserInputError: ``values`` is not a mapping, or names fields ``cls`` does not have (the message
            lists the known ones).
    """
    what = what or cls.__name__
    if not isinstance(values, Mapping):
        raise UserInputError(f"{what} must be a mapping of field names to values; got {type(values).__name__}")
    known = sorted(f.name for f in dataclasses.fields(cls) if f.init)
    unknown = sorted(str(key) for key in values if key not in known)
    if unknown:
        raise UserInputError(f"unknown {what} keys {unknown}; the known keys are {', '.join(known)}")
    return cls(**dict(values))
