"""The pretrained-folder format: a trained ReCoNet as a folder in the Hugging Face Hub's conventions.

A pretrained folder holds three files (the layout ``huggingface_hub.PyTorchModelHubMixin`` writes):

* ``config.json``: ``format`` (``"reconet-pretrained"``), ``format_version``, ``model_config`` (the
  :class:`reconet_lib.network.ReCoNetConfig` as a dict), ``style_name``, ``style_sha256`` and ``card`` (the
  :class:`ModelCard` values: style, recipe, training steps, measured ``e_stab`` / ``E_warp`` and on what);
* ``model.safetensors``: the state dict (safetensors: no pickle, so loading runs no code);
* ``README.md``: the model card, with the Hub's YAML header, written from the same values.

Users call the model's methods: ``model.save_pretrained(folder)``, ``ReCoNet.from_pretrained(name_or_folder)``
and ``model.push_to_hub("owner/name")`` (:class:`reconet_lib.network.ReCoNet`). This module holds what they
share and knows no model class: :func:`save` writes a folder atomically (each file under a temporary name, the
weights read back and compared before the rename), :func:`locate` finds one (a local folder, or a Hub
repository through :mod:`reconet_lib.hub`'s resource policy: mirror, HF cache, download unless offline),
:func:`read_config` / :func:`read_weights` read it with one-line errors, :func:`push` uploads it. The round trip
is exact: every tensor (values and dtype) and the config come back equal, so outputs are bit-identical.

Why not ``huggingface_hub.PyTorchModelHubMixin`` itself: its loading follows only the Hub's own switches, not the
library's resource policy (``RECONET_OFFLINE``, ``RECONET_MIRROR``); its ``config.json`` holds the constructor's
arguments, while this one also carries a format tag and version (checked, one-line errors), the style and the card;
and as a base class it would make ``network.py`` import ``huggingface_hub`` and wrap ``ReCoNet``'s construction.
The files have the mixin's names, so the Hub and its tools see the usual layout.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from . import hub
from .config import REPOSITORY_URL
from .config import from_dict as dataclass_from_dict
from .errors import UserInputError, first_line
from .files import atomic_output, atomic_write_text

FORMAT = "reconet-pretrained"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
#: Every file a pretrained folder holds; the first two are needed to load it.
FILES = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME)
REQUIRED = (CONFIG_NAME, WEIGHTS_NAME)


@dataclass(frozen=True)
class ModelCard:
    """What a shared model says about itself (``config.json``'s ``card`` and the ``README.md``).

    Attributes:
        style: the style's catalog name (or the image's file name).
        recipe: how it was trained, in words (e.g. ``"reconet_lib full recipe (paper preset, MPI Sintel)"``).
        steps: training steps.
        e_stab: measured stability error (mean over pairs, no square root; ``docs/conventions.md``), or None.
        e_warp: measured warping error ``E_warp`` (Lai et al. 2018), or None.
        evaluated_on: the clip and flows the two errors were measured on (a number means nothing without it).
        train_config: the training run's :class:`~reconet_lib.train.TrainConfig` as a dict, if known.
        notes: anything else (e.g. the style image's licence).
    """

    style: str
    recipe: str = "unknown"
    steps: int | None = None
    e_stab: float | None = None
    e_warp: float | None = None
    evaluated_on: str = ""
    train_config: dict | None = field(default=None, compare=False)
    notes: str = ""

    def to_dict(self) -> dict:
        """Plain JSON-safe dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelCard":
        """Inverse of :meth:`to_dict` (unknown keys are an error)."""
        return dataclass_from_dict(cls, data, "model card")

    def markdown(self, model_config: dict) -> str:
        """The ``README.md`` text: the Hub's YAML header, then the card in words."""
        def number(value):
            return "not measured" if value is None else f"{value:.6f}"

        lines = [
            "---", "library_name: reconet_lib", "pipeline_tag: image-to-image",
            "tags:", "- style-transfer", "- video", "- reconet", "- pytorch", "---", "",
            f"# ReCoNet: {self.style}", "",
            "A ReCoNet video style-transfer network (Gao et al., ACCV 2018) trained with "
            f"[reconet_lib]({REPOSITORY_URL}).", "",
            "| | |", "|---|---|",
            f"| style | {self.style} |",
            f"| recipe | {self.recipe} |",
            f"| training steps | {self.steps if self.steps is not None else 'unknown'} |",
            f"| network | {json.dumps(model_config)} |",
            f"| e_stab (mean over pairs, no square root) | {number(self.e_stab)} |",
            f"| E_warp (Lai et al. 2018) | {number(self.e_warp)} |",
            f"| measured on | {self.evaluated_on or 'not stated'} |", "",
            "Images are RGB in [0, 1] in and out; any height and width work.", "",
            "```python", "from reconet_lib.network import ReCoNet",
            'model = ReCoNet.from_pretrained("<this repository or folder>")  # eval mode, output clamped to [0, 1]',
            "```", "",
        ]
        if self.notes:
            lines += ["## Notes", "", self.notes, ""]
        return "\n".join(lines)


def card_for(model, card: ModelCard | None) -> ModelCard:
    """``card`` if given, else the model's own ``card`` (set by ``from_pretrained``), else one with only the style."""
    card = card if card is not None else getattr(model, "card", None)
    if card is None:
        return ModelCard(style=getattr(model, "style_name", None) or "unknown")
    if not isinstance(card, ModelCard):
        raise UserInputError(f"card must be a reconet_lib.pretrained.ModelCard; got {type(card).__name__}")
    return card


def save(model, folder: str | os.PathLike, *, card: ModelCard | None = None) -> Path:
    """Write ``model`` as a pretrained folder (``ReCoNet.save_pretrained`` calls this).

    Args:
        model: a module with a ``config`` that has ``to_dict()`` (a ReCoNet); its ``style_name``,
            ``style_sha256`` and ``card`` attributes (set by ``load_model`` and ``from_pretrained``) are kept.
        folder: created if missing; files of the same names in it are replaced, each atomically.
        card: what the model card says; default: the model's ``card``, else only the style name.
    Returns:
        The folder.
    """
    # lazy: safetensors is needed only to save or load a shared model
    from safetensors.torch import load_file
    from safetensors.torch import save as to_bytes

    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        raise UserInputError(f"save_pretrained needs a ReCoNet (with a .config); got {type(model).__name__}")
    card = card_for(model, card)
    folder = Path(folder)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}

    def verify(tmp: Path) -> None:
        stored = load_file(tmp)
        if stored.keys() != state.keys() or not all(torch.equal(stored[k], state[k]) for k in state):
            raise OSError(f"{folder / WEIGHTS_NAME} did not read back as written; nothing was replaced")

    with atomic_output(folder / WEIGHTS_NAME, verify=verify) as handle:
        handle.write(to_bytes(state, metadata={"format": FORMAT}))
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "model_config": config.to_dict(),
        "style_name": getattr(model, "style_name", None) or card.style,
        "style_sha256": getattr(model, "style_sha256", None), "card": card.to_dict(),
    }
    atomic_write_text(folder / CONFIG_NAME, json.dumps(meta, indent=2) + "\n")
    atomic_write_text(folder / CARD_NAME, card.markdown(config.to_dict()))
    return folder


