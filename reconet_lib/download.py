"""Registered downloads: verified, resumable fetches and safe archive extraction.

Every file the project downloads is described by a :class:`Resource` (URL, file name, size and
sha256, with a note wherever a size or hash is not known in advance). :func:`fetch` downloads a
resource into ``data_dir()/"downloads"`` (or a folder you choose):

1. If the final file is already there and verifies, it is returned at once (no network).
2. A mirror is tried first: ``mirror=`` or the environment variable ``RECONET_MIRROR``, either a
   local folder or a base URL holding a file of the same name.
3. Otherwise the file is downloaded in chunks into ``<file>.part`` with a progress bar. An existing
   ``.part`` is resumed with an HTTP ``Range`` request; a server that answers ``200`` instead of
   ``206`` makes the download start again cleanly. Downloads happen unless the user opts out with
   ``RECONET_OFFLINE=1`` (then only the file on disk and a mirror *folder* are used). The server part of
   a resource's URL can be replaced with ``RECONET_BASE_URL_<KEY>`` (``Resource.url_key``), e.g. to
   point the tests at a local server.
4. Size and sha256 are checked *before* the ``.part`` is renamed onto the final name, so a good
   file is never replaced by a partial or corrupt one.

Which local files, caches and fallbacks the library uses for weights and styles is decided in
:mod:`reconet_lib.resources`; this module only downloads and verifies.

:func:`extract` unpacks zip and tar archives after checking *every* member first: nothing is
written if a single member would land outside the target folder.
"""
from __future__ import annotations

import errno
import hashlib
import http.client
import json
import lzma
import os
import posixpath
import shutil
import socket
import stat
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .config import REPOSITORY_URL, data_dir
from .errors import ReconetError, UserInputError
from .files import RESUMABLE_SUFFIX, atomic_write_text, commit_part, partial_path, resumable_part, sweep_stale

#: Environment variable naming a mirror: a local folder or a base URL that holds files by their file name.
MIRROR_ENV = "RECONET_MIRROR"
#: Environment variable that switches downloads off (``1``); files on disk and mirror folders still work.
OFFLINE_ENV = "RECONET_OFFLINE"
#: Prefix of the environment variables that replace a resource's base URL: ``RECONET_BASE_URL_<url_key>``.
BASE_URL_ENV_PREFIX = "RECONET_BASE_URL_"

_CHUNK = 1 << 20  # bytes read and written per step
_TIMEOUT_S = 60  # seconds without any data before a connection counts as failed
_USER_AGENT = f"reconet_lib-downloader/0.1 (+{REPOSITORY_URL})"


class DownloadError(ReconetError):
    """A download or a verification failed; the message says what happened and what to do.

    ``reason`` is the short cause alone (for callers that compose their own one-line message).
    """

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


def downloads_allowed(allow: bool | None = None) -> bool:
    """Whether a download may be attempted: ``allow`` when given, else not when ``$RECONET_OFFLINE`` is 1/true."""
    if allow is not None:
        return bool(allow)
    value = os.environ.get(OFFLINE_ENV, "").strip().lower()
    if value in {"", "0", "false", "no", "off"}:
        return True
    if value in {"1", "true", "yes", "on"}:
        return False
    raise UserInputError(f"{OFFLINE_ENV}={value!r} is not understood; use 1 (no downloads) or 0, or unset it")


@dataclass(frozen=True)
class Resource:
    """One downloadable file.

    Attributes:
        name: registry key, e.g. ``"mpi_sintel"`` or ``"style_candy"``.
        url: where the file is downloaded from.
        filename: the file's name on disk (also the name looked up in a mirror).
        size: exact size in bytes, or ``None`` where it is not known in advance (see ``note``).
        sha256: lower-case hex digest, or ``None`` where it is not known in advance (see ``note``).
        note: what the file holds and why a size or hash is unknown, where that is so.
        approx_bytes: a rough size for planning disk space (never used for verification).
        sha256_prefix: leading hex digits of the sha256 checked when the full digest is not known
            (torchvision publishes 8 of them in its weight file names).
        url_key: names the environment variable ``RECONET_BASE_URL_<url_key>`` that replaces everything
            before the file name in ``url`` (empty: not overridable).
    """

    name: str
    url: str
    filename: str
    size: int | None
    sha256: str | None
    note: str = ""
    approx_bytes: int | None = None
    sha256_prefix: str | None = None
    url_key: str = ""

    def describe_size(self) -> str:
        """Human-readable size: exact when known, ``"about ..."`` when only a rough figure exists."""
        if self.size is not None:
            return format_bytes(self.size)
        if self.approx_bytes is not None:
            return f"about {format_bytes(self.approx_bytes)}"
        return "unknown"


def source_url(res: Resource, base_url: str | None = None) -> str:
    """Where ``res`` is downloaded from: ``base_url`` (or ``$RECONET_BASE_URL_<url_key>``) + file name, else ``res.url``."""
    if base_url is None and res.url_key:
        base_url = os.environ.get(BASE_URL_ENV_PREFIX + res.url_key) or None
    if not base_url:
        return res.url
    return base_url.rstrip("/") + "/" + urllib.parse.quote(res.filename)


