"""Shareable models: a trained ReCoNet as a folder in the Hugging Face Hub's conventions, saved, loaded and pushed.

A pretrained folder holds three files (the layout of ``huggingface_hub.PyTorchModelHubMixin``):

* ``config.json``: ``format`` (``"reconet-pretrained"``), ``format_version``, ``model_config`` (the
  :class:`reconet_lib.network.ReCoNetConfig` as a dict), ``style_name``, ``style_sha256`` and ``card`` (the
  :class:`ModelCard` values: style, recipe, training steps, measured ``e_stab`` / ``E_warp`` and on what);
* ``model.safetensors``: the state dict (safetensors: no pickle, so loading runs no code);
* ``README.md``: the model card, with the Hub's YAML header, written from the same values.

:func:`save_pretrained` writes them atomically; :func:`from_pretrained` reads a local folder or a Hub repository
``owner/name``; :func:`push_to_hub` uploads. The round trip is exact: the loaded network gives bit-identical
outputs. :class:`HubMixin` puts the three functions on a model class as methods.

Where a repository's files come from follows the library's resource policy (:mod:`reconet_lib.resources`):

1. a local folder (the argument itself);
2. a mirror: ``$RECONET_MIRROR/<owner>/<name>/`` when ``RECONET_MIRROR`` names a folder;
3. the Hugging Face cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``), which
   is all that is used when downloads are off (``RECONET_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``);
4. a download from the Hub into that cache.

If none has the files, :class:`~reconet_lib.resources.ResourceUnavailable` says in one line what is missing and
how to provide it. No repository name is built in: this module registers no address.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .errors import UserInputError, first_line
from .files import atomic_output, atomic_write_text

FORMAT = "reconet-pretrained"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
FILES = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME)
#: A Hub repository id: ``owner/name`` of letters, digits, ``-``, ``_`` and ``.``.
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")


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
        from .config import from_dict

        return from_dict(cls, data, "model card")

    def markdown(self, model_config: dict) -> str:
        """The ``README.md`` text: the Hub's YAML header, then the card in words."""
        def number(value):
            return "not measured" if value is None else f"{value:.6f}"

        from .config import REPOSITORY_URL

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
            "```python", "from reconet_lib.hub import from_pretrained",
            'model = from_pretrained("<this repository or folder>")  # eval mode, output clamped to [0, 1]',
            "```", "",
        ]
        if self.notes:
            lines += ["## Notes", "", self.notes, ""]
        return "\n".join(lines)


def _card_for(model, card: ModelCard | None) -> ModelCard:
    if card is not None:
        if not isinstance(card, ModelCard):
            raise UserInputError(f"card must be a reconet_lib.hub.ModelCard; got {type(card).__name__}")
        return card
    return ModelCard(style=getattr(model, "style_name", None) or "unknown")


def save_pretrained(model, folder: str | os.PathLike, *, card: ModelCard | None = None) -> Path:
    """Write ``model`` as a pretrained folder: ``config.json``, ``model.safetensors``, ``README.md``.

    Each file is written atomically (temporary name, then rename); the weights are read back and compared before
    they replace anything.

    Args:
        model: a :class:`~reconet_lib.network.ReCoNet` (its ``style_name`` / ``style_sha256`` attributes, set by
            ``load_model`` and ``from_pretrained``, are kept).
        folder: the folder to write (created if missing; files of the same names in it are replaced).
        card: what the model card says; default: only the style name.
    Returns:
        The folder.
    """
    from safetensors.torch import load_file, save

    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        raise UserInputError(f"save_pretrained needs a ReCoNet (with a .config); got {type(model).__name__}")
    card = _card_for(model, card)
    folder = Path(folder)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}

    def verify(tmp: Path) -> None:
        stored = load_file(tmp)
        if stored.keys() != state.keys() or not all(torch.equal(stored[k], state[k]) for k in state):
            raise OSError(f"{folder / WEIGHTS_NAME} did not read back as written; nothing was replaced")

    data = save(state, metadata={"format": FORMAT})
    with atomic_output(folder / WEIGHTS_NAME, verify=verify) as handle:
        handle.write(data)
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "model_config": config.to_dict(),
        "style_name": getattr(model, "style_name", None) or card.style,
        "style_sha256": getattr(model, "style_sha256", None), "card": card.to_dict(),
    }
    atomic_write_text(folder / CONFIG_NAME, json.dumps(meta, indent=2) + "\n")
    atomic_write_text(folder / CARD_NAME, card.markdown(config.to_dict()))
    return folder


