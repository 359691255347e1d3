"""The Hugging Face Hub as a place files come from and go to, under the library's resource policy.

This module knows repositories, the Hugging Face cache, the offline switches and uploads; it knows nothing of
models. The pretrained-folder format (``config.json``, ``model.safetensors``, model card) is
:mod:`reconet_lib.pretrained`; ``ReCoNet.save_pretrained`` / ``ReCoNet.from_pretrained`` / ``ReCoNet.push_to_hub``
(:mod:`reconet_lib.network`) use both. It sits in the downloads layer, below the model, so the model's methods
reach it without an upward import.

Where the files of a repository ``owner/name`` come from (:func:`repository_folder`):

1. a mirror: ``$RECONET_MIRROR/<owner>/<name>/`` when ``RECONET_MIRROR`` names a folder that holds them;
2. the Hugging Face cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``), which
   is all that is used when downloads are off (``RECONET_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``);
3. a download from the Hub into that cache.

If none has them, :class:`~reconet_lib.resources.ResourceUnavailable` says in one line what is missing and how to
provide it. No repository name is built in: this module registers no address.

``huggingface_hub`` is imported inside the functions that download or upload: importing the library, or saving
and loading local folders, does not need it.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from .download import MIRROR_ENV
from .errors import UserInputError, first_line
from .resources import OFFLINE_ENV, ResourceUnavailable, downloads_allowed

#: The Hub's own offline switch (honoured as well as ``RECONET_OFFLINE``).
HF_OFFLINE_ENV = "HF_HUB_OFFLINE"
#: A Hub repository id: ``owner/name`` of letters, digits, ``-``, ``_`` and ``.``.
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")


def is_repo_id(name: object) -> bool:
    """True for a string of the form ``owner/name`` (not a path: no leading ``.``, ``~`` or ``/``)."""
    return isinstance(name, str) and bool(_REPO_ID.match(name)) and not name.startswith((".", "~"))


def hub_downloads_allowed() -> bool:
    """False when ``RECONET_OFFLINE=1`` (the library's switch) or ``HF_HUB_OFFLINE=1`` (the Hub's) is set."""
    hf_offline = os.environ.get(HF_OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    return downloads_allowed() and not hf_offline


def hf_cache_dir() -> Path:
    """The Hugging Face cache folder, read from the environment now: ``$HF_HUB_CACHE``, ``$HF_HOME/hub``, or else
    ``$XDG_CACHE_HOME/huggingface/hub`` (``~/.cache/huggingface/hub``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def repository_folder(repo_id: str, names: tuple[str, ...], *, revision: str | None = None,
                      allow_download: bool | None = None) -> Path:
    """The local folder holding the files ``names`` of the Hub repository ``repo_id``: mirror, HF cache or download.

    Args:
        repo_id: ``owner/name``.
        names: the files that must be there (e.g. ``("config.json", "model.safetensors")``).
        revision: a branch, tag or commit (default: the main branch).
        allow_download: override the offline switches (None: downloads unless ``RECONET_OFFLINE`` /
            ``HF_HUB_OFFLINE`` is set).
    Raises:
        UserInputError: ``repo_id`` is not ``owner/name``.
        ResourceUnavailable: the files could not be had (one line: why, and how to provide them).
    """
    if not is_repo_id(repo_id):
        raise UserInputError(f"{repo_id!r} is not a Hugging Face repository id owner/name")
    mirror = os.environ.get(MIRROR_ENV, "")  # a folder here; a base URL (the other form) holds no files
    if mirror and all((Path(mirror).expanduser() / repo_id / n).is_file() for n in names):
        return Path(mirror).expanduser() / repo_id
    allowed = hub_downloads_allowed() if allow_download is None else allow_download
    cache = hf_cache_dir()
    try:
        # lazy: huggingface_hub is needed only to fetch a shared model by name
        from huggingface_hub import hf_hub_download

        paths = [hf_hub_download(repo_id, name, revision=revision, cache_dir=cache, local_files_only=not allowed)
                 for name in names]
    except Exception as exc:  # not found, offline and not cached, network or permission errors: one message
        why = (f"it is not in the Hugging Face cache {cache} and downloads are off"
               if not allowed else f"{type(exc).__name__}: {first_line(exc, 160)}")
        unset = f" (or allow downloads: unset {OFFLINE_ENV} and {HF_OFFLINE_ENV})" if not allowed else ""
        raise ResourceUnavailable(
            f"the pretrained model {repo_id!r} could not be had: {why}. To provide it, run "
            f"`huggingface-cli download {repo_id}` on a machine with internet and copy its cache into {cache}, "
            f"or pass the folder written by ReCoNet.save_pretrained, or put it under {MIRROR_ENV}/{repo_id}{unset}",
            repo_id) from None
    return Path(paths[0]).parent


def upload_folder(folder: str | os.PathLike, repo_id: str, *, private: bool = False, token: str | None = None,
                  commit_message: str = "Upload ReCoNet", api=None) -> str:
    """Upload every file of ``folder`` to the Hub repository ``repo_id`` (created if missing) in one commit.

    Args:
        folder: a local folder (e.g. one written by ``ReCoNet.save_pretrained``).
        repo_id: ``owner/name``; needs a write token (``huggingface-cli login`` or ``token=``).
        private: create the repository private.
        api: a ``huggingface_hub.HfApi`` (default: a new one with ``token``).
    Returns:
        The URL of the commit.
    Raises:
        UserInputError: ``repo_id`` is not ``owner/name``, uploads are off (``RECONET_OFFLINE=1`` /
            ``HF_HUB_OFFLINE=1``), or the Hub refused (one line with its reason).
    """
    if not is_repo_id(repo_id):
        raise UserInputError(f"repo_id must be a Hugging Face repository id owner/name; got {repo_id!r}")
    if not hub_downloads_allowed():
        raise UserInputError(f"cannot push {repo_id}: network access is off ({OFFLINE_ENV}=1 or {HF_OFFLINE_ENV}=1); "
                             "save_pretrained to a folder instead, or unset them")
    if api is None:
        # lazy: huggingface_hub is needed only to share a model
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=os.fspath(folder), commit_message=commit_message)
    except Exception as exc:  # authentication, permission, network: the Hub's reason in one line
        raise UserInputError(f"pushing to {repo_id} failed: {type(exc).__name__}: {first_line(exc, 160)}") from None
    return str(getattr(info, "commit_url", info))
