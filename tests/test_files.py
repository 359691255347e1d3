"""Atomic writes: complete file or none, previous file kept on failure, ordinary permissions."""
import os

import pytest

from reconet_lib.files import atomic_output, atomic_write_bytes, atomic_write_text


def test_atomic_write_creates_folders_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "a" / "b" / "file.txt"
    atomic_write_text(target, "héllo")
    assert target.read_text(encoding="utf-8") == "héllo"
    assert os.listdir(target.parent) == ["file.txt"]


def test_failure_while_writing_keeps_the_previous_file(tmp_path):
    target = tmp_path / "data.bin"
    atomic_write_bytes(target, b"good")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as handle:
            handle.write(b"partial")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"good"
    assert os.listdir(tmp_path) == ["data.bin"]


def test_written_files_get_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_bytes(tmp_path / "x", b"1")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_only_write_modes_are_accepted(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        with atomic_output(tmp_path / "x", "ab"):
            pass