def locate(name_or_folder: str | os.PathLike, *, revision: str | None = None,
           allow_download: bool | None = None) -> Path:
    """The local folder of a pretrained model: the folder itself, or a Hub repository's files (:mod:`reconet_lib.hub`).

    Raises:
        UserInputError: a folder without ``config.json`` / ``model.safetensors``, or a name that is neither an
            existing folder nor a repository id ``owner/name``.
        ResourceUnavailable: the repository's files could not be had (one line: why, and how to provide them).
    """
    path = Path(name_or_folder).expanduser()
    if path.is_dir():
        missing = [n for n in REQUIRED if not (path / n).is_file()]
        if missing:
            raise UserInputError(f"{path} is not a pretrained ReCoNet folder: {', '.join(missing)} missing; "
                                 "write one with model.save_pretrained(folder)")
        return path
    name = os.fspath(name_or_folder)
    if not hub.is_repo_id(name) or os.path.isabs(name):
        raise UserInputError(f"{name!r} is neither a folder nor a Hugging Face repository id (owner/name); "
                             "give the folder written by model.save_pretrained or a repository id")
    return hub.repository_folder(name, REQUIRED, revision=revision, allow_download=allow_download)


def read_config(folder: str | os.PathLike) -> dict:
    """``config.json`` of a pretrained folder, checked (format tag and version); one-line errors."""
    path = Path(folder) / CONFIG_NAME
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserInputError(f"{path} is not readable JSON ({first_line(exc, 120)}); "
                             "write it again with model.save_pretrained") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("model_config"), dict):
        raise UserInputError(f"{path} is not a ReCoNet config (no format tag {FORMAT!r}); "
                             "write it with model.save_pretrained")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        raise UserInputError(f"{path} has format version {version!r}; this reconet_lib reads up to "
                             f"{FORMAT_VERSION}: upgrade reconet_lib")
    return meta


def read_card(meta: dict, folder: str | os.PathLike) -> ModelCard | None:
    """The :class:`ModelCard` in a checked ``config.json`` (None if it has none)."""
    if meta.get("card") is None:
        return None
    try:
        return ModelCard.from_dict(meta["card"])
    except UserInputError as exc:
        raise UserInputError(f"{Path(folder) / CONFIG_NAME}: {first_line(exc, 160)}") from None


def read_weights(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict in ``model.safetensors`` (CPU tensors); a damaged file is a one-line error."""
    # lazy: safetensors is needed only to save or load a shared model
    from safetensors.torch import load_file

    path = Path(folder) / WEIGHTS_NAME
    try:
        return load_file(path)
    except Exception as exc:  # SafetensorError, OSError, ...: the file is damaged or unreadable
        raise UserInputError(f"{path} is not a readable safetensors file ({first_line(exc, 120)}); "
                             "write it again with model.save_pretrained") from None


def push(model, repo_id: str, *, card: ModelCard | None = None, private: bool = False, token: str | None = None,
         commit_message: str = "Upload ReCoNet", api=None) -> str:
    """:func:`save` ``model`` into a temporary folder and upload it (``ReCoNet.push_to_hub`` calls this).

    Arguments as :func:`save` and :func:`reconet_lib.hub.upload_folder`. Returns the URL of the commit.
    """
    with tempfile.TemporaryDirectory(prefix="reconet-push-") as tmp:
        save(model, tmp, card=card)
        return hub.upload_folder(tmp, repo_id, private=private, token=token, commit_message=commit_message, api=api)
