"""Faults and bad input around video (issue 9): a clear one-line error, intact files, no leftovers.

Command-line cases run the real command (``python -m reconet_lib``) in a subprocess where the point is what a
user sees (one line on stderr, a non-zero exit, no traceback); the rest go through ``cli.main`` or the API.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from reconet_lib import cli, codec, files, frame_folders, memory, sintel, stylize, video
from reconet_lib.errors import UserInputError
from reconet_lib.frames import VideoInfo
from reconet_lib.evaluate import EvaluationTable, evaluate_versions
from reconet_lib.metrics import TemporalError, TemporalFlows
from reconet_lib.synthetic import SyntheticConfig, make_sequence, write_sintel_layout

from video_clips import leftovers, smooth_clip

REPO = Path(__file__).resolve().parents[1]


def run_command(*args, timeout=120) -> subprocess.CompletedProcess:
    """``python -m reconet_lib ARGS`` in a fresh process."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "reconet_lib", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=env)


def assert_one_line_error(result: subprocess.CompletedProcess, command: str, *needles: str) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"reconet {command}: error:"), result.stderr
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def cli_error(capsys, *args) -> str:
    """Run ``cli.main`` in-process; assert exit 2 with one stderr line and return it."""
    status = cli.main([str(a) for a in args])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1, err
    return err[0]


