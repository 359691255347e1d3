"""Faults and bad input around training (issue 9): each ends in one line on stderr, a non-zero exit and intact files.

Commands run through ``reconet_lib.cli.main`` (the real command's entry point) or, for signals, a real
``python -m reconet_lib train`` process.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from reconet_lib import cli, synthetic
from reconet_lib.checkpoint import checkpoint_files, load_checkpoint, save_checkpoint
from reconet_lib.errors import UserInputError
from reconet_lib.train import TrainConfig, read_log, train


@pytest.fixture(scope="module")
def pairs_root(tmp_path_factory) -> Path:
    """A tiny synthetic dataset in the Sintel layout: 2 scenes of 4 frames at 40 x 48."""
    root = tmp_path_factory.mktemp("synthetic") / "training"
    return synthetic.generate_dataset(root, scenes=2, config=synthetic.SyntheticConfig(height=40, width=48, frames=4,
                                                                                        objects=2))


@pytest.fixture(scope="module", autouse=True)
def _data_dir(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RECONET_DATA", str(tmp_path_factory.mktemp("reconet_data")))
        yield


def tiny_args(pairs_root: Path, output: Path, *more: str) -> list[str]:
    return ["train", "--data", f"synthetic:{pairs_root}", "--preset", "tiny", "--crop", "32x32", "--batch-size", "1",
            "--vgg-weights", "random", "--style-size", "64", "--device", "cpu", "--precision", "fp32",
            "--num-workers", "0", "--no-progress", "--log-every", "1", "--seed", "3", "-o", str(output), *more]


def tiny_config(pairs_root: Path, output: Path, **changes) -> TrainConfig:
    values = dict(data=[{"kind": "synthetic", "path": str(pairs_root)}], model="tiny", crop=(32, 32), batch_size=1,
                  steps=4, vgg_weights=None, style_size=64, output=str(output), checkpoint_every=2, keep_last=5,
                  log_every=1, num_workers=0, device="cpu", precision="fp32", seed=3)
    values.update(changes)
    return TrainConfig(**values)


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    status = cli.main(argv)
    err = capsys.readouterr().err
    return status, err


def assert_one_line(status: int, err: str, *fragments: str) -> None:
    assert status != 0
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


@pytest.fixture(scope="module")
def finished_run(pairs_root, tmp_path_factory) -> Path:
    """A finished 4-step run with step_0000002.pt, step_0000004.pt and last.pt (step 4)."""
    output = tmp_path_factory.mktemp("finished")
    train(tiny_config(pairs_root, output), progress=False, verbose=False)
    return output


def copy_run(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(run, target)
    (target / ".train.lock").unlink(missing_ok=True)
    return target


# ----------------------------------------------------------------------------------------------------------
# Resume: only this run's newest, intact checkpoint
# ----------------------------------------------------------------------------------------------------------


def test_resume_refuses_a_last_pt_older_than_the_newest_step_checkpoint(finished_run, pairs_root, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    shutil.copy(run / "step_0000002.pt", run / "last.pt")  # a stale last.pt beside step 4
    log_before = (run / "log.jsonl").read_bytes()
    status, err = run_cli(tiny_args(pairs_root, run, "--steps", "6", "--checkpoint-every", "2", "--resume"), capsys)
    assert_one_line(status, err, "older than step_0000004.pt", f"delete {run / 'last.pt'}", "step_0000004.pt")
    assert (run / "log.jsonl").read_bytes() == log_before  # nothing rewritten
    assert [p.name for p in checkpoint_files(run)] == ["step_0000002.pt", "step_0000004.pt"]


def test_resume_refuses_another_runs_last_pt(finished_run, pairs_root, tmp_path, capsys):
    other = tmp_path / "other"
    train(tiny_config(pairs_root, other, seed=9, steps=2), progress=False, verbose=False)
    run = copy_run(finished_run, tmp_path)
    for path in checkpoint_files(run):
        path.unlink()
    shutil.copy(other / "last.pt", run / "last.pt")
    status, err = run_cli(tiny_args(pairs_root, run, "--steps", "6", "--resume"), capsys)
    assert_one_line(status, err, "cannot resume", "seed", f"delete {run / 'last.pt'}")


def test_resume_refuses_a_last_pt_of_another_style(finished_run, pairs_root, tmp_path):
    run = copy_run(finished_run, tmp_path)
    payload = load_checkpoint(run / "last.pt")
    payload["style_sha256"] = "0" * 64
    save_checkpoint(run / "last.pt", payload)
    with pytest.raises(UserInputError, match="another style image.*delete"):
        train(tiny_config(pairs_root, run, steps=6), resume=True, progress=False, verbose=False)


@pytest.mark.parametrize("damage", ["garbage", "empty", "truncated"])
def test_a_damaged_last_pt_names_the_intact_step_checkpoint_beside_it(finished_run, pairs_root, tmp_path, capsys,
                                                                     damage):
    run = copy_run(finished_run, tmp_path)
    good = (run / "last.pt").read_bytes()
    (run / "last.pt").write_bytes({"garbage": b"not a checkpoint", "empty": b"", "truncated": good[: len(good) // 2]}[damage])
    status, err = run_cli(tiny_args(pairs_root, run, "--steps", "6", "--resume"), capsys)
    assert_one_line(status, err, "last.pt", "delete", "step_0000004.pt (step 4)")


def test_a_damaged_only_checkpoint_says_to_delete_it(pairs_root, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"")
    status, err = run_cli(tiny_args(pairs_root, run, "--resume"), capsys)
    assert_one_line(status, err, "empty (0 bytes)", "no intact checkpoint")


def test_leftover_temporaries_of_a_killed_run_are_removed_on_the_next_run(finished_run, pairs_root, tmp_path):
    run = copy_run(finished_run, tmp_path)
    leftovers = [run / ".step_0000006.pt.k1ll3d.tmp", run / ".last.pt.x7y8z9.tmp"]
    for path in leftovers:
        path.write_bytes(b"half a checkpoint")
    result = train(tiny_config(pairs_root, run, steps=6), resume=True, progress=False, verbose=False)
    assert result.finished and not any(path.exists() for path in leftovers)
    assert not [p for p in run.iterdir() if p.suffix == ".tmp"]


# ----------------------------------------------------------------------------------------------------------
# Config files and options
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, content, fragment", [
    ("empty.yaml", b"", "is empty"),
    ("comments.yaml", b"# only a comment\n", "is empty"),
    ("empty.json", b"{}", "is empty"),
    ("blank.json", b"  \n", "is empty"),
    ("latin1.yaml", "steps: 5 # d\xe9j\xe0\n".encode("latin-1"), "not UTF-8"),
])
def test_empty_and_non_utf8_configs_are_refused(tmp_path, capsys, name, content, fragment):
    (tmp_path / name).write_bytes(content)
    status, err = run_cli(["train", "--config", str(tmp_path / name), "-o", str(tmp_path / "run")], capsys)
    assert_one_line(status, err, fragment, name)
    assert not (tmp_path / "run").exists()


def test_grad_clip_none_overrides_a_config_value(tmp_path):
    TrainConfig(grad_clip=2.5, steps=7).save(tmp_path / "base.yaml")
    parser = cli.build_parser()
    from reconet_lib.train import config_from_args

    kept = config_from_args(parser.parse_args(["train", "--config", str(tmp_path / "base.yaml")]))
    cleared = config_from_args(parser.parse_args(["train", "--config", str(tmp_path / "base.yaml"), "--grad-clip", "none"]))
    assert (kept.grad_clip, kept.steps) == (2.5, 7)
    assert (cleared.grad_clip, cleared.steps) == (None, 7)


def test_cli_options_and_defaults_come_from_the_config_fields(capsys):
    import dataclasses

    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    for f in dataclasses.fields(TrainConfig):
        if f.name != "loss":
            assert f.metadata.get("flag", "--" + f.name.replace("_", "-")) in out, f.name
    assert "(default 20000)" in out and "(default 32x32)" not in out and "(default 256x256)" in out


def test_a_bare_number_is_refused_for_the_crop_with_a_hint(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--crop", "256"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "256x256" in err and "Traceback" not in err


@pytest.mark.parametrize("style", ["no_such_style", "missing.png", "broken.png"])
def test_a_bad_style_is_refused_before_the_output_folder_or_lock_exist(pairs_root, tmp_path, capsys, style):
    (tmp_path / "broken.png").write_bytes(b"not an image")
    style = str(tmp_path / style) if style.endswith(".png") else style
    output = tmp_path / "run"
    status, err = run_cli(tiny_args(pairs_root, output, "--style", style, "--steps", "2"), capsys)
    assert_one_line(status, err, "style" if "broken" not in style else "not an image")
    assert not output.exists()


@pytest.mark.parametrize("value, fragment", [("http://127.0.0.1:9/styles", "Connection refused"),
                                             ("not-a-url", "is not a URL")])
def test_a_broken_style_address_override_is_named_with_its_value(pairs_root, tmp_path, capsys, monkeypatch, value,
                                                                  fragment):
    """A bad ``RECONET_BASE_URL_STYLES`` is blamed on the variable and its value, never on the real address."""
    monkeypatch.setenv("RECONET_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("RECONET_OFFLINE", raising=False)
    monkeypatch.delenv("RECONET_MIRROR", raising=False)
    monkeypatch.setenv("RECONET_BASE_URL_STYLES", value)
    status, err = run_cli(tiny_args(pairs_root, tmp_path / "run", "--style", "candy", "--steps", "1"), capsys)
    assert_one_line(status, err, f"RECONET_BASE_URL_STYLES={value}" if "://" in value
                    else f"RECONET_BASE_URL_STYLES={value!r}", fragment, "unset it")


@pytest.mark.parametrize("crop, notice", [("64x64", True), ("48x40", False)])
def test_data_smaller_than_the_crop_is_enlarged_with_a_one_line_notice(pairs_root, tmp_path, capsys, crop, notice):
    """The 48x40 synthetic frames under a 64x64 crop: one line names the source, the factor and a crop that fits."""
    args = tiny_args(pairs_root, tmp_path / "run", "--steps", "1")
    args[args.index("--crop") + 1] = crop
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("notice:")]
    if notice:
        assert len(lines) == 1, out
        assert str(pairs_root) in lines[0] and "48x40 frames" in lines[0] and "64x64 crop" in lines[0], lines
        assert "enlarged 1.60x" in lines[0] and "--crop 48x40" in lines[0], lines
    else:
        assert lines == [], out


# ----------------------------------------------------------------------------------------------------------
# The output folder
# ----------------------------------------------------------------------------------------------------------


def test_output_onto_an_existing_file_is_refused(pairs_root, tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    status, err = run_cli(tiny_args(pairs_root, target, "--steps", "2"), capsys)
    assert_one_line(status, err, "is a file, not a folder")
    assert target.read_text() == "keep me"


@pytest.fixture
def mounted_tmpfs(tmp_path):
    """Mount a tmpfs at a fresh folder with the given options (skip where mounting is not allowed)."""
    mounted = []

    def mount(options: str) -> Path:
        folder = tmp_path / f"mnt{len(mounted)}"
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode(errors='replace').strip()})")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", str(folder)], capture_output=True)


def test_output_on_a_read_only_file_system_is_one_line(pairs_root, mounted_tmpfs, capsys):
    folder = mounted_tmpfs("ro,size=1m")
    status, err = run_cli(tiny_args(pairs_root, folder / "run", "--steps", "2"), capsys)
    assert_one_line(status, err, "read-only")


@pytest.mark.slow
def test_a_full_disk_during_training_is_one_line_and_keeps_earlier_checkpoints(pairs_root, mounted_tmpfs, capsys):
    folder = mounted_tmpfs("size=2m")
    output = folder / "run"
    status, err = run_cli(tiny_args(pairs_root, output, "--steps", "50", "--checkpoint-every", "1", "--keep-last",
                                    "100"), capsys)
    assert_one_line(status, err, "No space left on device", "disk is full", str(output))
    saved = checkpoint_files(output)
    assert saved, "the first checkpoints fit on the disk"
    steps = [load_checkpoint(path)["step"] for path in saved]
    assert steps == list(range(1, len(saved) + 1))  # every earlier checkpoint is intact
    assert load_checkpoint(output / "last.pt")["step"] >= steps[-1]
    assert not [p.name for p in output.iterdir() if p.name.endswith(".tmp")]


# ----------------------------------------------------------------------------------------------------------
# Signals to a real training process
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_saves_the_last_completed_step_and_the_run_resumes(pairs_root, tmp_path, capsys, signum, status):
    output = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "reconet_lib", *tiny_args(pairs_root, output, "--steps", "2000",
                                                                               "--checkpoint-every", "0")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if (output / "log.jsonl").is_file() and len(read_log(output)) >= 3:
                break
            time.sleep(0.2)
        assert process.poll() is None, process.communicate()[1][-2000:]
        process.send_signal(signum)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == status, err[-2000:]
    assert err.count("\n") == 1 and "Traceback" not in err, err
    payload = load_checkpoint(output / "last.pt")
    logged = [r["step"] for r in read_log(output)]
    assert payload["interrupted"] == signum.name and payload["step"] == logged[-1] >= 3
    assert logged == list(range(1, logged[-1] + 1))
    resumed = cli.main(tiny_args(pairs_root, output, "--steps", str(payload["step"] + 2), "--resume"))
    assert resumed == 0 and capsys.readouterr().err == ""
    assert [r["step"] for r in read_log(output)] == list(range(1, payload["step"] + 3))


def test_a_checkpoint_that_does_not_read_back_replaces_nothing(tmp_path, monkeypatch):
    from reconet_lib.network import ReCoNet
    from reconet_lib.checkpoint import model_checkpoint

    model = ReCoNet.from_preset("tiny")
    target = save_checkpoint(tmp_path / "m.pt", model_checkpoint(model, "a", "0" * 64))
    before = target.read_bytes()

    def broken_load(*args, **kwargs):
        raise RuntimeError("PytorchStreamReader failed reading zip archive")

    monkeypatch.setattr(torch, "load", broken_load)
    with pytest.raises(OSError, match="read back"):
        save_checkpoint(target, model_checkpoint(model, "b", "1" * 64))
    assert target.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["m.pt"]


def test_crops_beyond_memory_are_refused_before_anything_is_allocated_or_written(pairs_root, tmp_path, capsys):
    output = tmp_path / "run"
    status, err = run_cli(tiny_args(pairs_root, output, "--crop", "20000x20000", "--batch-size", "8"), capsys)
    assert_one_line(status, err, "GiB", "--crop or --batch-size")
    assert not output.exists()


def test_the_training_memory_bound_grows_with_crop_and_batch_and_allows_the_recipe():
    from reconet_lib.train.loop import training_memory_lower_bound

    small = training_memory_lower_bound(TrainConfig(model="paper", crop=(256, 256), batch_size=4))
    assert 0.5 * 2**30 < small < 8 * 2**30  # the recipe's step: a few GiB, as a 15 GB Colab T4 allows
    assert training_memory_lower_bound(TrainConfig(model="paper", crop=(512, 512), batch_size=4)) > 3.9 * small
    assert training_memory_lower_bound(TrainConfig(model="paper", crop=(256, 256), batch_size=8)) == 2 * small