def base_url_override(res: Resource) -> tuple[str, str] | None:
    """``(variable, value)`` when ``$RECONET_BASE_URL_<url_key>`` replaces ``res``'s server, else None.

    A value that is not an http(s)/ftp/file URL raises a :class:`UserInputError` naming the variable.
    """
    if not res.url_key:
        return None
    variable = BASE_URL_ENV_PREFIX + res.url_key
    value = os.environ.get(variable) or None
    if value is None:
        return None
    if not _is_url(value):
        raise UserInputError(
            f"{variable}={value!r} is not a URL: set it to http(s)://host/folder holding {res.filename}, "
            f"or unset it to download from {res.url}"
        )
    return variable, value


def format_bytes(n: int) -> str:
    """``1234567`` -> ``"1.2 MB"`` (decimal units, as dataset pages quote them)."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------

_STYLE_BASE = "https://raw.githubusercontent.com/skq024/Real-time-Coherent-Style-Transfer-For-Videos/master/styles/"
_SCENEFLOW_BASE = "https://lmb.informatik.uni-freiburg.de/data/SceneFlowDatasets_CVPR16/Release_april16/data/"
_SCENEFLOW_PAGE = "https://lmb.informatik.uni-freiburg.de/resources/datasets/SceneFlowDatasets.en.html"
_NO_HASH = (
    "no sha256 is published by the dataset authors that this project could cite (their download page could not "
    "be consulted when it was registered), so it is unknown until you download it; record it then with register()"
)
_GB = 1_000_000_000

# (file name, size in bytes, sha256) of the five style images of the original ReCoNet code.
_STYLE_FILES = (
    ("autoportrait.jpg", 59925, "bc69786e510e41242aa22fcd4044b9d4b6829ed2b61fac09c1c688ffadfbde2a"),
    ("candy.jpg", 376101, "1af09b2c18a6674b7d88849cb87564dd77e1ce04d1517bb085449b614cc0c8d8"),
    ("composition.jpg", 92740, "6252079eb470f14495848a02ff93991cef43a678e7b64ab427df130c755599f7"),
    ("edtaonisl.jpg", 251507, "6993247396a33b7297b4dc0f59e8114f223ac5a3ab604f251f9f5e25c592e44f"),
    ("udnie.jpg", 39795, "270be68e7c6c282c9edb62ab7bcd345b1fb6b6cebb5d1f10d9a2d21915f69a8a"),
)


def _sceneflow(subset: str, folder: str, filename: str, what: str, approx_gb: float | None) -> Resource:
    size_note = (
        f"exact size unknown (about {approx_gb:g} GB according to third-party download scripts)"
        if approx_gb
        else "size unknown"
    )
    return Resource(
        name=filename.split(".")[0].replace("__", "_"),
        url=f"{_SCENEFLOW_BASE}{subset}/{folder}/{filename}",
        filename=filename,
        size=None,
        sha256=None,
        note=f"Scene Flow {subset}: {what}. {size_note}; {_NO_HASH}. "
        f"Research use only, see {_SCENEFLOW_PAGE} (the page also offers torrents).",
        approx_bytes=int(approx_gb * _GB) if approx_gb else None,
        url_key="SCENEFLOW",
    )


_PYTORCH_BASE = "https://download.pytorch.org/models/"
_PREFIX_NOTE = (
    "torchvision publishes no byte count or full sha256 for its weight files; the 8 hex digits in the file "
    "name are the start of the file's sha256 (torch.hub checks the same prefix), and that prefix is verified"
)


def _weights(name: str, filename: str, what: str, approx_mb: float) -> Resource:
    return Resource(
        name=name,
        url=_PYTORCH_BASE + filename,
        filename=filename,
        size=None,
        sha256=None,
        sha256_prefix=filename.rsplit("-", 1)[-1].split(".")[0],
        note=f"{what} (torchvision, BSD-3-Clause code; see torchvision's documentation for the weights' terms). "
        f"About {approx_mb:g} MB; {_PREFIX_NOTE}.",
        approx_bytes=int(approx_mb * 1_000_000),
        url_key="PYTORCH",
    )


def builtin_resources() -> dict[str, Resource]:
    """The resources the project knows about, keyed by name (a fresh dict on every call)."""
    resources = [
        Resource(
            name="mpi_sintel",
            url="http://files.is.tue.mpg.de/sintel/MPI-Sintel-complete.zip",
            filename="MPI-Sintel-complete.zip",
            size=None,
            sha256=None,
            note="MPI Sintel (Butler et al. 2012): training/{clean,final,albedo} frames, training/flow "
            "(.flo, frame k -> k+1), training/occlusions and training/invalid masks (white = occluded), "
            "plus the test frames. About 5.3 GB; the exact byte count and a checksum are not published "
            "(US mirror: http://sintel.cs.washington.edu/MPI-Sintel-complete.zip).",
            approx_bytes=int(5.3 * _GB),
            url_key="SINTEL",
        ),
        Resource(
            name="flyingchairs2",
            url="https://lmb.informatik.uni-freiburg.de/data/FlyingChairs2.zip",
            filename="FlyingChairs2.zip",
            size=None,
            sha256=None,
            note="FlyingChairs2 (Ilg et al. 2018): image pairs img_0/img_1 with forward flow_01 and backward "
            "flow_10 (.flo), occlusions occ_01/occ_10 (white = occluded) and motion boundaries. Exact size "
            f"unknown (about 31 GB according to third-party code); {_NO_HASH}. Research use only, see "
            "https://lmb.informatik.uni-freiburg.de/resources/datasets/FlyingChairs.en.html",
            approx_bytes=31 * _GB,
            url_key="CHAIRS",
        ),
        _sceneflow("Monkaa", "raw_data", "monkaa__frames_finalpass.tar",
                   "final-pass stereo frames (PNG, 960x540)", 38),
        _sceneflow("Monkaa", "derived_data", "monkaa__optical_flow.tar.bz2",
                   "optical flow into_future and into_past (.pfm) for both views", None),
        _sceneflow("Monkaa", "derived_data", "monkaa__motion_boundaries.tar.bz2",
                   "motion-boundary masks (PGM) for both views and directions", None),
        _sceneflow("Monkaa", "derived_data", "monkaa__disparity.tar.bz2",
                   "disparity maps (.pfm); not needed for ReCoNet training", 13),
        _sceneflow("FlyingThings3D", "raw_data", "flyingthings3d__frames_finalpass.tar",
                   "final-pass stereo frames (PNG, 960x540), TRAIN and TEST splits", 42),
        _sceneflow("FlyingThings3D", "derived_data", "flyingthings3d__optical_flow.tar.bz2",
                   "optical flow into_future and into_past (.pfm) for both views", 311),
        _sceneflow("FlyingThings3D", "derived_data", "flyingthings3d__motion_boundaries.tar.bz2",
                   "motion-boundary masks (PGM) for both views and directions", None),
        _sceneflow("FlyingThings3D", "derived_data", "flyingthings3d__disparity.tar.bz2",
                   "disparity maps (.pfm); not needed for ReCoNet training", 93),
    ]
    resources += [
        _weights("vgg16_imagenet", "vgg16-397923af.pth", "VGG-16 ImageNet weights (VGG16_Weights.IMAGENET1K_V1)", 553),
        _weights("raft_large", "raft_large_C_T_SKHT_V2-ff5fadd5.pth",
                 "RAFT large weights (Raft_Large_Weights.C_T_SKHT_V2, torchvision's default)", 21),
        _weights("raft_small", "raft_small_C_T_V2-01064c6d.pth",
                 "RAFT small weights (Raft_Small_Weights.C_T_V2, torchvision's default)", 4),
    ]
    for filename, size, sha in _STYLE_FILES:
        stem = filename.rsplit(".", 1)[0]
        resources.append(
            Resource(
                name=f"style_{stem}",
                url=_STYLE_BASE + filename,
                filename=filename,
                size=size,
                sha256=sha,
                note="style image of the original ReCoNet code (see reconet_lib.styles for provenance and licence)",
                url_key="STYLES",
            )
        )
    return {r.name: r for r in resources}


#: Every known resource by name. Add your own with :func:`register`.
REGISTRY: dict[str, Resource] = builtin_resources()


def register(res: Resource, *, replace: bool = False) -> Resource:
    """Add a resource to :data:`REGISTRY` so that ``fetch(res.name)`` works.

    Re-registering an identical resource is a no-op; a different resource under a taken name needs
    ``replace=True``.
    """
    if not isinstance(res, Resource):
        raise UserInputError(f"register() takes a reconet_lib.download.Resource, got {type(res).__name__}")
    if not res.name or not res.url or not res.filename:
        raise UserInputError(f"a resource needs a name, a url and a filename; got {res!r}")
    if Path(res.filename).name != res.filename or res.filename in {".", ".."}:
        raise UserInputError(f"filename must be a bare file name without folders; got {res.filename!r}")
    if res.sha256 is not None and (len(res.sha256) != 64 or any(c not in "0123456789abcdef" for c in res.sha256)):
        raise UserInputError(f"sha256 must be 64 lower-case hex digits or None; got {res.sha256!r}")
    if res.sha256_prefix is not None and (
        not 1 <= len(res.sha256_prefix) <= 64 or any(c not in "0123456789abcdef" for c in res.sha256_prefix)
    ):
        raise UserInputError(f"sha256_prefix must be lower-case hex digits or None; got {res.sha256_prefix!r}")
    old = REGISTRY.get(res.name)
    if old is not None and old != res and not replace:
        raise UserInputError(
            f"a different resource is already registered as {res.name!r} ({old.url}); "
            "pick another name or pass replace=True"
        )
    REGISTRY[res.name] = res
    return res


def resource(name: str) -> Resource:
    """The registered resource called ``name``; an unknown name raises a UserInputError listing the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise UserInputError(
            f"no download is registered as {name!r}. Known names: {known}. "
            "Add your own with reconet_lib.download.register(Resource(...))."
        ) from None


