"""The command line turns every error a user can cause into one line on stderr and a non-zero exit status."""
from __future__ import annotations

import errno

import pytest

from reconet_lib import cli
from reconet_lib.errors import TrainingInterrupted, UserInputError


@pytest.fixture
def command_raising(monkeypatch):
    """Make ``reconet train``'s function raise the given exception."""

    def install(exc: BaseException):
        def run(args):
            raise exc

        parser = cli.build_parser()
        real_parse = parser.parse_args

        def parse(argv=None):
            args = real_parse(argv)
            args.func = run
            return args

        monkeypatch.setattr(parser, "parse_args", parse)
        monkeypatch.setattr(cli, "build_parser", lambda only=None: parser)

    return install


@pytest.mark.parametrize("exc, status, fragment", [
    (UserInputError("bad value\nsecond line"), 2, "bad value"),
    (OSError(errno.ENOSPC, "No space left on device", "/out/last.pt"), 2, "disk is full"),
    (OSError(errno.EROFS, "Read-only file system", "/ro/run"), 2, "read-only"),
    (PermissionError(errno.EACCES, "Permission denied", "/root/x"), 2, "Permission denied (/root/x)"),
    (FileNotFoundError("config file x.yaml does not exist"), 2, "x.yaml does not exist"),
    (OSError(), 2, "OSError"),
    (MemoryError(), 2, "out of memory"),
    (KeyboardInterrupt(), 130, "interrupted"),
    (TrainingInterrupted("training stopped by SIGTERM after step 3", 143), 143, "SIGTERM"),
])
def test_user_errors_become_one_line_and_an_exit_status(command_raising, capsys, exc, status, fragment):
    command_raising(exc)
    assert cli.main(["train"]) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("reconet train: ") and fragment in err, err


def test_a_bug_still_shows_its_traceback(command_raising):
    command_raising(ZeroDivisionError("a bug"))
    with pytest.raises(ZeroDivisionError):
        cli.main(["train"])


# ----------------------------------------------------------------------------------------------------------
# Usage errors: one line, exit status 2, no usage block; --help unchanged
# ----------------------------------------------------------------------------------------------------------


def _usage_status(argv) -> int:
    """The exit status argparse leaves ``reconet`` with (usage errors and --help end in SystemExit)."""
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    return info.value.code


def _frames(folder):
    import numpy as np

    from reconet_lib.frame_folders import write_frames

    return write_frames(folder, [np.zeros((8, 10, 3), np.uint8)] * 2)


@pytest.mark.parametrize("size, fragment", [
    ("0", "size '0' must be a positive number of pixels"),
    ("-5", "size '-5' must be a positive number of pixels"),
    ("abc", "'abc' is not a size"),
    ("0x10", "got width 0, height 10"),
])
def test_bad_size_is_one_line_usage_error_without_usage_block(tmp_path, capsys, size, fragment):
    argv = ["stylize", str(tmp_path / "clip.mp4"), "--checkpoint", "CK", "-o", str(tmp_path / "o.mp4"), "--size", size]
    assert _usage_status(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "usage:" not in err, err
    assert err.startswith("reconet stylize: error: argument --size: ") and fragment in err, err
    assert err.rstrip().endswith("(see reconet stylize --help)"), err
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize("argv, prog", [
    ([], "reconet"),
    (["bogus"], "reconet"),
    (["train", "--no-such-option"], "reconet train"),
    (["stylize", "in.mp4"], "reconet stylize"),
    (["stylize", "in.mp4", "--checkpoint", "c.pt", "-o", "o.mp4", "--batch-size", "two"], "reconet stylize"),
    (["evaluate"], "reconet evaluate"),
    (["evaluate", "a", "b", "--no-such-option"], "reconet evaluate"),
])
def test_argument_errors_of_every_subcommand_are_one_line_with_status_2(capsys, argv, prog):
    assert _usage_status(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "usage:" not in err, err
    assert err.startswith(f"{prog}: error: ") and err.rstrip().endswith(f"(see {prog} --help)"), err


def test_argument_error_from_the_real_command_is_one_line_with_status_2(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "reconet_lib", "stylize", "clip.mp4", "--checkpoint", "CK", "-o", "o.mp4",
         "--size", "0x10"], capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert "width 0, height 10" in result.stderr and "(see reconet stylize --help)" in result.stderr
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize("argv", [["--help"], ["stylize", "--help"], ["train", "-h"], ["evaluate", "--help"]])
def test_help_still_prints_the_full_usage_and_exits_0(capsys, argv):
    assert _usage_status(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: reconet") and "options:" in out


def test_stylize_help_says_mp4_pads_odd_sizes_and_png_keeps_them(capsys):
    assert _usage_status(["stylize", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for words in ("MP4 output needs an even width and height", "H.264 4:2:0", "padded by one pixel",
                  "PNG folder output keeps the exact size"):
        assert words in text, text


def test_pad_note_matches_what_video_output_does():
    import numpy as np

    from reconet_lib.frames import pad_to_even

    frame = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    padded = pad_to_even(frame)
    assert padded.shape == (6, 8, 3) and np.array_equal(padded[:5, :7], frame)  # padded, not resized
    assert np.array_equal(padded[5, :7], frame[4]) and np.array_equal(padded[:5, 7], frame[:, 6])


# ----------------------------------------------------------------------------------------------------------
# Checkpoint errors through the command
# ----------------------------------------------------------------------------------------------------------


def test_checkpoint_directory_is_named_as_directory_with_its_checkpoints(tmp_path, capsys):
    frames = _frames(tmp_path / "frames")
    run = tmp_path / "run"
    run.mkdir()
    for name in ("last.pt", "step_0000100.pt"):
        (run / name).write_bytes(b"x")
    assert cli.main(["stylize", str(frames), "--checkpoint", str(run), "-o", str(tmp_path / "o.mp4")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a directory" in err and "does not exist" not in err, err
    assert str(run / "last.pt") in err and str(run / "step_0000100.pt") in err, err
    assert not (tmp_path / "o.mp4").exists()


def test_text_file_as_checkpoint_says_it_is_not_a_pytorch_file(tmp_path, capsys):
    frames = _frames(tmp_path / "frames")
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a checkpoint\n")
    assert cli.main(["stylize", str(frames), "--checkpoint", str(text), "-o", str(tmp_path / "o.mp4")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a PyTorch checkpoint file" in err and "KeyError" not in err, err
    assert not (tmp_path / "o.mp4").exists()


def test_resume_on_a_folder_without_a_run_is_an_error_unless_asked_to_start(tmp_path, capsys, monkeypatch):
    from reconet_lib.train import command

    started = []
    monkeypatch.setattr(command, "train", lambda config, resume, progress: started.append(resume) or
                        type("Result", (), {"finished": True})())
    for folder in (tmp_path / "mistyped", tmp_path / "empty"):
        (tmp_path / "empty").mkdir(exist_ok=True)
        assert cli.main(["train", "-o", str(folder), "--resume"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(folder) in err and "--resume-or-start" in err, err
    assert started == []
    assert cli.main(["train", "-o", str(tmp_path / "empty"), "--resume-or-start"]) == 0
    assert started == [True]
