"""Tests of reconet_lib.train: the loop, exact resuming, checkpoints, the non-finite guard, DDP, CLI and config."""
from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reconet_lib import cli, losses, synthetic
from reconet_lib import train as train_mod
from reconet_lib.checkpoint import load_checkpoint, load_model
from reconet_lib.errors import UserInputError
from reconet_lib.network import ReCoNet
from reconet_lib.train import (
    TrainConfig,
    TrainingDivergedError,
    checkpoint_files,
    parse_data_spec,
    plot_losses,
    read_log,
    train,
)

LOSS_KEYS = ("total", *losses.LOSS_TERMS, *(f"{t}_raw" for t in losses.LOSS_TERMS))


@pytest.fixture(scope="module")
def pairs_root(tmp_path_factory) -> Path:
    """A tiny synthetic dataset in the Sintel layout: 2 scenes of 4 frames at 40 x 48."""
    root = tmp_path_factory.mktemp("synthetic") / "training"
    config = synthetic.SyntheticConfig(height=40, width=48, frames=4, objects=2)
    return synthetic.generate_dataset(root, scenes=2, config=config)


@pytest.fixture(scope="module", autouse=True)
def _data_dir(tmp_path_factory):
    """Generated files (the procedural style image) go to a private data folder."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RECONET_DATA", str(tmp_path_factory.mktemp("reconet_data")))
        yield


def tiny_config(pairs_root: Path, output: Path, **changes) -> TrainConfig:
    values = dict(
        data=[{"kind": "synthetic", "path": str(pairs_root)}], model="tiny", crop=(32, 32), batch_size=2, steps=8,
        lr=2e-3, vgg_weights=None, style="mosaic", style_size=64, output=str(output), checkpoint_every=3,
        keep_last=2, log_every=1, num_workers=0, device="cpu", precision="fp32", seed=3,
    )
    values.update(changes)
    return TrainConfig(**values)


def losses_by_step(output: Path) -> dict[int, dict[str, float]]:
    return {r["step"]: {k: r[k] for k in LOSS_KEYS} for r in read_log(output)}


@pytest.fixture(scope="module")
def reference_run(pairs_root, tmp_path_factory):
    """An uninterrupted 8-step run (checkpoints at 3, 6 and 8)."""
    output = tmp_path_factory.mktemp("reference")
    result = train(tiny_config(pairs_root, output), progress=False, verbose=False)
    return output, result


# ----------------------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------------------


def test_short_cpu_run_lowers_the_total_loss(pairs_root, tmp_path):
    result = train(tiny_config(pairs_root, tmp_path, steps=24, checkpoint_every=0), progress=False, verbose=False)
    totals = [r["total"] for r in read_log(tmp_path)]
    assert len(totals) == 24 and result.finished
    first, last = sum(totals[:4]) / 4, sum(totals[-4:]) / 4
    assert last < 0.7 * first, (first, last)


def test_every_logged_term_is_finite_and_the_total_is_their_sum(reference_run):
    output, _ = reference_run
    for record in read_log(output):
        assert all(math.isfinite(record[k]) for k in LOSS_KEYS)
        assert record["total"] == pytest.approx(sum(record[t] for t in losses.LOSS_TERMS), rel=1e-5)
        assert record["skipped"] == 0


@pytest.mark.parametrize("stop_after", [2, 3, 7])
def test_resume_after_an_interruption_reproduces_the_uninterrupted_losses_exactly(
    reference_run, pairs_root, tmp_path, stop_after
):
    reference_output, _ = reference_run
    config = tiny_config(pairs_root, tmp_path)
    first = train(config, progress=False, verbose=False, stop_after=stop_after)
    assert first.step == stop_after and not first.finished
    resumed = train(config, resume=True, progress=False, verbose=False)
    assert resumed.start_step == 3 * (stop_after // 3)  # the last checkpoint before the interruption
    assert resumed.finished
    expected, got = losses_by_step(reference_output), losses_by_step(tmp_path)
    assert list(got) == list(range(1, 9))  # no step logged twice, none missing
    assert got == expected  # bit-identical floats
    a = load_checkpoint(reference_output / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_folder_with_checkpoints_is_not_overwritten_without_resume(reference_run, pairs_root):
    output, _ = reference_run
    with pytest.raises(UserInputError, match="resume"):
        train(tiny_config(pairs_root, output), progress=False, verbose=False)


def test_a_folder_another_process_trains_into_is_refused(pairs_root, tmp_path):
    with train_mod.exclusive(tmp_path / train_mod.LOCK_NAME, wait=False):
        with pytest.raises(UserInputError, match="another process is training"):
            train(tiny_config(pairs_root, tmp_path), progress=False, verbose=False)


def test_resume_refuses_a_config_that_changes_the_run(reference_run, pairs_root):
    output, _ = reference_run
    with pytest.raises(UserInputError, match="batch_size"):
        train(tiny_config(pairs_root, output, batch_size=1, steps=10), resume=True, progress=False, verbose=False)


def test_resume_can_extend_a_finished_run(reference_run, pairs_root, tmp_path):
    import shutil

    output = tmp_path / "run"
    shutil.copytree(reference_run[0], output)
    result = train(tiny_config(pairs_root, output, steps=10), resume=True, progress=False, verbose=False)
    assert result.start_step == 8 and result.step == 10
    assert [r["step"] for r in read_log(output)] == list(range(1, 11))


def test_init_starts_the_run_from_the_checkpoints_network_weights(reference_run, pairs_root, tmp_path):
    start = reference_run[0] / "last.pt"
    config = tiny_config(pairs_root, tmp_path / "tuned", steps=1, lr=1e-9, seed=99, init=str(start))
    train(config, progress=False, verbose=False)
    before, after = load_model(start).state_dict(), load_model(tmp_path / "tuned" / "last.pt").state_dict()
    assert all(torch.allclose(before[k], after[k], atol=1e-6) for k in before)  # one step of 1e-9 from init
    fresh = tiny_config(pairs_root, tmp_path / "fresh", steps=1, lr=1e-9, seed=99)
    train(fresh, progress=False, verbose=False)
    other = load_model(tmp_path / "fresh" / "last.pt").state_dict()
    assert not all(torch.allclose(before[k], other[k], atol=1e-6) for k in before)  # without init: seed 99's weights


def test_init_of_another_network_or_a_missing_file_is_one_line_before_anything_is_written(reference_run, pairs_root,
                                                                                          tmp_path):
    start = reference_run[0] / "last.pt"
    with pytest.raises(UserInputError, match=r"TrainConfig.init: .* holds another network .*--preset") as info:
        train(tiny_config(pairs_root, tmp_path / "a", model="demo", init=str(start)), progress=False, verbose=False)
    assert "\n" not in str(info.value)
    with pytest.raises(UserInputError, match=r"TrainConfig.init: .* is not a file"):
        train(tiny_config(pairs_root, tmp_path / "b", init=str(tmp_path / "missing.pt")), progress=False,
              verbose=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cli_init_option_reaches_the_config(tmp_path):
    args = cli.build_parser().parse_args(["train", "--init", str(tmp_path / "base.pt"), "--steps", "5",
                                          "--output", str(tmp_path / "run")])
    assert train_mod.config_from_args(args).init == str(tmp_path / "base.pt")


# ----------------------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------------------


def test_checkpoints_load_with_weights_only_only_the_last_k_are_kept_and_no_temp_files_remain(reference_run):
    output, result = reference_run
    assert [p.name for p in checkpoint_files(output)] == ["step_0000006.pt", "step_0000008.pt"]
    assert result.checkpoint == output / "last.pt"
    leftovers = [p.name for p in output.iterdir() if p.suffix == ".tmp" or p.name.startswith(".")]
    assert leftovers == [train_mod.LOCK_NAME]  # the (empty) lock file stays; no temporary file does
    for path in [*checkpoint_files(output), output / "last.pt"]:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("model", "optimizer", "scheduler", "scaler", "rng", "step", "data_state", "train_config",
                    "style_name", "style_sha256", "model_config"):
            assert key in payload, key
    last = torch.load(output / "last.pt", weights_only=True)
    assert last["step"] == 8 and last["style_name"] == "mosaic"
    assert TrainConfig.from_dict(last["train_config"]).steps == 8


def test_load_model_reads_a_training_checkpoint(reference_run):
    import reconet_lib

    output, _ = reference_run
    model = reconet_lib.load_model(output / "last.pt")
    assert not model.training
    x = torch.rand(1, 3, 21, 30)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1


# ----------------------------------------------------------------------------------------------------------
# Non-finite guard
# ----------------------------------------------------------------------------------------------------------


def _nan_on_calls(monkeypatch, bad_calls):
    """Make pair_losses return a NaN total on the given (1-based) calls."""
    real = losses.pair_losses
    calls = {"n": 0}

    def patched(*args, **kwargs):
        calls["n"] += 1
        terms = real(*args, **kwargs)
        if bad_calls == "all" or calls["n"] in bad_calls:
            terms["total"] = terms["total"] * float("nan")
        return terms

    monkeypatch.setattr(losses, "pair_losses", patched)


def test_non_finite_steps_are_skipped_and_counted(monkeypatch, pairs_root, tmp_path):
    _nan_on_calls(monkeypatch, {3, 4})
    snapshots = []
    real_step = torch.optim.Adam.step

    def counting_step(self, *args, **kwargs):
        snapshots.append(1)
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", counting_step)
    result = train(tiny_config(pairs_root, tmp_path, steps=6, checkpoint_every=0), progress=False, verbose=False)
    assert result.finished and result.skipped_steps == 2
    assert len(snapshots) == 4  # the two NaN steps made no update
    records = read_log(tmp_path)
    assert [r["skipped"] for r in records] == [0, 0, 1, 1, 0, 0]
    assert all("total" not in r for r in records[2:4])
    assert load_checkpoint(tmp_path / "last.pt")["nonfinite"] == {"consecutive": 0, "total": 2}


def _step_inputs(seed: int = 0):
    """A tiny model with its loss network, Adam, a disabled scaler and a 2-pair batch of 24 x 32 frames."""
    torch.manual_seed(seed)
    model = ReCoNet.from_preset("tiny").train()
    weights = losses.LossWeights(content_layer="relu2_2", style_layer_weights={"relu1_2": 1.0, "relu2_2": 1.0})
    vgg = losses.VGGFeatures(None, layers=weights.vgg_layers, seed=0)
    grams = losses.style_grams(vgg, torch.rand(1, 3, 32, 32), list(weights.style_layer_weights))
    generator = torch.Generator().manual_seed(seed)
    batch = {"current": torch.rand(2, 3, 24, 32, generator=generator),
             "previous": torch.rand(2, 3, 24, 32, generator=generator),
             "flow": torch.randn(2, 2, 24, 32, generator=generator), "valid": torch.ones(2, 1, 24, 32)}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    return train_mod.PairLoss(model, vgg, grams, weights), optimizer, torch.amp.GradScaler("cpu", enabled=False), batch


def test_train_step_returns_every_logged_term_as_a_float_and_updates_the_network():
    runner, optimizer, scaler, batch = _step_inputs()
    before = [p.detach().clone() for p in runner.model.parameters()]
    result = train_mod.train_step(runner, optimizer, scaler, batch, device=torch.device("cpu"))
    assert set(result.terms) == set(LOSS_KEYS) and all(type(v) is float for v in result.terms.values())
    assert math.isclose(result.terms["total"], sum(result.terms[t] for t in losses.LOSS_TERMS), rel_tol=1e-5)
    assert result.updated and result.grad_finite and not result.stop_requested
    assert any(not torch.equal(a, b) for a, b in zip(before, runner.model.parameters()))


def test_train_step_skips_the_update_of_a_non_finite_loss_and_clips_to_grad_clip(monkeypatch):
    runner, optimizer, scaler, batch = _step_inputs()
    clipped = train_mod.train_step(runner, optimizer, scaler, batch, device=torch.device("cpu"), grad_clip=1e-3)
    norm = torch.cat([p.grad.flatten() for p in runner.model.parameters() if p.grad is not None]).norm()
    assert clipped.grad_norm > 1e-3 and float(norm) == pytest.approx(1e-3, rel=1e-3)  # measured before, clipped after
    _nan_on_calls(monkeypatch, "all")
    before = [p.detach().clone() for p in runner.model.parameters()]
    result = train_mod.train_step(runner, optimizer, scaler, batch, device=torch.device("cpu"), stop_requested=True)
    assert not result.updated and not result.loss_finite and result.stop_requested
    assert all(torch.equal(a, b) for a, b in zip(before, runner.model.parameters()))
    assert all(p.grad is None for p in runner.model.parameters())


def test_the_loop_takes_its_steps_with_the_public_train_step(monkeypatch, pairs_root, tmp_path):
    from reconet_lib.train import loop

    seen = []

    def spy(*args, **kwargs):
        result = train_mod.train_step(*args, **kwargs)
        seen.append(result.terms["total"])
        return result

    monkeypatch.setattr(loop, "train_step", spy)
    result = train(tiny_config(pairs_root, tmp_path, steps=2, checkpoint_every=0), progress=False, verbose=False)
    assert result.finished and seen == [r["total"] for r in read_log(tmp_path)]


def test_training_stops_after_max_nonfinite_consecutive_steps(monkeypatch, pairs_root, tmp_path):
    _nan_on_calls(monkeypatch, "all")
    config = tiny_config(pairs_root, tmp_path, steps=20, max_nonfinite=4)
    with pytest.raises(TrainingDivergedError, match="4 steps in a row") as info:
        train(config, progress=False, verbose=False)
    assert "step 4" in str(info.value)
    assert [r["skipped"] for r in read_log(tmp_path)] == [1, 1, 1, 1]
    assert checkpoint_files(tmp_path)[-1].name == "step_0000003.pt"


# ----------------------------------------------------------------------------------------------------------
# Several processes
# ----------------------------------------------------------------------------------------------------------


def test_two_gloo_processes_train_and_write_one_loadable_checkpoint(pairs_root, tmp_path):
    import reconet_lib

    output = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RECONET_DATA": str(tmp_path / "data")}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "reconet_lib", "train", "--data", f"synthetic:{pairs_root}", "--preset", "tiny", "--crop", "32x32",
        "--batch-size", "1", "--steps", "4", "--checkpoint-every", "2", "--log-every", "1", "--vgg-weights", "random",
        "--style-size", "64", "--device", "cpu", "--precision", "fp32", "--num-workers", "0", "--no-progress",
        "--output", str(output),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert [r["step"] for r in read_log(output)] == [1, 2, 3, 4]
    payload = load_checkpoint(output / "last.pt")
    assert payload["step"] == 4 and payload["data_state"]["world_size"] == 2
    model = reconet_lib.load_model(output / "last.pt")
    assert not any(k.startswith("module.") for k in model.state_dict())


# ----------------------------------------------------------------------------------------------------------
# Command line and config files
# ----------------------------------------------------------------------------------------------------------


def test_cli_reports_a_missing_dataset_on_one_line(tmp_path, capsys):
    status = cli.main(["train", "--data", f"sintel:{tmp_path / 'no_such_folder'}", "--output", str(tmp_path / "run"),
                       "--vgg-weights", "random", "--device", "cpu"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and "no_such_folder" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv, fragment", [
    (["--crop", "4x4"], "crop"),
    (["--batch-size", "0"], "batch_size"),
    (["--data", "flickr:/x"], "unknown kind"),
    (["--lr", "-1"], "lr"),
])
def test_cli_reports_a_bad_option_value_on_one_line(tmp_path, capsys, argv, fragment):
    status = cli.main(["train", *argv, "--output", str(tmp_path / "run"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and fragment in err and "Traceback" not in err


def test_cli_rejects_an_unknown_choice_with_usage(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--precision", "fp8"])
    assert info.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_cli_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    parser = cli.build_parser()
    train_parser = parser.commands.choices["train"]
    for action in train_parser._actions:
        assert action.help, action.option_strings
        for option in action.option_strings:
            assert option in out


def test_cli_options_override_a_config_file(tmp_path):
    base = TrainConfig(steps=77, lr=5e-4, batch_size=3)
    base.save(tmp_path / "base.yaml")
    parser = cli.build_parser()
    args = parser.parse_args(["train", "--config", str(tmp_path / "base.yaml"), "--lr", "0.01", "--crop", "96x128",
                              "--lambda-o", "0", "--data", "videos:/clips@0.5", "--data", "synthetic"])
    config = train_mod.config_from_args(args)
    assert (config.steps, config.lr, config.batch_size, config.crop) == (77, 0.01, 3, (128, 96))
    assert config.loss.lambda_o == 0 and config.loss.lambda_f == base.loss.lambda_f
    assert [(s["kind"], s["path"], s["weight"]) for s in config.data] == [("videos", "/clips", 0.5), ("synthetic", None, 1.0)]


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_config_round_trips_through_json_and_yaml(tmp_path, suffix):
    config = TrainConfig(
        style="candy", data=[{"kind": "sintel", "root": "/data/sintel", "weight": 2, "options": {"passes": ["clean"]}},
                             {"kind": "synthetic"}],
        resize=(180, 320), crop=(128, 160), steps=123, lr_schedule="cosine", grad_clip=1.5, vgg_weights=None,
        loss=losses.LossWeights(lambda_f=0.0, style_layer_weights={"relu2_2": 2.0}), model="demo", num_workers=1,
    )
    path = config.save(tmp_path / f"config{suffix}")
    loaded = TrainConfig.load(path)
    assert loaded == config
    assert loaded.data[0]["path"] == "/data/sintel" and loaded.crop == (128, 160)


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(UserInputError, match="TrainConfig.keep_last"):
        TrainConfig(keep_last=0)
    with pytest.raises(UserInputError, match="TrainConfig.precision"):
        TrainConfig(precision="fp8")
    with pytest.raises(UserInputError, match=r"TrainConfig.data\[0\]"):
        TrainConfig(data=[{"kind": "sintel"}])
    with pytest.raises(UserInputError, match="unknown TrainConfig keys"):
        TrainConfig.from_dict({"stepz": 3})
    with pytest.raises(UserInputError, match=".json, .yaml"):
        TrainConfig().save(tmp_path / "config.txt")
    (tmp_path / "bad.yaml").write_text("steps: [1,\n")
    with pytest.raises(UserInputError, match="not valid YAML"):
        TrainConfig.load(tmp_path / "bad.yaml")


def test_data_specs_parse_kind_path_and_weight():
    assert parse_data_spec("synthetic") == {"kind": "synthetic", "path": None, "weight": 1.0}
    assert parse_data_spec("sintel:/d/Sintel/training@2") == {"kind": "sintel", "path": "/d/Sintel/training", "weight": 2.0}
    assert parse_data_spec("videos:/me@home/clips") == {"kind": "videos", "path": "/me@home/clips", "weight": 1.0}
    with pytest.raises(UserInputError, match="unknown kind"):
        parse_data_spec("kitti:/x")


# ----------------------------------------------------------------------------------------------------------
# Plotting and the tutorial checkpoints
# ----------------------------------------------------------------------------------------------------------


def test_plot_losses_draws_every_term_of_one_or_several_runs(reference_run):
    output, _ = reference_run
    fig = plot_losses(output)
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 1 + len(losses.LOSS_TERMS)
    assert len(fig.axes[0].get_lines()[0].get_xdata()) == 8
    fig = plot_losses({"a": output, "b": output / "log.jsonl"}, raw=True)
    assert len(fig.axes[0].get_lines()) == 2


def test_ensure_tutorial_checkpoints_trains_both_models_once(monkeypatch, pairs_root, tmp_path):
    from reconet_lib.train import tutorial

    real_config = tutorial.tutorial_config

    def small(quick, device, **kwargs):
        config = real_config(quick, device, **kwargs)
        return dataclasses.replace(config, data=[{"kind": "synthetic", "path": str(pairs_root)}], model="tiny",
                                   crop=(32, 32), steps=2, style_size=64, checkpoint_every=0)

    monkeypatch.setattr(tutorial, "tutorial_config", small)
    monkeypatch.setattr(losses.VGGFeatures, "available", staticmethod(lambda weights="imagenet": weights is None))
    paths = train_mod.ensure_tutorial_checkpoints(True, "cpu", output_dir=tmp_path)
    assert set(paths) == {"reconet", "baseline"} and all(p.is_file() for p in paths.values())
    stored = {k: load_checkpoint(p)["train_config"] for k, p in paths.items()}
    assert stored["baseline"]["loss"]["lambda_f"] == stored["baseline"]["loss"]["lambda_o"] == 0
    assert stored["reconet"]["loss"]["lambda_o"] > 0 and stored["reconet"]["vgg_weights"] is None
    monkeypatch.setattr(tutorial, "train", lambda *a, **k: pytest.fail("cached checkpoints were retrained"))
    assert train_mod.ensure_tutorial_checkpoints(True, "cpu", output_dir=tmp_path) == paths


@pytest.mark.parametrize("schedule", ["constant", "cosine", "step"])
def test_the_lr_schedule_is_a_function_of_the_step_and_survives_a_state_dict(schedule):
    from reconet_lib.train import lr_factor, make_scheduler

    config = TrainConfig(lr=0.01, steps=10, lr_schedule=schedule, lr_step_every=3, lr_step_gamma=0.5,
                         lr_min_factor=0.1)
    params = [torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.Adam(params, lr=config.lr)
    scheduler = make_scheduler(optimizer, config)
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == [0.01 * lr_factor(config, taken) for taken in range(10)]
    assert rates[0] == 0.01 and (schedule == "constant") == (rates[-1] == 0.01)
    other = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=config.lr)
    resumed = make_scheduler(other, config)
    other.load_state_dict(optimizer.state_dict())
    resumed.load_state_dict(scheduler.state_dict())
    resumed.step()
    scheduler.step()
    assert other.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"] == 0.01 * lr_factor(config, 11)


def _record_tutorial_runs(monkeypatch, tmp_path, prepare):
    """Run ensure_tutorial_checkpoints in full mode with training replaced by a recorder; the configs it asked for."""
    from reconet_lib.train import recipe
    from reconet_lib.train import tutorial

    asked = []
    monkeypatch.setattr(recipe, "prepare_sintel", prepare)
    monkeypatch.setattr(tutorial, "train", lambda config, **kwargs: asked.append(config))
    tutorial.ensure_tutorial_checkpoints(False, "cpu", output_dir=tmp_path)
    return asked


def test_full_mode_tutorial_models_train_on_real_sintel_frames_with_the_recipe(monkeypatch, tmp_path, capsys):
    from reconet_lib.train.recipe import RECIPE

    sintel = tmp_path / "MPI-Sintel" / "training"
    asked = _record_tutorial_runs(monkeypatch, tmp_path / "runs", lambda **kwargs: sintel)
    assert len(asked) == 2
    for config in asked:
        assert config.data == [{"kind": "sintel", "path": str(sintel), "weight": 1.0,
                                "options": {"passes": ["clean", "final"]}}]
        recipe = {v.field: v.value for v in RECIPE}
        for field in ("model", "lr", "batch_size", "crop", "scale_range", "flip", "lr_schedule", "precision"):
            assert getattr(config, field) == recipe[field], field
    assert "instead of MPI Sintel" not in capsys.readouterr().out


def test_full_mode_without_sintel_says_so_once_and_trains_on_photo_scenes(monkeypatch, tmp_path, capsys):
    from reconet_lib.resources import ResourceUnavailable

    def offline(**kwargs):
        raise ResourceUnavailable("mpi_sintel is not available offline (RECONET_OFFLINE=1)", "mpi_sintel")

    asked = _record_tutorial_runs(monkeypatch, tmp_path / "runs", offline)
    assert [c.data[0]["kind"] for c in asked] == ["synthetic", "synthetic"]
    assert capsys.readouterr().out.count("instead of MPI Sintel") == 1
