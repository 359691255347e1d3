"""Atomic file writes: a file appears under its final name complete, or not at all.

Every writer of the library (flow files, checkpoints, caches, stamps, logs) goes through
:func:`atomic_output`: it writes a temporary file in the destination folder, flushes it to disk and
renames it over the destination in one step; a writer may check the finished temporary file (``verify``)
before the rename. An interruption leaves the previous file (if any) intact and no temporary file behind;
temporaries left by a process that was killed outright are recognised by their names
(``.<final name>.<random>.tmp``) and removed by :func:`remove_temporaries`.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Callable, Iterator

#: Suffix of the temporary files :func:`atomic_output` writes (``.<final name>.<random>.tmp``).
TEMPORARY_SUFFIX = ".tmp"


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


@contextmanager
def atomic_output(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None,
                  verify: Callable[[Path], None] | None = None) -> Iterator[IO]:
    """Open a temporary file next to ``path`` for writing; on success move it onto ``path``.

    Missing parent folders are created. The file gets the usual permissions (``0o666`` minus the umask),
    not the owner-only mode of :func:`tempfile.mkstemp`.

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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_current_umask())
        with os.fdopen(fd, mode, encoding=(encoding or "utf-8") if mode == "w" else None) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if verify is not None:
            verify(Path(tmp))
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.errno is not None and exc.filename is None:  # a failed write names no file: name the target
            raise OSError(exc.errno, exc.strerror, os.fspath(path)) from exc
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def temporaries(folder: str | os.PathLike, name: str = "*") -> list[Path]:
    """The temporary files :func:`atomic_output` left in ``folder`` for final names matching ``name`` (a glob)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f".{name}.*{TEMPORARY_SUFFIX}") if p.is_file())


def remove_temporaries(folder: str | os.PathLike, name: str = "*") -> list[Path]:
    """Delete the temporary files a killed writer left in ``folder`` (see :func:`temporaries`); returns them.

    Call it only while no other process can be writing there (e.g. under the folder's lock).
    """
    removed = temporaries(folder, name)
    for path in removed:
        path.unlink(missing_ok=True)
    return removed
