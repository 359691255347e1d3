"""Stylising a video end to end (reconet_lib.stylize) and the `reconet stylize` command's error handling."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from reconet_lib import codec, stylize, video

from video_clips import VFR_TIMES, H, T, W, frame_and_audio_times, make_clip_with_audio, make_vfr_clip, smooth_clip


def test_reduced_precision_choice_follows_the_precision_policy(monkeypatch):
    from reconet_lib import precision

    monkeypatch.setattr(precision, "_cuda_capability", lambda device: (8, 0))
    assert stylize.resolve_precision(torch.device("cuda"), None) == torch.float16
    assert stylize.resolve_precision(torch.device("cuda"), False) is None
    assert stylize.resolve_precision(torch.device("cpu"), True) == torch.bfloat16
    assert stylize.resolve_precision(torch.device("cpu"), False) is None
    monkeypatch.setattr(precision, "cpu_bf16_native", lambda: False)
    assert stylize.resolve_precision(torch.device("cpu"), None) is None  # emulated bf16 is slow: fp32


# ---------------------------------------------------------------------------------------------- stylising


@pytest.fixture(scope="module")
def tiny_model():
    from reconet_lib.network import ReCoNet

    torch.manual_seed(0)
    return ReCoNet.from_preset("tiny").eval()


def test_stylize_video_to_mp4_keeps_frame_count_size_fps_and_audio(tmp_path, tiny_model):
    source = make_clip_with_audio(tmp_path / "in.mp4")
    report = stylize.stylize_video(tiny_model, source, tmp_path / "out.mp4", batch_size=3, progress=False)
    assert report.frames == T and report.output == tmp_path / "out.mp4"
    assert report.model_fps > 0 and report.end_to_end_fps > 0 and report.seconds > 0
    info = video.probe(report.output)
    assert (info.frame_count, info.size, info.fps, info.has_audio) == (T, (H, W), 10.0, True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.mp4"]


def test_stylize_video_matches_the_model_applied_frame_by_frame(tmp_path, tiny_model):
    clip = smooth_clip(frames=5)
    stylize.stylize_video(tiny_model, clip, tmp_path / "frames", batch_size=2, half=False, progress=False)
    written = np.stack(list(video.read_frames(tmp_path / "frames")))
    with torch.inference_mode():
        x = torch.from_numpy(clip).permute(0, 3, 1, 2).float() / 255
        expected = (tiny_model(x).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert written.shape == clip.shape
    assert np.abs(written.astype(int) - expected).max() <= 1


def test_stylize_video_in_half_precision_on_cpu_uses_the_optimised_network(tmp_path, tiny_model, monkeypatch):
    from reconet_lib import inference

    calls = []
    real = inference.optimize_for_inference
    monkeypatch.setattr(stylize, "optimize_for_inference", lambda *a, **k: calls.append(k) or real(*a, **k))
    clip = smooth_clip(frames=4)
    stylize.stylize_video(tiny_model, clip, tmp_path / "frames", batch_size=2, half=True, progress=False)
    assert len(calls) == 1 and calls[0]["dtype"] == torch.bfloat16
    written = np.stack(list(video.read_frames(tmp_path / "frames"))).astype(int)
    with torch.inference_mode():
        x = torch.from_numpy(clip).permute(0, 3, 1, 2).float() / 255
        expected = (tiny_model.eval()(x) * 255).round().permute(0, 2, 3, 1).numpy()
    assert np.abs(written - expected).mean() < 2.0  # bf16 rounding, no change of content


def test_stylize_video_on_a_cpu_without_native_bf16_runs_the_optimised_network_in_fp32(tmp_path, tiny_model,
                                                                                        monkeypatch):
    from reconet_lib import inference, precision

    calls = []
    real = inference.optimize_for_inference
    monkeypatch.setattr(stylize, "optimize_for_inference", lambda *a, **k: calls.append(k) or real(*a, **k))
    monkeypatch.setattr(precision, "cpu_bf16_native", lambda: False)
    clip = smooth_clip(frames=3)
    stylize.stylize_video(tiny_model, clip, tmp_path / "frames", batch_size=2, device="cpu", progress=False)
    assert len(calls) == 1 and calls[0]["dtype"] == torch.float32
    written = np.stack(list(video.read_frames(tmp_path / "frames"))).astype(int)
    with torch.inference_mode():
        x = torch.from_numpy(clip).permute(0, 3, 1, 2).float() / 255
        expected = (tiny_model.eval()(x).clamp(0, 1) * 255).round().permute(0, 2, 3, 1).numpy()
    assert np.abs(written - expected).max() <= 1  # fp32: the rewritten output layer changes nothing visible


def test_stylize_video_side_by_side_doubles_the_width_and_shows_the_input_left(tmp_path, tiny_model):
    clip = smooth_clip(frames=3)
    stylize.stylize_video(tiny_model, clip, tmp_path / "sbs", side_by_side=True, progress=False)
    frames = np.stack(list(video.read_frames(tmp_path / "sbs")))
    assert frames.shape == (3, H, 2 * W, 3)
    np.testing.assert_array_equal(frames[:, :, :W], clip)


def test_stylize_video_resizes_and_pads_odd_sizes(tmp_path, tiny_model):
    clip = smooth_clip(frames=3)
    report = stylize.stylize_video(tiny_model, clip, tmp_path / "small.mp4", size=(17, 33), progress=False)
    assert video.probe(report.output).size == (18, 34)


def test_stylize_video_failure_leaves_no_output(tmp_path, tiny_model):
    calls = []

    def failing_model(x):
        calls.append(len(x))
        if len(calls) == 2:
            raise RuntimeError("out of memory (simulated)")
        return tiny_model(x)

    class Wrapper(torch.nn.Module):
        def forward(self, x):
            return failing_model(x)

    clip = smooth_clip(frames=8)
    for output in (tmp_path / "out.mp4", tmp_path / "frames"):
        calls.clear()
        with pytest.raises(RuntimeError, match="simulated"):
            stylize.stylize_video(Wrapper(), clip, output, batch_size=2, progress=False)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------- command line


@pytest.fixture(scope="module")
def checkpoint_file(tmp_path_factory, tiny_model):
    from reconet_lib.checkpoint import model_checkpoint, save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    return save_checkpoint(path, model_checkpoint(tiny_model, "random", "0" * 64))


def run_cli(args, capsys):
    from reconet_lib.cli import main

    status = main([str(a) for a in args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_cli_stylize_writes_the_video(tmp_path, checkpoint_file, capsys):
    source = codec.write_video(tmp_path / "in.mp4", smooth_clip(), fps=10)
    status, out, err = run_cli(
        ["stylize", source, "--checkpoint", checkpoint_file, "-o", tmp_path / "out.mp4", "--side-by-side",
         "--size", "32", "--device", "cpu", "--no-half", "--quiet"], capsys)
    assert status == 0 and "stylised 10 frames" in out
    assert video.probe(tmp_path / "out.mp4").size == (24, 64)


def _assert_one_line_error(status, err, *needles):
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("reconet stylize: error:")
    for needle in needles:
        assert str(needle) in lines[0]


def test_cli_missing_input_is_one_line_error(tmp_path, checkpoint_file, capsys):
    missing = tmp_path / "nope.mp4"
    status, _, err = run_cli(["stylize", missing, "--checkpoint", checkpoint_file, "-o", tmp_path / "o.mp4"], capsys)
    _assert_one_line_error(status, err, missing)
    assert not (tmp_path / "o.mp4").exists()


def test_cli_empty_folder_is_one_line_error(tmp_path, checkpoint_file, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    status, _, err = run_cli(["stylize", empty, "--checkpoint", checkpoint_file, "-o", tmp_path / "o.mp4"], capsys)
    _assert_one_line_error(status, err, empty, "no frames")


def test_cli_non_checkpoint_file_is_one_line_error(tmp_path, capsys):
    source = codec.write_video(tmp_path / "in.mp4", smooth_clip(frames=2), fps=10)
    fake = tmp_path / "weights.pt"
    fake.write_bytes(b"definitely not a checkpoint")
    status, _, err = run_cli(["stylize", source, "--checkpoint", fake, "-o", tmp_path / "o.mp4"], capsys)
    _assert_one_line_error(status, err, fake)
    assert not (tmp_path / "o.mp4").exists()
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(3)}, plain)
    status, _, err = run_cli(["stylize", source, "--checkpoint", plain, "-o", tmp_path / "o.mp4"], capsys)
    _assert_one_line_error(status, err, plain, "not a ReCoNet checkpoint")


def test_cli_output_below_a_file_is_one_line_error(tmp_path, checkpoint_file, capsys):
    source = codec.write_video(tmp_path / "in.mp4", smooth_clip(frames=2), fps=10)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    status, _, err = run_cli(
        ["stylize", source, "--checkpoint", checkpoint_file, "-o", blocker / "out.mp4"], capsys)
    _assert_one_line_error(status, err, blocker)


def _cannot_create_in(folder: Path) -> bool:
    try:
        (folder / ".reconet-write-test").touch()
    except OSError:
        return True
    (folder / ".reconet-write-test").unlink()
    return False


def test_cli_unwritable_output_folder_is_one_line_error(tmp_path, checkpoint_file, capsys):
    source = codec.write_video(tmp_path / "in.mp4", smooth_clip(frames=2), fps=10)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not _cannot_create_in(locked):  # root ignores permission bits; a read-only /sys still refuses
            locked = Path("/sys")
            if not (locked.is_dir() and _cannot_create_in(locked)):
                pytest.skip("no folder that this user cannot write to")
        status, _, err = run_cli(
            ["stylize", source, "--checkpoint", checkpoint_file, "-o", locked / "out.mp4"], capsys)
        _assert_one_line_error(status, err, locked)
        assert not (locked / "out.mp4").exists()
    finally:
        (tmp_path / "locked").chmod(0o700)


def test_the_video_module_does_not_re_export_the_pipeline():
    # The pipeline lives in stylize (which imports video): a name looked up through video would be a cycle.
    assert not hasattr(video, "stylize_video") and not hasattr(video, "__getattr__")
    with pytest.raises(AttributeError):
        video.no_such_name  # noqa: B018


def test_default_batch_is_one_frame_per_inference_stream_on_a_cpu_and_four_on_a_gpu():
    from reconet_lib import precision

    assert stylize.default_batch_size(torch.device("cpu")) == precision.inference_streams("cpu")[0]
    assert stylize.default_batch_size(torch.device("cuda", 0)) == 4


def test_stylize_video_without_a_batch_size_calls_the_network_one_frame_per_stream_on_a_cpu(tmp_path, tiny_model,
                                                                                            monkeypatch):
    sizes = []
    real = stylize.StylizeNetwork.__call__
    monkeypatch.setattr(stylize.StylizeNetwork, "__call__", lambda self, batch: sizes.append(len(batch)) or real(self, batch))
    monkeypatch.setattr(stylize, "inference_streams", lambda device: (2, 1))
    stylize.stylize_video(tiny_model, smooth_clip(frames=3), tmp_path / "frames", progress=False)
    assert sizes == [2, 1]


# ---------------------------------------------------------------------------------------------- timing kept


def test_variable_frame_rate_clip_keeps_every_frame_time_and_the_whole_audio(tmp_path, tiny_model):
    source = make_vfr_clip(tmp_path / "phone.mp4", audio_seconds=11)
    assert frame_and_audio_times(source)[0] == pytest.approx(VFR_TIMES, abs=1e-3)
    report = stylize.stylize_video(tiny_model, source, tmp_path / "out.mp4", progress=False)
    times, audio_seconds = frame_and_audio_times(report.output)
    assert times == pytest.approx(VFR_TIMES, abs=1e-3)  # evenly spaced frames would end at 1.9 s
    assert audio_seconds == pytest.approx(11, abs=0.05)  # not cut to the video's length
    with av_open(report.output) as out, av_open(source) as src:
        assert out.streams.video[0].time_base == src.streams.video[0].time_base


def test_variable_frame_rate_times_survive_a_frame_folder_and_back(tmp_path, tiny_model):
    source = make_vfr_clip(tmp_path / "phone.mp4")
    stylize.stylize_video(tiny_model, source, tmp_path / "frames", progress=False)
    assert video.probe(tmp_path / "frames").time_base == video.probe(source).time_base
    assert [float(t) for t, _ in video.read_timed_frames(tmp_path / "frames")] == pytest.approx(VFR_TIMES, abs=1e-6)
    again = stylize.stylize_video(tiny_model, tmp_path / "frames", tmp_path / "again.mp4", progress=False)
    assert frame_and_audio_times_video_only(again.output) == pytest.approx(VFR_TIMES, abs=1e-3)


def test_an_explicit_output_rate_spaces_the_frames_evenly(tmp_path, tiny_model):
    source = make_vfr_clip(tmp_path / "phone.mp4")
    report = stylize.stylize_video(tiny_model, source, tmp_path / "out.mp4", fps=5, progress=False)
    assert frame_and_audio_times_video_only(report.output) == pytest.approx([k / 5 for k in range(20)], abs=1e-3)


def av_open(path):
    import av

    return av.open(str(path))


def frame_and_audio_times_video_only(path) -> list[float]:
    with av_open(path) as container:
        return [float(frame.time) for frame in container.decode(video=0)]
