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


def test_a_failed_verification_keeps_the_previous_file(tmp_path):
    from reconet_lib.files import atomic_output

    target = tmp_path / "data.bin"
    atomic_write_bytes(target, b"good")

    def verify(tmp):
        assert tmp.read_bytes() == b"new" and tmp.parent == tmp_path
        raise OSError("did not read back")

    with pytest.raises(OSError, match="read back"):
        with atomic_output(target, verify=verify) as handle:
            handle.write(b"new")
    assert target.read_bytes() == b"good" and os.listdir(tmp_path) == ["data.bin"]


def test_a_failed_write_names_the_target_file(tmp_path, monkeypatch):
    import errno

    class FullDisk:
        def __init__(self, handle):
            self.handle = handle

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    target = tmp_path / "out.bin"
    with pytest.raises(OSError) as info:
        with atomic_output(target) as handle:
            FullDisk(handle).write(b"x")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert os.listdir(tmp_path) == []


def test_temporaries_of_a_killed_writer_are_found_and_removed(tmp_path):
    from reconet_lib.files import remove_temporaries, temporaries

    (tmp_path / ".a.pt.x1y2.tmp").write_bytes(b"partial")
    (tmp_path / ".b.json.z3.tmp").write_bytes(b"partial")
    (tmp_path / "keep.tmp").write_bytes(b"not ours")  # not named like atomic_output's temporaries
    assert [p.name for p in temporaries(tmp_path, "*.pt")] == [".a.pt.x1y2.tmp"]
    assert [p.name for p in remove_temporaries(tmp_path)] == [".a.pt.x1y2.tmp", ".b.json.z3.tmp"]
    assert sorted(os.listdir(tmp_path)) == ["keep.tmp"]


def _dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_every_temporary_is_named_after_its_final_name_and_owner(tmp_path):
    from reconet_lib.files import PARTIAL, partial_path

    tmp = partial_path(tmp_path / "out.mp4")
    assert tmp.parent == tmp_path and tmp.name.startswith(f".out.mp4{PARTIAL}{os.getpid()}-") and tmp.suffix == ".mp4"
    assert partial_path(tmp_path / "out.mp4") != tmp


def test_the_sweep_removes_temporaries_of_dead_processes_only(tmp_path):
    from reconet_lib.files import PARTIAL, sweep_stale

    dead, alive = _dead_pid(), os.getpid()
    stale_file = tmp_path / f".out.mp4{PARTIAL}{dead}-{'a' * 12}.mp4"
    stale_folder = tmp_path / f".frames{PARTIAL}{dead}-{'b' * 12}"
    running = tmp_path / f".out.mp4{PARTIAL}{alive}-{'c' * 12}.mp4"
    other = tmp_path / f".other.mp4{PARTIAL}{dead}-{'d' * 12}.mp4"
    for path in (stale_file, running, other):
        path.write_bytes(b"half")
    stale_folder.mkdir()
    (stale_folder / "frame_00001.png").write_bytes(b"half")
    assert sweep_stale(tmp_path / "out.mp4") == [stale_file]
    assert sweep_stale(tmp_path / "frames") == [stale_folder]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([running.name, other.name])


def test_an_atomic_folder_replaces_the_old_folder_only_when_complete(tmp_path):
    from reconet_lib.files import atomic_folder

    target = tmp_path / "frames"
    with atomic_folder(target) as tmp:
        (tmp / "a.txt").write_text("first")
    with pytest.raises(RuntimeError):
        with atomic_folder(target) as tmp:
            (tmp / "b.txt").write_text("half")
            raise RuntimeError("killed")
    assert [p.name for p in target.iterdir()] == ["a.txt"] and os.listdir(tmp_path) == ["frames"]
    old = os.umask(0o022)
    try:
        with atomic_folder(target) as tmp:
            (tmp / "c.txt").write_text("second")
    finally:
        os.umask(old)
    assert [p.name for p in target.iterdir()] == ["c.txt"] and os.listdir(tmp_path) == ["frames"]
    assert target.stat().st_mode & 0o777 == 0o755
