"""Verified, resumable fetches of registered files.

Every file the project downloads is described by a :class:`~reconet_lib.registry.Resource` (URL, file name,
size and sha256, with a note wherever a size or hash is not known in advance; :mod:`reconet_lib.registry`).
:func:`fetch` downloads a resource into ``data_dir()/"downloads"`` (or a folder you choose):

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

This module is also the one entry point callers need: it re-exports the registry's names (``Resource``,
``REGISTRY``, ``register``, ``resource``, ``format_bytes``, ``builtin_resources``) and
:func:`reconet_lib.archive.extract`, which unpacks zip and tar archives after checking *every* member first.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from .archive import extract  # noqa: F401  (re-exported: reconet_lib.download is the one entry point)
from .config import REPOSITORY_URL, data_dir
from .errors import ReconetError, UserInputError
from .files import RESUMABLE_SUFFIX, atomic_write_text, commit_part, resumable_part
from .registry import (  # noqa: F401  (re-exported: reconet_lib.download is the one entry point)
    REGISTRY,
    Resource,
    builtin_resources,
    format_bytes,
    register,
    resource,
)

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
