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
        monkeypatch.setattr(cli, "build_parser", lambda: parser)

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