# ---------------------------------------------------------------------------------------------
# Verification
# ---------------------------------------------------------------------------------------------

def sha256_file(path: str | os.PathLike) -> str:
    """Lower-case hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _mismatch(res: Resource, path: Path) -> tuple[str | None, str | None]:
    """``(problem, sha256)``: how ``path`` differs from ``res`` (None if it matches) and its digest.

    The digest is None when the size is already wrong (no need to read the file).
    """
    size = path.stat().st_size
    if res.size is not None and size != res.size:
        return f"size is {size} bytes, expected {res.size}", None
    got = sha256_file(path)
    if res.sha256 is not None and got != res.sha256:
        return f"sha256 is {got}, expected {res.sha256}", got
    if res.sha256 is None and res.sha256_prefix and not got.startswith(res.sha256_prefix):
        return f"sha256 is {got}, expected one starting with {res.sha256_prefix}", got
    return None, got


def _stamp_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.verified")


def is_verified(res: Resource, final: str | os.PathLike) -> bool:
    """Whether the file ``final`` exists and matches ``res`` (size, sha256 or its prefix).

    A stamp file beside it records a successful check, so an unchanged file is hashed only once.
    """
    return _is_verified(res, Path(final))


def _is_verified(res: Resource, final: Path) -> bool:
    """Whether ``final`` matches ``res``; a stamp of a previous check skips re-hashing an unchanged file."""
    if not final.is_file():
        return False
    st = final.stat()
    stamp = _stamp_path(final)
    try:
        record = json.loads(stamp.read_text())
        if (
            record.get("size") == st.st_size
            and record.get("mtime_ns") == st.st_mtime_ns
            and (res.sha256 is None or record.get("sha256") == res.sha256)
            and (not res.sha256_prefix or str(record.get("sha256", "")).startswith(res.sha256_prefix))
            and (res.size is None or res.size == st.st_size)
        ):
            return True
    except (OSError, ValueError, AttributeError):
        pass
    problem, digest = _mismatch(res, final)
    if problem is not None:
        return False
    _write_stamp(final, digest)
    return True


def _write_stamp(final: Path, digest: str) -> None:
    st = final.stat()
    record = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    atomic_write_text(_stamp_path(final), json.dumps(record))


# ---------------------------------------------------------------------------------------------
# Fetching
# ---------------------------------------------------------------------------------------------

def fetch(
    name_or_resource: str | Resource,
    dest_dir: str | os.PathLike | None = None,
    *,
    mirror: str | os.PathLike | None = None,
    progress: bool = True,
    allow_download: bool | None = None,
    base_url: str | None = None,
) -> Path:
    """Download a registered file (or return it if already there) and verify it.

    Args:
        name_or_resource: a registry name (see :data:`REGISTRY`) or a :class:`Resource`.
        dest_dir: folder for the file; default ``data_dir()/"downloads"``.
        mirror: a local folder or a base URL holding a file of the same name; tried before the
            resource's own URL. Default: the ``RECONET_MIRROR`` environment variable, if set.
        progress: show a ``tqdm.auto`` progress bar.
        allow_download: whether the network may be used (default: yes unless ``$RECONET_OFFLINE`` is 1);
            without it only the file on disk and a mirror folder are used.
        base_url: replaces everything before the file name in the resource's URL (default:
            ``$RECONET_BASE_URL_<url_key>``, else the registered URL).
    Returns:
        The path of the verified file ``dest_dir/resource.filename``.
    Raises:
        DownloadError: the file could not be obtained or does not verify (the message says what to do).
    """
    res = resource(name_or_resource) if isinstance(name_or_resource, str) else name_or_resource
    if not isinstance(res, Resource):
        raise UserInputError(f"fetch() takes a resource name or a Resource, got {type(res).__name__}")
    dest = Path(dest_dir) if dest_dir is not None else data_dir() / "downloads"
    dest.mkdir(parents=True, exist_ok=True)
    final = dest / res.filename
    if _is_verified(res, final):
        return final

    part = resumable_part(final)
    online = downloads_allowed(allow_download)
    if mirror is None:
        mirror = os.environ.get(MIRROR_ENV) or None
    if mirror and (online or not _is_remote(os.fspath(mirror))):
        if _fetch_from_mirror(res, os.fspath(mirror), part, progress):
            return _finish(res, part, final, source=f"mirror {mirror}")
    if not online:
        reason = f"it is not in {dest} and downloads are switched off ({OFFLINE_ENV}=1)"
        raise DownloadError(f"{res.filename}: {reason}. {_by_hand(res, part)}", reason=reason)
    override = base_url_override(res) if base_url is None else None
    url = source_url(res, base_url)
    try:
        _download(url, part, res, progress)
        return _finish(res, part, final, source=url)
    except DownloadError as exc:
        if override is None:
            raise
        blame = f"the address comes from {override[0]}={override[1]}: fix it, or unset it to download from {res.url}"
        raise DownloadError(f"{exc} ({blame})", reason=f"{exc.reason} ({blame})") from exc


def _finish(res: Resource, part: Path, final: Path, source: str) -> Path:
    """Verify ``part`` and move it onto ``final``; a mismatch deletes ``part`` and raises."""
    problem, digest = _mismatch(res, part)
    if problem is not None:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"{res.filename} from {source} is not the expected file: {problem}. The partial download was "
            f"deleted. Run the download again; if it fails again the source has changed or is corrupt: "
            f"fetch the file from {res.url} by another route and place it at {final}"
            + (f" (sha256 {res.sha256})" if res.sha256 else "")
            + ".",
            reason=f"the file from {source} is not the expected file ({problem})",
        )
    commit_part(part, final)
    _write_stamp(final, digest)
    return final


def _is_url(text: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False
    return parts.scheme in {"http", "https", "ftp", "file"} and bool(parts.netloc or parts.scheme == "file")


def _is_remote(mirror: str) -> bool:
    return _is_url(mirror) and not mirror.startswith("file:")


def _fetch_from_mirror(res: Resource, mirror: str, part: Path, progress: bool) -> bool:
    """Copy or download ``res.filename`` from the mirror into ``part``. False if the mirror lacks the file."""
    if _is_remote(mirror):
        url = mirror.rstrip("/") + "/" + urllib.parse.quote(res.filename)
        try:
            _download(url, part, res, progress)
        except DownloadError as exc:
            if isinstance(exc.__cause__, urllib.error.HTTPError) and exc.__cause__.code == 404:
                return False
            raise
        return True
    folder = Path(urllib.request.url2pathname(urllib.parse.urlsplit(mirror).path)) if mirror.startswith("file:") \
        else Path(mirror).expanduser()
    source = folder / res.filename
    if not folder.is_dir():
        raise DownloadError(
            f"the mirror {mirror} is neither an existing folder nor an http(s) URL; "
            f"fix the mirror argument or the {MIRROR_ENV} environment variable"
        )
    if not source.is_file():
        return False
    _copy_with_progress(source, part, progress)
    return True


def _copy_with_progress(source: Path, part: Path, progress: bool) -> None:
    from tqdm.auto import tqdm

    total = source.stat().st_size
    with open(source, "rb") as src, open(part, "wb") as dst, _bar(tqdm, total, 0, part, progress) as bar:
        for chunk in iter(lambda: src.read(_CHUNK), b""):
            dst.write(chunk)
            bar.update(len(chunk))
        dst.flush()
        os.fsync(dst.fileno())


def _bar(tqdm, total: int | None, initial: int, part: Path, progress: bool):
    name = part.name[: -len(RESUMABLE_SUFFIX)] if part.name.endswith(RESUMABLE_SUFFIX) else part.name
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                desc=name, disable=not progress, leave=True)


def _download(url: str, part: Path, res: Resource, progress: bool) -> None:
    """Download ``url`` into ``part``, resuming an existing ``part`` when the server allows it."""
    from tqdm.auto import tqdm

    have = part.stat().st_size if part.exists() else 0
    if res.size is not None and have > res.size:  # longer than the real file: cannot be a prefix
        part.unlink()
        have = 0
    if res.size is not None and have == res.size:  # complete already; only verification is left
        return

    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the range starts at or beyond the end: start again cleanly
            exc.close()
            part.unlink()
            return _download(url, part, res, progress)
        reason = f"the server answered HTTP {exc.code} ({exc.reason}) for {url}"
        raise DownloadError(f"{reason}. {_by_hand(res, part)}", reason=reason) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(
            _offline_message(url, exc, res, part), reason=f"could not download {url} ({getattr(exc, 'reason', exc)})"
        ) from exc

    with response:
        status = getattr(response, "status", 200)
        if status == 206 and have and _range_start(response.headers.get("Content-Range")) == have:
            mode, start = "ab", have
        else:  # 200 (range ignored) or an unexpected range: start again from byte 0
            mode, start = "wb", 0
        length = response.headers.get("Content-Length")
        expected_total = start + int(length) if length and length.isdigit() else res.size
        received = start
        try:
            with open(part, mode) as out, _bar(tqdm, expected_total, start, part, progress) as bar:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
                out.flush()
                os.fsync(out.fileno())
        except (OSError, http.client.HTTPException) as exc:  # connection lost mid-way: keep .part for resuming
            raise DownloadError(
                f"the download of {url} stopped after {received} bytes ({exc}). The partial file {part} "
                f"was kept: call fetch again to resume. {_by_hand(res, part)}"
            ) from exc
    if expected_total is not None and received < expected_total:
        raise DownloadError(
            f"the connection to {urllib.parse.urlsplit(url).netloc} closed after {received} of "
            f"{expected_total} bytes. The partial file {part} was kept: call fetch again to resume."
        )


def _range_start(content_range: str | None) -> int | None:
    """First byte of a ``Content-Range: bytes START-END/TOTAL`` header, or None."""
    if not content_range or not content_range.startswith("bytes "):
        return None
    try:
        return int(content_range[6:].split("-", 1)[0])
    except ValueError:
        return None


def _by_hand(res: Resource, part: Path) -> str:
    final = part.with_name(res.filename)
    checks = []
    if res.size is not None:
        checks.append(f"{res.size} bytes")
    checks.append(f"sha256 {res.sha256}" if res.sha256 else "sha256 not known in advance")
    return (
        f"You can place the file by hand: download {res.url} on another machine and copy it to "
        f"{final} ({', '.join(checks)}), or point mirror= / ${MIRROR_ENV} at a folder that holds {res.filename}."
    )


def _offline_message(url: str, exc: BaseException, res: Resource, part: Path) -> str:
    reason = getattr(exc, "reason", exc)
    host = urllib.parse.urlsplit(url).netloc
    offline = isinstance(reason, (socket.gaierror, socket.timeout, TimeoutError, ConnectionError, OSError))
    lead = (
        f"could not reach {host} ({reason}): this machine seems to be offline, or the server is down."
        if offline
        else f"could not download {url} ({reason})."
    )
    return f"{lead} {_by_hand(res, part)}"


# ---------------------------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Entry:
    """One archive member as the safety check sees it."""

    name: str  # normalised, relative, '/'-separated
    kind: str  # "file", "dir", "symlink", "hardlink"
    link: str | None = None  # symlink target (as stored) or hardlink target (archive path)
    size: int = 0  # bytes the member declares it unpacks to (files only)


#: Default limit on the bytes one extraction writes (``$RECONET_EXTRACT_MAX_BYTES`` or ``max_bytes=`` change it):
#: above the largest archive the project uses (Scene Flow's, ~200 GB unpacked).
EXTRACT_MAX_BYTES = 512 * 2**30
#: Default limit on unpacked size / archive size (``$RECONET_EXTRACT_MAX_RATIO`` or ``max_ratio=``): image and
#: flow archives unpack to 1-5 times their size; an archive bomb to thousands of times.
EXTRACT_MAX_RATIO = 100.0
MAX_BYTES_ENV, MAX_RATIO_ENV = "RECONET_EXTRACT_MAX_BYTES", "RECONET_EXTRACT_MAX_RATIO"
#: Errors of a damaged or truncated archive, as zipfile, tarfile and the decompressors raise them.
_ARCHIVE_ERRORS = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError)


@dataclass(frozen=True)
class _Limits:
    """How much one extraction may write: ``max_bytes`` in all, at most ``max_ratio`` times the archive's size."""

    max_bytes: int
    max_ratio: float
    archive_bytes: int

    @property
    def allowed(self) -> int:
        return int(min(self.max_bytes, self.max_ratio * max(self.archive_bytes, 1)))

    def check(self, total: int, archive: Path, *, declared: bool) -> None:
        """Refuse ``total`` unpacked bytes above the limits; the message gives the numbers and how to raise them."""
        if total <= self.allowed:
            return
        what = "declares" if declared else "has written"
        if total > self.max_bytes:
            limit = (f"the limit of {format_bytes(self.max_bytes)} per extraction; raise it with "
                     f"{MAX_BYTES_ENV}=<bytes> (or max_bytes=) if the archive is trusted")
        else:
            limit = (f"{self.max_ratio:g} times its size ({format_bytes(self.archive_bytes)}), an archive bomb's "
                     f"mark; raise it with {MAX_RATIO_ENV}=<ratio> (or max_ratio=) if the archive is trusted")
        raise UserInputError(f"{archive}: refusing to extract, it {what} {format_bytes(total)} unpacked, more "
                             f"than {limit}")


