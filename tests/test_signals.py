"""Stop signals sent to real `reconet` processes: one line, the shell's status, nothing unfinished left behind."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reconet_lib import codec

from video_clips import H, W, leftovers

REPO = Path(__file__).resolve().parents[1]


def _long_clip(path: Path, frames: int) -> Path:
    subprocess.run([codec.ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc=size={W}x{H}:rate=25", "-frames:v", str(frames), "-c:v", "libx264", "-pix_fmt",
                    "yuv420p", str(path)], check=True, capture_output=True)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    import torch

    from reconet_lib.checkpoint import model_checkpoint, save_checkpoint
    from reconet_lib.network import ReCoNet

    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt",
                           model_checkpoint(ReCoNet.from_preset("tiny"), "random", "0" * 64))


def _has_open(pid: int, path: Path) -> bool:
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == str(path) for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def _signal_when(args: list, ready, signum: int) -> tuple[int, str]:
    """Start ``reconet ARGS``, wait until ``ready()`` is true while it runs, send ``signum``; (status, stderr)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "reconet_lib", *map(str, args)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while process.poll() is None and not ready(process.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert process.poll() is None, "the command ended before the signal: " + process.communicate()[1][-500:]
        process.send_signal(signum)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, err


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)])
def test_stylize_stops_on_a_signal_with_one_line_and_removes_its_partial_output(tmp_path, checkpoint, signum, status):
    source = _long_clip(tmp_path / "in.mp4", 3000)
    out = tmp_path / "new" / "out.mp4"
    status_seen, err = _signal_when(["stylize", source, "--checkpoint", checkpoint, "-o", out, "--quiet"],
                                    lambda pid: (out.parent.is_dir() and leftovers(out.parent) != []), signum)
    assert status_seen == status, err
    assert err.count("\n") == 1 and "Traceback" not in err and signum.name in err, err
    assert not out.parent.exists()  # the partial video and the folder created for it are gone


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_evaluate_stops_on_a_signal_with_one_line(tmp_path, signum, status):
    source = _long_clip(tmp_path / "in.mp4", 1500)
    status_seen, err = _signal_when(["evaluate", source, source, "--names", "same"],
                                    lambda pid: _has_open(pid, source), signum)
    assert status_seen == status, err
    assert err.count("\n") == 1 and "Traceback" not in err and signum.name in err, err
