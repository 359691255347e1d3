"""Atomic file and folder writes: an output appears under its final name complete, or not at all.

Every writer of the library (flow files, checkpoints, caches, stamps, logs, videos, frame folders, synthetic
scenes, downloads) goes through this module, and all of them name their unfinished work the same way:

    .<final name>.partial-<pid>-<12 hex digits><suffix of the final name>

next to the final name (``.out.mp4.partial-4242-0a1b2c3d4e5f.mp4``, a folder ``.frames.partial-4242-0a1b2c3d4e5f``).
The process id says who owns it; the suffix repeated at the end keeps tools that choose a format by the name
(ffmpeg) working on the temporary. :func:`atomic_output` writes a file that way, :func:`atomic_folder` fills a
folder that way and swaps it into place; a writer may check the finished temporary (``verify``) before the
rename. An interruption leaves the previous output (if any) intact, and no temporary behind, unless the process
is killed outright: :func:`sweep_stale` then removes the temporaries of processes that no longer run, and every
command calls it beside its outputs when it starts.

One kind of unfinished file is meant to outlive its process: a download's ``<final name>.part``
(:func:`resumable_part`), which the next run resumes. It is owned by the download lock, not by a process id.
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Callable, Iterator

from .errors import UserInputError

#: Marks the name of an unfinished output (see the module doc).
PARTIAL = ".partial-"
#: Ending of a download kept for resuming (:func:`resumable_part`).
RESUMABLE_SUFFIX = ".part"
#: Temporaries of earlier versions of the library (``.<final name>.<random>.tmp``), still recognised by the sweep.
_LEGACY_SUFFIX = ".tmp"


def _current_umask() -> int:
    """The process umask, read without changing it where the system allows (Linux ``/proc``).

    Setting and restoring it (the portable way) briefly changes process-wide state that other threads see.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def partial_path(path: str | os.PathLike) -> Path:
    """A fresh, unused temporary name next to ``path`` owned by this process (see the module doc)."""
    path = Path(path)
    return path.parent / f".{path.name}{PARTIAL}{os.getpid()}-{uuid.uuid4().hex[:12]}{path.suffix}"


def _name_pattern(name: str) -> str:
    """A regular expression for the final names matching ``name`` (a glob whose only wildcard is ``*``)."""
    return ".*".join(re.escape(part) for part in name.split("*"))


def partials(folder: str | os.PathLike, name: str = "*") -> list[tuple[Path, int | None]]:
    """The temporaries in ``folder`` of final names matching ``name`` (a glob), with their owner's process id.

    Temporaries of earlier versions of the library (``.<name>.<random>.tmp``, files only) have no owner (None).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    final = _name_pattern(name)
    pattern = re.compile(rf"\.({final}){re.escape(PARTIAL)}(\d+)-[0-9a-f]{{12}}.*")
    legacy = re.compile(rf"\.({final})\.[A-Za-z0-9_]+{re.escape(_LEGACY_SUFFIX)}")
    found = []
    for candidate in sorted(folder.iterdir()):
        match = pattern.fullmatch(candidate.name)
        if match:
            found.append((candidate, int(match.group(2))))
        elif legacy.fullmatch(candidate.name) and candidate.is_file() and not candidate.is_symlink():
            found.append((candidate, None))
    return found


def process_running(pid: int) -> bool:
    """Whether process ``pid`` runs (on this machine; as any user)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it runs, as another user
    except OSError:
        return False
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def sweep_stale(path: str | os.PathLike, *, ownerless: bool = False) -> list[Path]:
    """Remove the temporaries of ``path`` (a final name; ``*`` globs) left by processes that no longer run.

    Temporaries of running processes (this one included) are left alone. ``ownerless=True`` also removes the
    ownerless ones of earlier versions: do that only while no other process can be writing there (under a lock).
    Returns the paths removed.
    """
    path = Path(path)
    removed = []
    for candidate, pid in partials(path.parent, path.name):
        if (pid is None and ownerless) or (pid is not None and not process_running(pid)):
            _remove(candidate)
            removed.append(candidate)
    return removed


def remove_temporaries(folder: str | os.PathLike, name: str = "*") -> list[Path]:
    """Delete the temporaries a killed writer left in ``folder`` for final names matching ``name``.

    Call it only while no other process can be writing there (e.g. under the folder's lock): ownerless
    temporaries of earlier versions go too (see :func:`sweep_stale`).
    """
    return sweep_stale(Path(folder) / name, ownerless=True)


def temporaries(folder: str | os.PathLike, name: str = "*") -> list[Path]:
    """The temporaries in ``folder`` for final names matching ``name`` (a glob), whoever owns them."""
    return [path for path, _ in partials(folder, name)]


