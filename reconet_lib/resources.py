"""Where weights, style images and datasets come from: the one resource policy of the library.

Every registered file (:data:`reconet_lib.download.REGISTRY`: VGG-16 and RAFT weights, the style images,
the datasets) is looked for in this order by :func:`locate`:

1. a local file: the ``path`` argument, else the file named by the resource's environment variable
   (:data:`LOCAL_FILE_ENV`: ``RECONET_VGG_WEIGHTS``, ``RECONET_RAFT_WEIGHTS``); a named file that does
   not exist is an error, never silently skipped;
2. the cache: :func:`cache_dir` (weights: torch hub's ``checkpoints`` folder, shared with torchvision;
   styles: ``data_dir()/styles``; datasets: ``data_dir()/downloads``), verified against its sha256;
3. a mirror (``$RECONET_MIRROR``: a folder, or a base URL when downloads are allowed);
4. a download from the registered URL (or ``$RECONET_BASE_URL_<KEY>``), allowed unless the user opts
   out with ``RECONET_OFFLINE=1``; verified (sha256, or torchvision's sha256 prefix for weights)
   before it is moved into the cache.

If all fail, :class:`ResourceUnavailable` says in one line what is missing, why, and how to provide it.
:func:`tutorial_resources` applies the policy to the tutorial models: ImageNet VGG-16 and the ``candy``
style whenever they can be had, random VGG weights and the procedural ``mosaic`` style only as the
announced offline fallback.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from . import download
from .config import data_dir
from .errors import UserInputError

#: Resources that a user may point at a local file with an environment variable.
LOCAL_FILE_ENV = {
    "vgg16_imagenet": "RECONET_VGG_WEIGHTS",
    "raft_large": "RECONET_RAFT_WEIGHTS",
    "raft_small": "RECONET_RAFT_WEIGHTS",
}
#: The registry names of the weight files (cached in torch hub's ``checkpoints`` folder).
WEIGHTS = ("vgg16_imagenet", "raft_large", "raft_small")
#: What each weight file is, for messages.
_TITLES = {
    "vgg16_imagenet": "the ImageNet VGG-16 weights",
    "raft_large": "the RAFT (large) weights",
    "raft_small": "the RAFT (small) weights",
}

OFFLINE_ENV = download.OFFLINE_ENV
downloads_allowed = download.downloads_allowed


class ResourceUnavailable(download.DownloadError, UserInputError):
    """A weight file, style image or dataset could not be had; the one-line message says how to provide it.

    Both a :class:`~reconet_lib.download.DownloadError` (what callers of ``fetch`` catch) and a
    :class:`~reconet_lib.errors.UserInputError` (what the command line prints as one line).
    """

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message)
        self.name = name


def cache_dir(name: str) -> Path:
    """The cache folder of registered resource ``name`` (read from the environment at call time)."""
    download.resource(name)  # unknown names raise a UserInputError listing the known ones
    if name in WEIGHTS:
        return Path(torch.hub.get_dir()) / "checkpoints"
    if name.startswith("style_"):
        return data_dir() / "styles"
    return data_dir() / "downloads"


def _title(name: str) -> str:
    if name in _TITLES:
        return _TITLES[name]
    if name.startswith("style_"):
        return f"the style image {name[len('style_'):]!r}"
    return f"the dataset file {name!r}"


def how_to_provide(name: str) -> str:
    """The ways to provide resource ``name`` by hand, as one sentence."""
    res = download.resource(name)
    ways = [f"download {res.url} on a machine with internet and"]  # the registered address, not an override
    env = LOCAL_FILE_ENV.get(name)
    if env:
        ways.append(f"set {env}=/path/to/{res.filename} or")
    ways.append(f"copy it into {cache_dir(name)}, or point {download.MIRROR_ENV} at a folder that holds {res.filename}")
    if not downloads_allowed():
        ways.append(f"(or allow downloads: unset {OFFLINE_ENV})")
    return " ".join(ways)


def local_file(name: str, path: str | os.PathLike | None = None) -> Path | None:
    """Steps 1-2 of the policy without network or copying: the explicit/env file, else a verified cached file.

    Raises:
        UserInputError: ``path`` or the resource's environment variable names a file that does not exist.
    """
    res = download.resource(name)
    env = LOCAL_FILE_ENV.get(name)
    if path is not None:
        chosen = Path(path).expanduser()
        if not chosen.is_file():
            raise UserInputError(f"{chosen} does not exist; give the path of {_title(name)} ({res.filename})")
        return chosen
    if env and os.environ.get(env):
        chosen = Path(os.environ[env]).expanduser()
        if not chosen.is_file():
            raise UserInputError(f"{env}={os.environ[env]} is not a file; point it at {res.filename} or unset it")
        return chosen
    cached = cache_dir(name) / res.filename
    return cached if download.is_verified(res, cached) else None


def locate(
    name: str,
    *,
    path: str | os.PathLike | None = None,
    allow_download: bool | None = None,
    base_url: str | None = None,
    progress: bool = False,
) -> Path:
    """The local path of registered resource ``name``, found or downloaded by the policy of this module.

    Args:
        name: registry name, e.g. ``"vgg16_imagenet"``, ``"raft_large"``, ``"style_candy"``, ``"mpi_sintel"``.
        path: an explicit local file (step 1); it is used as is (not copied, not hashed).
        allow_download: override ``$RECONET_OFFLINE`` (None: downloads allowed unless it is 1).
        base_url: replaces the server part of the URL (default ``$RECONET_BASE_URL_<KEY>``).
        progress: show a download progress bar.
    Raises:
        ResourceUnavailable: nothing worked; the message names the file, the cause and how to provide it.
    """
    found = local_file(name, path)
    if found is not None:
        return found
    res = download.resource(name)
    try:
        return download.fetch(res, cache_dir(name), progress=progress, allow_download=allow_download,
                              base_url=base_url)
    except download.DownloadError as exc:
        message = (f"{_title(name)} ({res.filename}) could not be had: {exc.reason}. "
                   f"To provide the file, {how_to_provide(name)}.")
        raise ResourceUnavailable(message, name) from None


@dataclass(frozen=True)
class TutorialResources:
    """What the tutorial models train with (see :func:`tutorial_resources`).

    Attributes:
        loss_network: ``"vgg16_imagenet"`` (ImageNet VGG-16 is in place: ``VGGFeatures("imagenet")`` finds it
            without network) or ``"vgg16_random"`` (the offline stand-in, announced: a seeded random VGG-16 with
            relative loss terms, :meth:`reconet_lib.losses.LossWeights.offline`).
        style: ``"candy"`` or, offline, the procedural ``"mosaic"``.
        message: the one fallback announcement ("" when nothing fell back).
        details: why each stand-in was needed (the resource policy's full explanation), for whoever asks.
    """

    loss_network: str
    style: str
    message: str = ""
    details: tuple[str, ...] = ()

    @property
    def vgg_weights(self) -> str | None:
        """``"imagenet"`` when the real loss network is used, else None (seeded random weights)."""
        return "imagenet" if self.loss_network == "vgg16_imagenet" else None

    @property
    def fallback(self) -> bool:
        """True when an offline stand-in is used."""
        return self.loss_network != "vgg16_imagenet" or self.style != "candy"


#: Messages already printed in this process (each fallback is announced once per kernel).
_announced: set[str] = set()


def tutorial_resources(*, allow_download: bool | None = None, announce: bool = True) -> TutorialResources:
    """ImageNet VGG-16 and the ``candy`` style whenever they can be had (file, cache, mirror or download).

    Whatever is missing falls back: the loss network to a seeded random VGG-16 with relative loss terms
    (:meth:`reconet_lib.losses.LossWeights.offline`), the style to the procedural ``mosaic``. The fallback is announced in one
    short sentence that says how to get the real one, printed once per process (per notebook kernel) when
    ``announce``; the policy's full explanation of each failure is kept in ``details``.
    """
    loss_network, style = "vgg16_imagenet", "candy"
    stand_ins, fixes, details = [], [], []
    try:
        locate("vgg16_imagenet", allow_download=allow_download)
    except ResourceUnavailable as exc:
        loss_network = "vgg16_random"
        stand_ins.append("a random-weight VGG-16 instead of the ImageNet one")
        fixes.append(f"{LOCAL_FILE_ENV['vgg16_imagenet']}=/path/to/vgg16-397923af.pth")
        details.append(str(exc))
    try:
        locate("style_candy", allow_download=allow_download)
    except ResourceUnavailable as exc:
        style = "mosaic"
        stand_ins.append("the procedural 'mosaic' instead of the painting 'candy'")
        fixes.append(f"{download.MIRROR_ENV}=<folder with candy.jpg>")
        details.append(str(exc))
    message = ""
    if stand_ins:
        message = (f"Offline: the tutorial models use {' and '.join(stand_ins)}; for the real ones go online "
                   f"or set {' and '.join(fixes)}.")
        if announce and message not in _announced:
            _announced.add(message)
            print(message)
    return TutorialResources(loss_network=loss_network, style=style, message=message, details=tuple(details))
