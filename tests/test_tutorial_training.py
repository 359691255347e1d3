"""The tutorial's training: progress a learner can watch, the time said up front, the quick recipe and the
offline loss network it uses."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from reconet_lib import synthetic
from reconet_lib.losses import LossWeights
from reconet_lib.resources import TutorialResources
from reconet_lib.train import TrainConfig, train
from reconet_lib.train import tutorial


@pytest.fixture(scope="module")
def pairs_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scenes") / "training"
    return synthetic.generate_dataset(root, scenes=1, config=synthetic.SyntheticConfig(height=40, width=48, frames=3))


def _small_run(pairs_root, tmp_path, **changes) -> TrainConfig:
    """A training run of a few steps of the tiny network on 32 x 32 crops (offline loss network), for the progress tests."""
    return TrainConfig(**{**dict(data=[{"kind": "synthetic", "path": str(pairs_root)}], model="tiny", crop=(32, 32),
                                 batch_size=2, vgg_weights=None, loss=LossWeights.offline(), style="mosaic",
                                 style_size=64, output=str(tmp_path / "run"), log_every=1, num_workers=0,
                                 device="cpu", precision="fp32"), **changes})


def test_training_progress_shows_pairs_per_second_time_left_and_the_step(pairs_root, tmp_path, capsys,
                                                                          monkeypatch):
    monkeypatch.setenv("RECONET_DATA", str(tmp_path / "data"))
    config = _small_run(pairs_root, tmp_path, steps=3)
    train(config, progress=True, verbose=False)
    captured = capsys.readouterr()
    assert captured.err == ""  # the bar goes to stdout: nothing on stderr in a notebook or a terminal
    *bar, record = captured.out.replace("\r", "\n").strip().splitlines()
    final = bar[-1]
    assert re.search(r"\b6/6\b", final), final  # counts frame pairs: 3 steps x 2 pairs
    assert "pair/s" in final or "s/pair" in final, final  # the rate, in pairs
    assert re.search(r"<\d\d:\d\d", final), final  # time left
    assert "step=3/3" in final, final


def test_training_with_progress_ends_with_one_plain_line_of_pairs_seconds_and_rate(pairs_root, tmp_path, capsys,
                                                                                    monkeypatch):
    # A notebook stores the progress widget in its first state ("0/6"): the plain line is what a static view shows.
    monkeypatch.setenv("RECONET_DATA", str(tmp_path / "data"))
    config = _small_run(pairs_root, tmp_path, steps=4, checkpoint_every=3)
    train(config, progress=True, verbose=False, stop_after=3)
    train(config, progress=True, verbose=False, resume=True)  # resumes from the last checkpoint (step 3)
    records = [line for line in capsys.readouterr().out.replace("\r", "\n").splitlines()
               if line.startswith("training: ") and " in " in line]
    assert len(records) == 2, records
    first = re.fullmatch(r"training: 6 pairs \(steps 1-3 of 4\) in (\d+\.\d) s, (\d+\.\d\d) pairs/s", records[0])
    assert first, records[0]
    seconds, rate = float(first[1]), float(first[2])
    assert 6 / (seconds + 0.05) - 0.01 <= rate <= (6 / (seconds - 0.05) if seconds > 0.05 else float("inf")), records[0]
    assert re.fullmatch(r"training: 2 pairs \(steps 4-4 of 4\) in \d+\.\d s, \d+\.\d\d pairs/s", records[1]), records[1]
    train(config, progress=False, verbose=False, resume=True)  # nothing left to do and no bar: no line
    assert "training: " not in capsys.readouterr().out


def test_the_expected_time_is_said_before_training_starts(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("RECONET_OFFLINE", "1")
    monkeypatch.setenv("RECONET_DATA", str(tmp_path / "data"))
    calls = []

    def fake_train(config, **kwargs):
        calls.append(config)
        out = capsys.readouterr().out
        assert "one to two minutes on two idle CPU cores" in out and f"{config.steps} steps" in out
        raise KeyboardInterrupt  # stop after the announcement: nothing is trained in this test

    monkeypatch.setattr(tutorial, "train", fake_train)
    with pytest.raises(KeyboardInterrupt):
        tutorial.ensure_tutorial_checkpoints(quick=True, device="cpu", output_dir=tmp_path / "ckpt")
    assert len(calls) == 1
    assert "full mode: estimate, not measured" in tutorial.expected_time(False, 4000)


def test_the_expected_time_online_is_that_of_the_imagenet_loss_network(monkeypatch, tmp_path, capsys):
    # Online, quick mode trains with the ImageNet VGG-16 and the default weights (style up to relu4_3): longer.
    monkeypatch.setenv("RECONET_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(tutorial, "tutorial_resources",
                        lambda **kwargs: TutorialResources(loss_network="vgg16_imagenet", style="candy"))
    announced = []

    def fake_train(config, **kwargs):
        announced.append(capsys.readouterr().out)
        assert config.vgg_weights == "imagenet" and config.loss.vgg_layers[-1] == "relu4_3"
        raise KeyboardInterrupt  # stop after the announcement: nothing is trained in this test

    monkeypatch.setattr(tutorial, "train", fake_train)
    with pytest.raises(KeyboardInterrupt):
        tutorial.ensure_tutorial_checkpoints(quick=True, device="cpu", output_dir=tmp_path / "ckpt")
    steps = tutorial.QUICK_RECIPE.steps  # the baseline trains first
    assert f"quick mode with the ImageNet VGG-16: {steps} steps, two to three minutes" in announced[0], announced
    assert "one to two minutes" not in announced[0]


def test_the_quick_recipe_is_what_tutorial_config_builds():
    r = tutorial.QUICK_RECIPE
    config = tutorial.tutorial_config(True, "cpu", loss_network="vgg16_random", style="candy")
    assert (config.model, config.crop, config.batch_size, config.steps, config.lr) == (
        r.model, r.crop, r.batch_size, r.reconet_steps, r.lr)
    assert config.vgg_weights is None and config.loss == LossWeights.offline()
    assert config.lr_schedule == r.reconet_lr_schedule == "cosine"
    baseline_config = tutorial.tutorial_config(True, "cpu", temporal=False)
    assert (baseline_config.steps, baseline_config.lr_schedule) == (r.steps, r.lr_schedule)
    real = tutorial.tutorial_config(True, "cpu", loss_network="vgg16_imagenet", style="candy")
    assert real.vgg_weights == "imagenet" and real.loss == LossWeights()
    baseline = tutorial.tutorial_config(True, "cpu", temporal=False, loss_network="vgg16_random")
    assert baseline.loss.lambda_f == baseline.loss.lambda_o == 0 and baseline.loss.beta == LossWeights.offline().beta
    with pytest.raises(Exception, match="loss_network"):
        tutorial.tutorial_config(True, "cpu", loss_network="resnet")


def test_the_quick_crops_fit_the_quick_scenes_which_are_readable():
    scenes = synthetic.default_config(True)
    w, h = tutorial.QUICK_RECIPE.crop
    assert w <= scenes.width and h <= scenes.height
    assert max(scenes.width, scenes.height) >= 256  # what the notebooks show is at least 256 px wide


def test_quick_reconet_is_fine_tuned_from_the_baseline_trained_first(monkeypatch, tmp_path):
    monkeypatch.setenv("RECONET_OFFLINE", "1")
    monkeypatch.setenv("RECONET_DATA", str(tmp_path / "data"))
    calls = []

    def fake_train(config, **kwargs):  # records the runs; writes nothing
        calls.append(config)

    monkeypatch.setattr(tutorial, "train", fake_train)
    monkeypatch.setattr(tutorial, "_finished", lambda last, steps: False)
    paths = tutorial.ensure_tutorial_checkpoints(quick=True, device="cpu", output_dir=tmp_path / "ckpt")
    baseline, reconet = calls
    assert (baseline.loss.lambda_o, baseline.init) == (0.0, None)
    assert reconet.loss.lambda_o > 0 and reconet.init == str(paths["baseline"])
    assert list(paths) == ["reconet", "baseline"]
    # the fine-tuned run's cache folder does not depend on where the cache lives, only on the baseline's recipe
    calls.clear()
    other = tutorial.ensure_tutorial_checkpoints(quick=True, device="cpu", output_dir=tmp_path / "elsewhere")
    assert other["reconet"].parent.name == paths["reconet"].parent.name
