"""`stylize --consistency ALPHA`: the stylised stream blended with its previous output by DIS flow (reconet_lib.blend)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from reconet_lib import codec, stylize, video
from reconet_lib.blend import StreamBlender

from video_clips import smooth_clip


@pytest.fixture(scope="module")
def tiny_model():
    from reconet_lib.network import ReCoNet

    torch.manual_seed(0)
    return ReCoNet.from_preset("tiny").eval()


def _plain(model, clip):
    with torch.inference_mode():
        x = torch.from_numpy(clip).permute(0, 3, 1, 2).float() / 255
        return (model(x).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def test_stylize_with_consistency_writes_the_stream_blend_of_the_stylised_frames(tmp_path, tiny_model):
    clip = smooth_clip(frames=6)
    stylize.stylize_video(tiny_model, clip, tmp_path / "blended", batch_size=2, half=False, progress=False,
                          consistency=0.6)
    written = np.stack(list(video.read_frames(tmp_path / "blended")))
    expected = StreamBlender(0.6)(clip, _plain(tiny_model, clip))
    assert np.abs(written.astype(int) - expected.astype(int)).max() <= 1
    assert np.abs(written[1:].astype(int) - _plain(tiny_model, clip)[1:].astype(int)).max() > 2  # it did blend


def test_stylize_with_consistency_zero_is_the_plain_stylisation(tmp_path, tiny_model):
    clip = smooth_clip(frames=4)
    stylize.stylize_video(tiny_model, clip, tmp_path / "plain", batch_size=2, half=False, progress=False, consistency=0)
    written = np.stack(list(video.read_frames(tmp_path / "plain")))
    assert np.abs(written.astype(int) - _plain(tiny_model, clip).astype(int)).max() <= 1


@pytest.fixture()
def checkpoint_file(tmp_path, tiny_model):
    from reconet_lib.checkpoint import model_checkpoint, save_checkpoint

    return save_checkpoint(tmp_path / "tiny.pt", model_checkpoint(tiny_model, "random", "0" * 64))


def test_cli_stylize_consistency_option_blends(tmp_path, checkpoint_file, capsys):
    from reconet_lib.cli import main

    source = codec.write_video(tmp_path / "in.mp4", smooth_clip(), fps=10)
    status = main(["stylize", str(source), "--checkpoint", str(checkpoint_file), "-o", str(tmp_path / "out"),
                   "--consistency", "0.5", "--device", "cpu", "--no-half", "--quiet"])
    assert status == 0 and "stylised 10 frames" in capsys.readouterr().out
    assert len(list((tmp_path / "out").glob("*.png"))) == 10  # beside frame_times.txt


@pytest.mark.parametrize("alpha", ["1.5", "-0.2", "nan"])
def test_cli_consistency_outside_zero_one_is_a_one_line_error_before_anything_is_written(tmp_path, checkpoint_file,
                                                                                      capsys, alpha):
    from reconet_lib.cli import main

    source = codec.write_video(tmp_path / "in.mp4", smooth_clip(frames=3), fps=10)
    status = main(["stylize", str(source), "--checkpoint", str(checkpoint_file), "-o", str(tmp_path / "out.mp4"),
                   "--consistency", alpha, "--quiet"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and "consistency alpha must be a number in [0, 1]" in lines[0]
    assert not (tmp_path / "out.mp4").exists()