def _limits(archive: Path, max_bytes: int | None, max_ratio: float | None) -> _Limits:
    def setting(value, env: str, default, kind):
        if value is None:
            text = os.environ.get(env)
            if not text:
                return default
            try:
                value = kind(text)
            except ValueError:
                raise UserInputError(f"{env}={text!r} is not a number; give e.g. {kind(default)!r}") from None
        if not value > 0:
            raise UserInputError(f"the extraction limit {env.split('_')[-1].lower()}={value!r} must be positive")
        return value

    return _Limits(setting(max_bytes, MAX_BYTES_ENV, EXTRACT_MAX_BYTES, int),
                   setting(max_ratio, MAX_RATIO_ENV, EXTRACT_MAX_RATIO, float), archive.stat().st_size)


def extract(
    archive: str | os.PathLike,
    target_dir: str | os.PathLike,
    *,
    members: Iterable[str] | None = None,
    max_bytes: int | None = None,
    max_ratio: float | None = None,
) -> Path:
    """Unpack a zip or tar(.gz/.bz2/.xz) archive into ``target_dir`` safely and restartably.

    Size: the members' declared sizes are added up first and refused above ``max_bytes`` (default
    :data:`EXTRACT_MAX_BYTES`, ``$RECONET_EXTRACT_MAX_BYTES``) or above ``max_ratio`` times the archive's size
    (default :data:`EXTRACT_MAX_RATIO`, ``$RECONET_EXTRACT_MAX_RATIO``), or when the disk has less free space; the
    bytes actually written are counted against the same limits while unpacking. Two members of one name are
    refused (one would silently replace the other). Every error names the archive and says what to do.

    Every member is checked before anything is written: absolute paths, ``..`` components, links that
    point outside ``target_dir``, paths through links, and special files (devices, FIFOs) are refused
    with a UserInputError (one set of checks for zip and tar alike; tar members are unpacked with
    ``tarfile``'s ``filter="data"`` as a second net where Python has it). The archive is unpacked into a
    temporary folder next to ``target_dir``; before it is merged in, every destination is resolved against
    the real ``target_dir`` with the links already there followed, so several archives extracted into one
    folder cannot combine their links to escape it. A stamp file written last marks completion, so an
    interrupted extraction is simply redone and a finished one is skipped.

    Args:
        archive: path of the ``.zip`` / ``.tar`` / ``.tar.gz`` / ``.tgz`` / ``.tar.bz2`` / ``.tar.xz`` file.
        target_dir: folder to extract into (created if needed; existing files are merged).
        members: optional member names to extract; a folder name selects everything under it.
        max_bytes: the most bytes to unpack (see above).
        max_ratio: the most unpacked bytes per byte of archive (see above).
    Returns:
        ``Path(target_dir)``.
    """
    archive = Path(archive)
    target = Path(target_dir)
    if not archive.is_file():
        raise UserInputError(f"no archive at {archive}; download it first (reconet_lib.download.fetch)")
    wanted = None if members is None else sorted({_normalise(m, archive).rstrip("/") for m in members})
    stamp = target / _stamp_name(archive, wanted)
    st = archive.stat()
    record = {"archive": archive.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "members": wanted}
    try:
        if json.loads(stamp.read_text()) == record:
            return target
    except (OSError, ValueError):
        pass

    limits = _limits(archive, max_bytes, max_ratio)
    kind = _archive_kind(archive)
    try:
        entries = _zip_entries(archive) if kind == "zip" else _tar_entries(archive)
    except _ARCHIVE_ERRORS as exc:
        raise _damaged(archive, exc) from None
    _check_unique(entries, archive)
    selected = _select(entries, wanted, archive)
    _check_safe(entries, archive)
    declared = sum(e.size for e in selected)
    limits.check(declared, archive, declared=True)

    target.parent.mkdir(parents=True, exist_ok=True)
    _check_free_space(target.parent, declared, archive)
    sweep_stale(target.parent / f"{target.name}.extracting")
    tmp = partial_path(target.parent / f"{target.name}.extracting")
    tmp.mkdir()  # the user's umask applies (tempfile.mkdtemp would make it 0700, and the renamed target too)
    try:
        if kind == "zip":
            _unpack_zip(archive, selected, tmp, limits)
        else:
            _unpack_tar(archive, {e.name for e in selected}, tmp, limits)
        _check_tree_inside(tmp, archive)
        _merge_into(tmp, target, archive)
    except UserInputError:
        raise
    except _ARCHIVE_ERRORS as exc:
        if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
            raise UserInputError(f"{archive}: the disk under {target.parent} filled up while extracting; free some "
                                 "space or extract elsewhere (nothing was merged into the target)") from None
        raise _damaged(archive, exc) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    atomic_write_text(stamp, json.dumps(record))
    return target


