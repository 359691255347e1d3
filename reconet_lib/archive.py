"""Safe, restartable extraction of zip and tar archives: every member checked before anything is written.

:func:`extract` refuses members that would land outside the target folder (absolute paths, ``..``, links out,
paths through links, special files), two members of one name, and archives that unpack to more than a size or
ratio limit (archive bombs) or than the free space; it unpacks into a temporary folder, merges it in, and marks
completion with a stamp file. Every error names the archive and says what to do.
"""
from __future__ import annotations

import errno
import hashlib
import json
import lzma
import os
import posixpath
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import UserInputError
from .files import atomic_write_text, partial_path, sweep_stale
from .registry import format_bytes

_CHUNK = 1 << 20  # bytes read and written per step

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