def export_checkpoint(checkpoint: str | os.PathLike, folder: str | os.PathLike, *, recipe: str = "unknown",
                      e_stab: float | None = None, e_warp: float | None = None, evaluated_on: str = "",
                      notes: str = "") -> Path:
    """A training checkpoint (``.pt``) as a pretrained folder; the card takes style, steps and config from it."""
    from .checkpoint import load_checkpoint, load_model

    payload = load_checkpoint(checkpoint)
    model = load_model(checkpoint)
    card = ModelCard(style=payload["style_name"], recipe=recipe, steps=payload.get("step"), e_stab=e_stab,
                     e_warp=e_warp, evaluated_on=evaluated_on, train_config=payload.get("train_config"), notes=notes)
    return save_pretrained(model, folder, card=card)


# ------------------------------------------------------------------------------------------------- loading


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def hub_downloads_allowed() -> bool:
    """False when ``RECONET_OFFLINE=1`` (the library's switch) or ``HF_HUB_OFFLINE=1`` (the Hub's) is set."""
    from .resources import downloads_allowed

    return downloads_allowed() and not _truthy("HF_HUB_OFFLINE")


def hf_cache_dir() -> Path:
    """The Hugging Face cache folder, read from the environment now: ``$HF_HUB_CACHE``, ``$HF_HOME/hub`` or the default."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in (CONFIG_NAME, WEIGHTS_NAME))


def _from_hub(repo_id: str, revision: str | None, allow_download: bool | None) -> Path:
    """The folder holding ``config.json`` and ``model.safetensors`` of ``repo_id``: mirror, HF cache or download."""
    from .download import MIRROR_ENV
    from .resources import OFFLINE_ENV, ResourceUnavailable

    mirror = os.environ.get(MIRROR_ENV, "")
    if mirror and Path(mirror).expanduser().is_dir() and _complete(Path(mirror).expanduser() / repo_id):
        return Path(mirror).expanduser() / repo_id
    allowed = hub_downloads_allowed() if allow_download is None else allow_download
    cache = hf_cache_dir()
    try:
        from huggingface_hub import hf_hub_download

        paths = [hf_hub_download(repo_id, name, revision=revision, cache_dir=cache, local_files_only=not allowed)
                 for name in (CONFIG_NAME, WEIGHTS_NAME)]
    except Exception as exc:  # not found, offline and not cached, network or permission errors: one message
        why = (f"it is not in the Hugging Face cache {cache} and downloads are off"
               if not allowed else f"{type(exc).__name__}: {first_line(exc, 160)}")
        unset = f" (or allow downloads: unset {OFFLINE_ENV} and HF_HUB_OFFLINE)" if not allowed else ""
        raise ResourceUnavailable(
            f"the pretrained model {repo_id!r} could not be had: {why}. To provide it, run "
            f"`huggingface-cli download {repo_id}` on a machine with internet and copy its cache into {cache}, "
            f"or pass the folder written by save_pretrained, or put it under {MIRROR_ENV}/{repo_id}{unset}",
            repo_id) from None
    return Path(paths[0]).parent


def resolve_pretrained(name_or_folder: str | os.PathLike, *, revision: str | None = None,
                       allow_download: bool | None = None) -> Path:
    """The local folder of a pretrained model: the folder itself, or a Hub repository's files (see the module doc).

    Raises:
        UserInputError: a folder without ``config.json`` / ``model.safetensors``, or a name that is neither an
            existing folder nor a repository id ``owner/name``.
        ResourceUnavailable: the repository's files could not be had (one line: why, and how to provide them).
    """
    path = Path(name_or_folder).expanduser()
    if path.is_dir():
        if not _complete(path):
            missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if not (path / n).is_file()]
            raise UserInputError(f"{path} is not a pretrained ReCoNet folder: {', '.join(missing)} missing; "
                                 "write one with save_pretrained(model, folder)")
        return path
    name = os.fspath(name_or_folder)
    if not _REPO_ID.match(name) or name.startswith((".", "~")) or os.path.isabs(name):
        raise UserInputError(f"{name!r} is neither a folder nor a Hugging Face repository id (owner/name); "
                             "give the folder written by save_pretrained or a repository id")
    return _from_hub(name, revision, allow_download)


def read_config(folder: str | os.PathLike) -> dict:
    """``config.json`` of a pretrained folder, checked (format tag and version)."""
    path = Path(folder) / CONFIG_NAME
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserInputError(f"{path} is not readable JSON ({first_line(exc, 120)}); write it with save_pretrained") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "model_config" not in meta:
        raise UserInputError(f"{path} is not a ReCoNet config (no format tag {FORMAT!r}); write it with save_pretrained")
    if not isinstance(meta.get("format_version"), int) or meta["format_version"] > FORMAT_VERSION:
        raise UserInputError(f"{path} has format version {meta.get('format_version')!r}; this reconet_lib reads up to "
                             f"{FORMAT_VERSION}: upgrade reconet_lib")
    return meta


def from_pretrained(name_or_folder: str | os.PathLike, *, device: str | torch.device | None = None,
                    revision: str | None = None, allow_download: bool | None = None, model_class=None):
    """Load a pretrained ReCoNet from a folder or a Hub repository ``owner/name``, in eval mode.

    Args:
        name_or_folder: a folder written by :func:`save_pretrained`, or a repository id.
        device: where to put the model (default CPU).
        revision: a Hub branch, tag or commit (default: the main branch).
        allow_download: override ``RECONET_OFFLINE`` / ``HF_HUB_OFFLINE`` (None: downloads allowed unless set).
        model_class: the class to build (default :class:`~reconet_lib.network.ReCoNet`; a subclass with
            :class:`HubMixin` passes itself).
    Returns:
        The model in eval mode, with ``style_name``, ``style_sha256`` and ``card`` (:class:`ModelCard`) attributes.
    """
    from safetensors.torch import load_file

    from .network import ReCoNet, ReCoNetConfig

    folder = resolve_pretrained(name_or_folder, revision=revision, allow_download=allow_download)
    meta = read_config(folder)
    cls = model_class or ReCoNet
    try:
        model = cls(ReCoNetConfig.from_dict(meta["model_config"]))
        model.load_state_dict(load_file(folder / WEIGHTS_NAME))
    except (TypeError, KeyError, RuntimeError, OSError) as exc:  # safetensors raises its own errors as these too
        raise UserInputError(f"{folder}: the stored weights do not match its config ({first_line(exc, 160)})") from None
    except Exception as exc:  # a damaged safetensors file (SafetensorError)
        raise UserInputError(f"{folder / WEIGHTS_NAME} is not a readable safetensors file ({first_line(exc, 120)})") from None
    model.style_name = meta.get("style_name")
    model.style_sha256 = meta.get("style_sha256")
    model.card = ModelCard.from_dict(meta["card"]) if isinstance(meta.get("card"), dict) else None
    return model.to(device=device or "cpu").eval()


# ------------------------------------------------------------------------------------------------- pushing


def push_to_hub(model, repo_id: str, *, card: ModelCard | None = None, private: bool = False,
                token: str | None = None, commit_message: str = "Upload ReCoNet", api=None) -> str:
    """Save ``model`` with :func:`save_pretrained` into a temporary folder and upload it to ``repo_id``.

    Args:
        model, card: as :func:`save_pretrained`.
        repo_id: ``owner/name`` on the Hub (created if it does not exist; needs a write token: ``huggingface-cli
            login`` or ``token=``).
        private: create the repository private.
        api: a ``huggingface_hub.HfApi`` (default: a new one).
    Returns:
        The URL of the commit.
    Raises:
        UserInputError: ``repo_id`` is not ``owner/name``, or uploads are off (``RECONET_OFFLINE=1`` /
            ``HF_HUB_OFFLINE=1``), or the Hub refused (one line with its reason).
    """
    if not isinstance(repo_id, str) or not _REPO_ID.match(repo_id):
        raise UserInputError(f"repo_id must be a Hugging Face repository id owner/name; got {repo_id!r}")
    if not hub_downloads_allowed():
        raise UserInputError(f"cannot push {repo_id}: network access is off (RECONET_OFFLINE=1 or HF_HUB_OFFLINE=1); "
                             "save_pretrained to a folder instead, or unset them")
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="reconet-push-") as tmp:
        save_pretrained(model, tmp, card=card)
        try:
            api.create_repo(repo_id, private=private, exist_ok=True)
            info = api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message)
        except Exception as exc:  # authentication, permission, network: the Hub's reason in one line
            raise UserInputError(f"pushing to {repo_id} failed: {type(exc).__name__}: {first_line(exc, 160)}") from None
    return str(getattr(info, "commit_url", info))


class HubMixin:
    """``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` as methods of a ReCoNet class.

    Add it first among the bases (``class ReCoNet(HubMixin, nn.Module)``); it adds no state and no ``__init__``.
    """

    def save_pretrained(self, folder: str | os.PathLike, *, card: ModelCard | None = None) -> Path:
        """See :func:`reconet_lib.hub.save_pretrained`."""
        return save_pretrained(self, folder, card=card)

    @classmethod
    def from_pretrained(cls, name_or_folder: str | os.PathLike, **kwargs):
        """See :func:`reconet_lib.hub.from_pretrained`."""
        return from_pretrained(name_or_folder, model_class=cls, **kwargs)

    def push_to_hub(self, repo_id: str, **kwargs) -> str:
        """See :func:`reconet_lib.hub.push_to_hub`."""
        return push_to_hub(self, repo_id, **kwargs)