def noise_clip(frames: int = 64, height: int = 192, width: int = 256, seed: int = 0) -> np.ndarray:
    """Incompressible frames: H.264 at high quality needs tens of kB per frame."""
    return np.random.default_rng(seed).integers(0, 256, (frames, height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from reconet_lib.checkpoint import model_checkpoint, save_checkpoint
    from reconet_lib.network import ReCoNet

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    return save_checkpoint(path, model_checkpoint(ReCoNet.from_preset("tiny").eval(), "random", "0" * 64))


# --------------------------------------------------------------------------------------- a full disk


@pytest.fixture
def small_disk(tmp_path):
    """A real 2 MB tmpfs as the output folder (skipped where mounting is not allowed)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root); the full-disk case is not checked")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_full_disk_write_video_fails_clearly_and_keeps_the_older_file(small_disk):
    older = codec.write_video(small_disk / "out.mp4", smooth_clip(frames=3), fps=10)
    before = older.read_bytes()
    with pytest.raises(UserInputError, match="no space left") as info:
        codec.write_video(older, noise_clip(), fps=10)
    assert "\n" not in str(info.value)
    assert older.read_bytes() == before and video.probe(older).frame_count == 3
    assert leftovers(small_disk) == []
    with pytest.raises(UserInputError, match="no space left"):
        frame_folders.write_frames(small_disk / "frames", noise_clip())
    assert sorted(p.name for p in small_disk.iterdir()) == ["out.mp4"]


@pytest.mark.slow
def test_full_disk_stylize_command_is_one_line_and_keeps_the_older_file(small_disk, tmp_path, tiny_checkpoint):
    source = codec.write_video(tmp_path / "noise.mp4", noise_clip(), fps=10)
    older = codec.write_video(small_disk / "out.mp4", smooth_clip(frames=3), fps=10)
    before = older.read_bytes()
    result = run_command("stylize", source, "--checkpoint", tiny_checkpoint, "-o", older, "--side-by-side",
                         "--device", "cpu", "--quiet")
    assert_one_line_error(result, "stylize", "no space left", str(older))
    assert older.read_bytes() == before
    assert sorted(p.name for p in small_disk.iterdir()) == ["out.mp4"]


def test_written_video_is_probed_back_before_it_replaces_the_target(tmp_path, monkeypatch):
    older = codec.write_video(tmp_path / "out.mp4", smooth_clip(frames=3), fps=10)
    before = older.read_bytes()
    real = codec.probe_file

    def truncating_probe(path):  # as if the disk had dropped the file's tail: fewer frames than encoded
        info = real(path)
        return info if path == older else VideoInfo(info.fps, info.frame_count - 1, info.size, False, path)

    monkeypatch.setattr(codec, "probe_file", truncating_probe)
    with pytest.raises(UserInputError, match="5 frames of 64x48 were encoded but the file holds 4 frames"):
        codec.write_video(older, smooth_clip(frames=5), fps=10)
    assert older.read_bytes() == before and leftovers(tmp_path) == []


# --------------------------------------------------------------------------------------- leftovers


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_partials_of_a_killed_writer_are_removed_by_the_next_write(tmp_path):
    script = (
        "import sys, time\n"
        "from reconet_lib import codec\n"
        "from video_clips import smooth_clip\n"
        "def slow():\n"
        "    for frame in smooth_clip(frames=200):\n"
        "        time.sleep(0.05)\n"
        "        yield frame\n"
        "codec.write_video(sys.argv[1], slow(), fps=10)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]))
    writer = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "out.mp4")], env=env)
    try:
        deadline = time.monotonic() + 60
        while not leftovers(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    stale = leftovers(tmp_path)
    assert stale and not (tmp_path / "out.mp4").exists()
    running = tmp_path / f".out.mp4{files.PARTIAL}{os.getpid()}-{'a' * 12}.mp4"  # a writer that still runs
    running.write_bytes(b"in progress")
    frames_dir = tmp_path / f".frames{files.PARTIAL}{_dead_pid()}-{'b' * 12}"
    frames_dir.mkdir()
    (frames_dir / "frame_00001.png").write_bytes(b"half")
    codec.write_video(tmp_path / "out.mp4", smooth_clip(frames=2), fps=10)
    frame_folders.write_frames(tmp_path / "frames", smooth_clip(frames=2))
    assert leftovers(tmp_path) == [running.name]


def test_failed_stylize_removes_the_output_folders_it_created(tmp_path, capsys):
    fake = tmp_path / "weights.pt"
    fake.write_bytes(b"not a checkpoint")
    source = codec.write_video(tmp_path / "in.mp4", smooth_clip(frames=2), fps=10)
    line = cli_error(capsys, "stylize", source, "--checkpoint", fake, "-o", tmp_path / "new" / "deeper" / "out.mp4")
    assert str(fake) in line
    assert not (tmp_path / "new").exists()

    class Failing(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("simulated failure")

    with pytest.raises(RuntimeError, match="simulated"):
        stylize.stylize_video(Failing(), smooth_clip(frames=2), tmp_path / "a" / "b" / "frames", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "weights.pt"]


# --------------------------------------------------------------------------------------- damaged input


@pytest.fixture(scope="module")
def half_of_a_faststart_mp4(tmp_path_factory) -> Path:
    """The first half of a 20-frame MP4 whose header (moov, at the front) still announces 20 frames."""
    folder = tmp_path_factory.mktemp("damaged")
    whole = folder / "whole.mp4"
    subprocess.run(
        [codec.ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", "mandelbrot=size=64x48:rate=10",
         "-frames:v", "20", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "5", "-movflags", "+faststart",
         str(whole)], check=True, capture_output=True)
    half = folder / "half.mp4"
    data = whole.read_bytes()
    half.write_bytes(data[: len(data) // 2])
    return half


def test_damaged_video_reports_lost_frames_unless_a_short_read_is_allowed(half_of_a_faststart_mp4):
    assert video.probe(half_of_a_faststart_mp4).frame_count == 20
    with pytest.raises(UserInputError, match=r"announces 20 frames but only \d+ could be decoded"):
        list(video.read_frames(half_of_a_faststart_mp4))
    short = list(video.read_frames(half_of_a_faststart_mp4, allow_short=True))
    assert 0 < len(short) < 20


def test_stylize_command_refuses_a_damaged_video_and_accepts_it_on_request(half_of_a_faststart_mp4, tmp_path,
                                                                            tiny_checkpoint, capsys):
    out = tmp_path / "out" / "styled.mp4"
    result = run_command("stylize", half_of_a_faststart_mp4, "--checkpoint", tiny_checkpoint, "-o", out,
                         "--device", "cpu", "--quiet")
    assert_one_line_error(result, "stylize", "announces 20 frames", "--allow-short")
    assert not (tmp_path / "out").exists()
    assert cli.main([str(a) for a in ("stylize", half_of_a_faststart_mp4, "--checkpoint", tiny_checkpoint, "-o", out,
                                      "--device", "cpu", "--quiet", "--allow-short")]) == 0
    assert 0 < video.probe(out).frame_count < 20


def test_a_bad_frame_in_the_reader_thread_is_one_line(tmp_path, tiny_checkpoint, capsys):
    folder = tmp_path / "frames"
    frame_folders.write_frames(folder, smooth_clip(frames=9))
    (folder / "frame_00007.png").write_bytes(b"\x89PNG damaged")
    line = cli_error(capsys, "stylize", folder, "--checkpoint", tiny_checkpoint, "-o", tmp_path / "o.mp4",
                     "--device", "cpu", "--quiet", "--batch-size", "2")
    assert "frame_00007.png" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]


# --------------------------------------------------------------------------------------- nonsense options


@pytest.mark.parametrize("fps", ["0", "-5", "0.0001", "inf", "nan", "1e9"])
def test_stylize_refuses_frame_rates_that_are_not_positive_finite_and_sane(fps, tmp_path, tiny_checkpoint, capsys):
    source = codec.write_video(tmp_path / "in.mp4", smooth_clip(frames=2), fps=10)
    line = cli_error(capsys, "stylize", source, "--checkpoint", tiny_checkpoint, "-o", tmp_path / "o.mp4",
                     "--fps", fps, "--quiet")
    assert "frame rate" in line and not (tmp_path / "o.mp4").exists()
    with pytest.raises(UserInputError, match="frame rate"):
        codec.write_video(tmp_path / "o.mp4", smooth_clip(frames=2), fps=float(fps))


def test_stylize_command_refuses_infinite_fps_in_one_line(tmp_path, tiny_checkpoint):
    source = codec.write_video(tmp_path / "in.mp4", smooth_clip(frames=2), fps=10)
    result = run_command("stylize", source, "--checkpoint", tiny_checkpoint, "-o", tmp_path / "o.mp4", "--fps", "inf")
    assert_one_line_error(result, "stylize", "frame rate")


def test_stylize_command_refuses_a_size_beyond_memory_before_allocating(tmp_path, tiny_checkpoint):
    source = codec.write_video(tmp_path / "in.mp4", smooth_clip(frames=2), fps=10)
    start = time.perf_counter()
    result = run_command("stylize", source, "--checkpoint", tiny_checkpoint, "-o", tmp_path / "o.mp4",
                         "--size", "20000", "--device", "cpu", "--quiet")
    assert_one_line_error(result, "stylize", "20000x15000", "GiB", "--size")
    assert time.perf_counter() - start < 60 and not (tmp_path / "o.mp4").exists()


def test_memory_estimate_grows_with_frame_size_and_batch(monkeypatch):
    from reconet_lib.network import ReCoNet

    model, cpu = ReCoNet.from_preset("tiny"), torch.device("cpu")
    small = sum(stylize.estimate_memory(model, (360, 640), 4, cpu))
    assert sum(stylize.estimate_memory(model, (720, 1280), 4, cpu)) == 4 * small
    assert sum(stylize.estimate_memory(model, (360, 640), 8, cpu)) == 2 * small
    monkeypatch.setattr(memory, "available_host_memory", lambda: small)  # less than the run needs / 0.8
    with pytest.raises(UserInputError, match="640x360 in batches of 4"):
        stylize.check_memory(model, (360, 640), 4, cpu)


def test_checkpoint_with_non_finite_weights_is_refused(tmp_path, capsys):
    from reconet_lib.checkpoint import model_checkpoint, save_checkpoint
    from reconet_lib.network import ReCoNet

    model = ReCoNet.from_preset("tiny").eval()
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("nan")
    bad = save_checkpoint(tmp_path / "diverged.pt", model_checkpoint(model, "random", "0" * 64))
    source = codec.write_video(tmp_path / "in.mp4", smooth_clip(frames=2), fps=10)
    line = cli_error(capsys, "stylize", source, "--checkpoint", bad, "-o", tmp_path / "o.mp4", "--device", "cpu")
    assert "non-finite weights" in line and str(bad) in line
    assert not (tmp_path / "o.mp4").exists()
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("inf")
    with pytest.raises(UserInputError, match="non-finite weights"):
        stylize.stylize_video(model, smooth_clip(frames=2), tmp_path / "frames", progress=False)


# --------------------------------------------------------------------------------------- evaluate


@pytest.fixture(scope="module")
def sequence():
    return make_sequence(SyntheticConfig(height=48, width=64, frames=4, seed=3))


def test_evaluate_refuses_flows_without_a_single_valid_pixel(sequence, tmp_path):
    frames = sequence.frames_tensor()
    exact = TemporalFlows.from_synthetic(sequence)
    nan = torch.full_like(exact.forward, float("nan"))
    with pytest.raises(UserInputError, match="no valid pixel"):
        evaluate_versions(frames, {"copy": frames}, flows=TemporalFlows(None, None, nan, exact.valid_forward))
    write_sintel_layout(sequence, tmp_path, "scene")
    for folder in ("occlusions", "occlusions_backward"):
        for png in (tmp_path / folder / "scene").glob("*.png"):
            sintel.write_png(png, np.full((48, 64), 255, np.uint8))  # white: every pixel occluded
    clip = tmp_path / "clean" / "scene"
    result = run_command("evaluate", clip, clip, "--flow", f"gt:{tmp_path / 'scene'}")
    assert_one_line_error(result, "evaluate", "no valid pixel")
    assert "ratio" not in result.stdout


def test_a_nan_metric_has_a_nan_ratio_not_one():
    nan = TemporalError(torch.full((3,), float("nan")), float("nan"), "e_stab")
    table = EvaluationTable(["input", "v"], {"input": {"e_stab": nan}, "v": {"e_stab": nan}}, "given",
                            metrics=("e_stab",))
    assert np.isnan(table.ratio("e_stab", "v"))
    assert "1.00" not in table.to_text()


def test_evaluate_refuses_another_aspect_ratio_unless_asked_and_notes_a_resize(sequence, tmp_path, capsys):
    frames = list(sequence.frames)
    frame_folders.write_frames(tmp_path / "input", frames)
    frame_folders.write_frames(tmp_path / "square", [f[:, 8:56] for f in frames])  # 48x48: another aspect ratio
    frame_folders.write_frames(tmp_path / "half", [f[::2, ::2] for f in frames])  # 32x24: the same aspect ratio
    line = cli_error(capsys, "evaluate", tmp_path / "input", tmp_path / "square", "--flow", "dis")
    assert "48x48" in line and "64x48" in line and "--resize" in line
    assert cli.main([str(a) for a in ("evaluate", tmp_path / "input", tmp_path / "square", "--resize")]) == 0
    assert "note: version 'square' (48x48) was stretched to 64x48" in capsys.readouterr().out
    assert cli.main([str(a) for a in ("evaluate", tmp_path / "input", tmp_path / "half")]) == 0
    assert "note: version 'half' (32x24) was resized to 64x48" in capsys.readouterr().out


def test_evaluate_refuses_a_size_beyond_memory_before_decoding(sequence, tmp_path, capsys):
    frame_folders.write_frames(tmp_path / "clip", list(sequence.frames))
    line = cli_error(capsys, "evaluate", tmp_path / "clip", tmp_path / "clip", "--size", "40000")
    assert "40000x30000" in line and "GiB" in line and "--size" in line


def test_evaluate_prints_n_a_for_the_undefined_ratios_of_an_all_black_clip(tmp_path, capsys):
    black = tmp_path / "black.mp4"
    codec.write_video(black, np.zeros((6, 48, 64, 3), np.uint8), fps=10)
    status = cli.main(["evaluate", str(black), str(black), "--names", "same"])
    out = capsys.readouterr().out
    assert status == 0
    ratio_rows = [line for line in out.splitlines() if "ratio to input" in line]
    assert ratio_rows and all(line.split()[-2:] == ["n/a", "n/a"] for line in ratio_rows), out
    assert "1.00" not in out and "n/a: ratio undefined" in out