def _damaged(archive: Path, exc: BaseException) -> UserInputError:
    reason = str(exc).strip().splitlines()[-1][:160] if str(exc).strip() else type(exc).__name__
    return UserInputError(f"{archive} is damaged or truncated ({reason}); download it again "
                          "(reconet_lib.download.fetch checks size and sha256)")


def _check_unique(entries: list[_Entry], archive: Path) -> None:
    """Refuse two members of one name (folders listed twice excepted): one would silently replace the other."""
    seen: dict[str, str] = {}
    for e in entries:
        if e.name in seen and not (e.kind == "dir" and seen[e.name] == "dir"):
            raise UserInputError(f"{archive}: refusing to extract, it holds two members named {e.name!r} and only "
                                 "one can be kept; rebuild the archive without the duplicate")
        seen[e.name] = e.kind


def _check_free_space(folder: Path, declared: int, archive: Path) -> None:
    free = shutil.disk_usage(folder).free
    if declared > free:
        raise UserInputError(f"{archive} unpacks to {format_bytes(declared)} but {folder} has only "
                             f"{format_bytes(free)} free; free some space or extract elsewhere")


def _stamp_name(archive: Path, wanted: list[str] | None) -> str:
    key = hashlib.sha256(json.dumps(wanted).encode()).hexdigest()[:10]
    return f".extracted-{archive.name}-{key}.json"


