"""Pairs from the user's own clips: estimated flow cached once, read back exactly, separate from the datasets."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reconet_lib import estimate, synthetic
from reconet_lib.errors import UserInputError
from reconet_lib.video_pairs import VideoFolderPairs

H, W = 40, 48
CONFIG = synthetic.SyntheticConfig(height=H, width=W, frames=4, objects=2, seed=3)


@pytest.fixture(scope="module")
def sequence():
    return synthetic.make_sequence(CONFIG)


def save_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def image_tensor(frame: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frame.copy()).permute(2, 0, 1).float() / 255


def assert_pair_sample(sample, size):
    h, w = size
    for key, channels in (("current", 3), ("previous", 3), ("flow", 2), ("valid", 1)):
        assert sample[key].shape == (channels, h, w), key
        assert sample[key].dtype == torch.float32, key
    assert set(torch.unique(sample["valid"]).tolist()) <= {0.0, 1.0}
    assert isinstance(sample["name"], str)


@pytest.fixture()
def frame_folder(tmp_path, sequence):
    clips = tmp_path / "clips"
    for t, frame in enumerate(sequence.frames):
        save_png(clips / "walk" / f"frame_{t + 1:03d}.png", frame)
    return clips


def counting_estimator(monkeypatch):
    calls = []
    real = estimate.estimate_flows_and_valid

    def counted(frame_a, frame_b, **kwargs):
        calls.append((frame_a.clone(), frame_b.clone()))
        return real(frame_a, frame_b, **kwargs)

    monkeypatch.setattr(estimate, "estimate_flows_and_valid", counted)
    return calls


def test_video_folder_pairs_cache_means_no_second_estimation(frame_folder, tmp_path, sequence, monkeypatch):
    calls = counting_estimator(monkeypatch)
    cache = tmp_path / "cache"
    dataset = VideoFolderPairs(frame_folder, cache, batch_size=2, progress=False).prepare()
    assert len(dataset) == CONFIG.frames - 1 and len(calls) == 2  # 3 pairs in batches of 2
    for t in range(1, CONFIG.frames):
        sample = dataset[t - 1]
        assert_pair_sample(sample, (H, W))
        assert sample["name"] == f"video/walk/{t:06d}->{t - 1:06d}"
        assert torch.equal(sample["current"], image_tensor(sequence.frames[t]))
        assert torch.equal(sample["previous"], image_tensor(sequence.frames[t - 1]))
    # the estimator got current frames as frame_a (flow current -> previous)
    assert torch.equal(calls[0][0][0], image_tensor(sequence.frames[1]))
    assert torch.equal(calls[0][1][0], image_tensor(sequence.frames[0]))
    assert not [p for p in cache.rglob("*") if p.name.endswith(".tmp")]

    again = VideoFolderPairs(frame_folder, cache, batch_size=2, progress=False)
    first = again[0]
    assert len(again) == CONFIG.frames - 1 and len(calls) == 2
    assert torch.equal(first["flow"], dataset[0]["flow"])

    save_png(frame_folder / "walk" / "frame_999.png", sequence.frames[0])  # the clip changed
    assert len(VideoFolderPairs(frame_folder, cache, batch_size=8, progress=False)) == CONFIG.frames
    assert len(calls) == 3


def test_video_folder_pairs_stride_and_method_check(frame_folder, tmp_path, monkeypatch):
    counting_estimator(monkeypatch)
    dataset = VideoFolderPairs(frame_folder / "walk", tmp_path / "cache", stride=2, progress=False)
    assert [dataset[i]["name"] for i in range(len(dataset))] == ["video/walk/000002->000000"]
    with pytest.raises(UserInputError, match="method"):
        VideoFolderPairs(frame_folder, tmp_path / "cache", method="magic")
    with pytest.raises(UserInputError, match="does not exist"):
        VideoFolderPairs(tmp_path / "no_such_folder", tmp_path / "cache")


def test_the_dataset_layer_needs_neither_video_decoding_nor_flow_estimation():
    code = ("import sys, reconet_lib.data, reconet_lib.pairs; "
            "print(sorted(m for m in ('reconet_lib.video', 'reconet_lib.estimate', 'reconet_lib.video_pairs', 'cv2', "
            "'imageio') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("height, width", [(1, 1), (11, 40)])
def test_a_clip_too_small_for_dis_is_refused_naming_the_clip(tmp_path, capsys, monkeypatch, height, width):
    """OpenCV DIS needs 12 pixels on each side: the training command names the clip instead of a cv2 traceback."""
    from reconet_lib import cli

    clip = tmp_path / "clips" / "tiny"
    for t in range(3):
        save_png(clip / f"frame_{t:03d}.png", np.full((height, width, 3), 40 * t, np.uint8))
    monkeypatch.setenv("RECONET_DATA", str(tmp_path / "data"))
    status = cli.main(["train", "--data", f"videos:{tmp_path / 'clips'}", "--preset", "tiny", "--crop", "32x32",
                       "--vgg-weights", "random", "--device", "cpu", "--num-workers", "0", "--no-progress",
                       "--steps", "1", "-o", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and "Traceback" not in err and "cv2" not in err, err
    assert str(clip) in err and f"{width}x{height}" in err and "12 pixels" in err, err
    with pytest.raises(UserInputError, match="too small for DIS"):
        estimate.dis_flow(torch.zeros(1, 3, height, width), torch.zeros(1, 3, height, width))