@contextmanager
def atomic_output(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None,
                  verify: Callable[[Path], None] | None = None) -> Iterator[IO]:
    """Open a temporary file next to ``path`` for writing; on success move it onto ``path``.

    Missing parent folders are created. The file gets the usual permissions (``0o666`` minus the umask).

    Args:
        path: final file name.
        mode: ``"wb"`` or ``"w"``.
        encoding: text encoding for ``mode="w"`` (default UTF-8).
        verify: called with the temporary file's path once it is complete and on disk; an exception it raises
            removes the temporary file and leaves ``path`` untouched.
    Yields:
        the open temporary file.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_output writes new files; mode must be 'wb' or 'w', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        with os.fdopen(fd, mode, encoding=(encoding or "utf-8") if mode == "w" else None) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if verify is not None:
            verify(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno is not None and exc.filename is None:  # a failed write names no file: name the target
            raise OSError(exc.errno, exc.strerror, os.fspath(path)) from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary file name next to ``path`` for writers that open files themselves (an encoder).

    The ``with`` block creates the file under the yielded name; when it ends without an error the file is moved
    onto ``path``; on any error it is removed and ``path`` is untouched. The yielded name ends in ``path``'s
    suffix, so tools that pick a format by the name work.
    """
    path = Path(path)
    tmp = partial_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Fill a new folder under a temporary name next to ``path``; on success swap it into place.

    The yielded folder is created (mode ``0o777`` minus the umask). When the ``with`` block ends without an error,
    an existing folder at ``path`` is first moved aside under another temporary name, the new folder renamed to
    ``path`` and the old one deleted; on any error the new folder is deleted and ``path`` is untouched. If another
    process puts a folder at ``path`` between the two renames, the swap is tried again (up to ten times).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    tmp.mkdir()
    try:
        yield tmp
        swap_in(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def swap_in(new: str | os.PathLike, path: str | os.PathLike) -> None:
    """Move the finished folder ``new`` to ``path`` (a rename), replacing an existing folder there (see
    :func:`atomic_folder`, which fills ``new`` and calls this)."""
    new, path = Path(new), Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(10):
        old = None
        if os.path.lexists(path):
            old = partial_path(path)
            try:
                os.replace(path, old)
            except FileNotFoundError:  # another writer moved it first
                old = None
        try:
            os.replace(new, path)
            return
        except OSError:  # another writer put a folder back in the meantime: try again
            continue
        finally:
            if old is not None:
                _remove(old)
    raise OSError(f"could not move {new} to {path}: another process keeps writing there")


def resumable_part(path: str | os.PathLike) -> Path:
    """Where a download of ``path`` is kept until it is complete and verified: ``<path>.part``.

    Unlike :func:`partial_path` it has no owner in its name: the next download of the same file resumes it (the
    download lock keeps two processes from writing it at once). :func:`commit_part` moves it into place.
    """
    path = Path(path)
    return path.with_name(path.name + RESUMABLE_SUFFIX)


def commit_part(part: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Flush a finished, verified :func:`resumable_part` to disk and rename it onto ``path`` in one step."""
    with open(part, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(part, path)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_output`)."""
    with atomic_output(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_output`)."""
    with atomic_output(path, "w") as handle:
        handle.write(text)
    return Path(path)


def check_writable(path: str | os.PathLike, *, is_folder: bool = False,
                   replaceable: Callable[[str], bool] | None = None) -> None:
    """Make sure an output file (or folder) can be created at ``path`` before any work is done.

    Creates missing parent folders (see :func:`prepared_output` to remove them again on failure). For a folder
    output, an existing folder may be replaced only when every name in it passes ``replaceable`` (an earlier
    output of the same writer); without ``replaceable`` only an empty folder may.

    Raises:
        UserInputError: the location is not writable, of the wrong kind, or (a folder) holds other files.
    """
    path = Path(path)
    if is_folder:
        if path.exists() and not path.is_dir():
            raise UserInputError(f"output {path} exists and is not a folder; choose a folder name for frame output")
        if path.is_dir():
            foreign = [p.name for p in path.iterdir() if replaceable is None or not replaceable(p.name)]
            if foreign:
                raise UserInputError(
                    f"output folder {path} already holds other files ({', '.join(sorted(foreign)[:3])}); "
                    "choose a new folder name or empty it"
                )
    elif path.is_dir():
        raise UserInputError(f"output {path} is a folder; give a file name (e.g. ending in .mp4)")
    parent = path.parent
    for ancestor in [parent, *parent.parents]:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise UserInputError(f"cannot write {path}: {ancestor} is a file, not a folder; choose another output path")
            break
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = partial_path(path)
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as exc:
        raise UserInputError(
            f"cannot write to the output folder {parent} ({exc.strerror or exc}); choose a writable output path"
        ) from None


@contextmanager
def prepared_output(path: str | os.PathLike, *, is_folder: bool = False,
                    replaceable: Callable[[str], bool] | None = None) -> Iterator[Path]:
    """:func:`check_writable` and :func:`sweep_stale`; if the ``with`` block then fails, remove the folders it
    created (when empty), so a failed run leaves no empty nested output folders (``-o new/deeper/out.mp4``)."""
    path = Path(path)
    missing = [folder for folder in [path.parent, *path.parent.parents] if not folder.exists()]  # deepest first
    try:
        check_writable(path, is_folder=is_folder, replaceable=replaceable)
        sweep_stale(path)
        yield path
    except BaseException:
        for folder in missing:
            try:
                folder.rmdir()
            except OSError:
                break  # not empty (or already gone): leave it and everything above it
        raise


def write_error(path: str | os.PathLike, exc: BaseException) -> UserInputError:
    """One line for a failed write of ``path``: the reason, and free space as the fix when the disk is full."""
    path = Path(path)
    full = getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(exc)
    hint = f"free some space in {path.parent} or write elsewhere" if full else "check the output folder"
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    reason = "no space left on the device" if full else (lines[-1][:160] if lines else type(exc).__name__)
    return UserInputError(f"writing {path} failed ({reason}); {hint}. Nothing was written under that name")