def _archive_kind(archive: Path) -> str:
    if zipfile.is_zipfile(archive):
        return "zip"
    if tarfile.is_tarfile(archive):
        return "tar"
    raise UserInputError(f"{archive} is neither a zip nor a tar archive (or it is truncated); download it again")


def _normalise(name: str, archive: Path) -> str:
    """Member name as a relative '/'-separated path; refuses absolute paths and '..' components."""
    raw = name.replace("\\", "/")
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":") or raw.startswith("//"):
        raise UserInputError(f"{archive.name}: refusing member {name!r} with an absolute path; the archive is unsafe")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UserInputError(f"{archive.name}: refusing member {name!r}, its path climbs out with '..'; the archive is unsafe")
    if not parts:
        return ""
    return "/".join(parts) + ("/" if raw.endswith("/") else "")


def _zip_entries(archive: Path) -> list[_Entry]:
    entries = []
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            name = _normalise(info.filename, archive)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                entries.append(_Entry(name.rstrip("/"), "symlink", zf.read(info).decode("utf-8", "replace")))
            elif info.is_dir():
                entries.append(_Entry(name.rstrip("/"), "dir"))
            else:
                entries.append(_Entry(name, "file", size=info.file_size))
    return [e for e in entries if e.name]


def _tar_entries(archive: Path) -> list[_Entry]:
    entries = []
    with tarfile.open(archive, "r:*") as tf:
        for info in tf.getmembers():
            name = _normalise(info.name, archive).rstrip("/")
            if info.issym():
                entries.append(_Entry(name, "symlink", info.linkname))
            elif info.islnk():
                entries.append(_Entry(name, "hardlink", _normalise(info.linkname, archive).rstrip("/")))
            elif info.isdir():
                entries.append(_Entry(name, "dir"))
            elif info.isfile():
                entries.append(_Entry(name, "file", size=info.size))
            else:
                raise UserInputError(
                    f"{archive.name}: refusing member {info.name!r}: devices, FIFOs and other special files "
                    "are not extracted; the archive is unsafe"
                )
    return [e for e in entries if e.name]


def _check_safe(entries: list[_Entry], archive: Path) -> None:
    """Refuse links that point outside the archive root and members written through links."""
    links = {e.name for e in entries if e.kind in ("symlink", "hardlink")}

    def through_link(path: str) -> str | None:
        parts = path.split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            if prefix in links:
                return prefix
        return None

    for e in entries:
        via = through_link(e.name)
        if via is not None:
            raise UserInputError(
                f"{archive.name}: refusing member {e.name!r}, it would be written through the link {via!r}; "
                "the archive is unsafe"
            )
        if e.kind == "symlink":
            target = e.link.replace("\\", "/")
            if target.startswith("/") or (len(target) > 1 and target[1] == ":"):
                raise UserInputError(
                    f"{archive.name}: refusing symlink {e.name!r} -> {e.link!r}, an absolute target; the archive is unsafe"
                )
            if not _link_stays_inside(posixpath.dirname(e.name), target, links):
                raise UserInputError(
                    f"{archive.name}: refusing symlink {e.name!r} -> {e.link!r}, it points outside the target "
                    "folder (or through another link); the archive is unsafe"
                )
        if e.kind == "hardlink" and through_link(e.link + "/x"):
            raise UserInputError(f"{archive.name}: refusing hard link {e.name!r} through another link")


def _link_stays_inside(base: str, target: str, links: set[str]) -> bool:
    """Follow ``base/target`` one component at a time: it may not climb above the root nor pass through a link."""
    stack = [p for p in base.split("/") if p]
    parts = [p for p in target.split("/") if p not in ("", ".")]
    for i, part in enumerate(parts):
        if part == "..":
            if not stack:
                return False
            stack.pop()
        else:
            stack.append(part)
            if i < len(parts) - 1 and "/".join(stack) in links:
                return False
    return True


def _select(entries: list[_Entry], wanted: list[str] | None, archive: Path) -> list[_Entry]:
    if wanted is None:
        return entries
    chosen = [e for e in entries if any(e.name == w or e.name.startswith(w + "/") for w in wanted)]
    found = {w for w in wanted if any(e.name == w or e.name.startswith(w + "/") for e in entries)}
    missing = [w for w in wanted if w not in found]
    if missing:
        raise UserInputError(f"{archive.name} has no member {missing[0]!r}; list it with zipfile/tarfile to see the names")
    names = {e.name for e in chosen}
    by_name = {e.name: e for e in entries}
    for e in list(chosen):  # hard links need their target extracted too
        if e.kind == "hardlink" and e.link not in names and e.link in by_name:
            chosen.append(by_name[e.link])
            names.add(e.link)
    return chosen


def _unpack_zip(archive: Path, selected: list[_Entry], root: Path, limits: _Limits) -> None:
    written = 0
    with zipfile.ZipFile(archive) as zf:
        infos = {}
        for info in zf.infolist():
            infos.setdefault(_normalise(info.filename, archive).rstrip("/"), info)
        for e in selected:
            path = root / e.name
            if e.kind == "dir":
                path.mkdir(parents=True, exist_ok=True)
            elif e.kind == "symlink":
                path.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(e.link, path)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(infos[e.name]) as src, open(path, "wb") as dst:
                    for chunk in iter(lambda: src.read(_CHUNK), b""):
                        written += len(chunk)
                        limits.check(written, archive, declared=False)
                        dst.write(chunk)


def _unpack_tar(archive: Path, names: set[str], root: Path, limits: _Limits) -> None:
    written = 0
    with tarfile.open(archive, "r:*") as tf:
        for member in tf.getmembers():
            if _normalise(member.name, archive).rstrip("/") not in names:
                continue
            written += member.size if member.isfile() else 0
            limits.check(written, archive, declared=False)
            tf.extract(member, root, filter="data")  # tarfile's own safety net, beside the checks above


def _check_tree_inside(root: Path, archive: Path) -> None:
    """After unpacking: every path, links followed, must still resolve inside ``root``."""
    real_root = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            real = os.path.realpath(os.path.join(dirpath, name))
            if os.path.commonpath([real_root, real]) != real_root:
                raise UserInputError(f"{archive.name}: {name!r} resolves outside the target folder; the archive is unsafe")


def _check_merge_stays_inside(tmp: Path, target: Path, archive: Path) -> None:
    """Refuse, before anything moves, an unpacked tree that would reach outside ``target`` once merged.

    Each archive was checked on its own; several archives extracted into one folder can still combine: a link
    left by one (``d/q -> ..``) and a link of the next (``d/p -> q/..``) lead outside, and a third writes
    ``d/p/file`` there. So every destination is resolved against the *real* target, links already in it
    followed: its folder must lie inside, and a link must point inside.
    """
    real_target = os.path.realpath(target)

    def inside(path: str) -> bool:
        return os.path.commonpath([real_target, path]) == real_target

    for dirpath, dirnames, filenames in os.walk(tmp):
        rel = Path(dirpath).relative_to(tmp)
        for name in dirnames + filenames:
            dst = target / rel / name
            parent = os.path.realpath(dst.parent)
            via = inside(parent) and (not os.path.islink(dst) or inside(os.path.realpath(dst)))
            link = Path(dirpath, name)
            if via and link.is_symlink():
                via = inside(os.path.realpath(os.path.join(parent, os.readlink(link))))
            if not via:
                raise UserInputError(
                    f"{archive.name}: refusing {(rel / name).as_posix()!r}: together with what is already in {target} "
                    "it would reach outside that folder (through a link); nothing was extracted. Extract this "
                    "archive into a fresh folder"
                )


def _merge_into(tmp: Path, target: Path, archive: Path) -> None:
    """Move the unpacked tree into ``target`` (a rename when ``target`` does not exist yet)."""
    if not os.path.lexists(target):
        os.replace(tmp, target)
        return
    _check_merge_stays_inside(tmp, target, archive)
    for dirpath, dirnames, filenames in os.walk(tmp):
        rel = Path(dirpath).relative_to(tmp)
        for d in list(dirnames):
            src = Path(dirpath) / d
            dst = target / rel / d
            if src.is_symlink():
                dirnames.remove(d)
                filenames.append(d)
            else:
                dst.mkdir(exist_ok=True)
        for f in filenames:
            dst = target / rel / f
            if dst.is_dir() and not dst.is_symlink():
                raise UserInputError(f"cannot extract file {rel / f}: a folder of that name exists in {target}")
            os.replace(Path(dirpath) / f, dst)
