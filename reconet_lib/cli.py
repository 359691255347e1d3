"""The ``reconet`` command line (also ``python -m reconet_lib``).

Each sub-command lives in the module it belongs to and registers itself through an
``add_<name>_command(subparsers)`` function that sets ``func`` on its parser.

Every error a user can cause ends as one line on stderr and a non-zero exit status, never a traceback:
the library's own errors (:class:`~reconet_lib.errors.ReconetError`, including bad values, which are
:class:`~reconet_lib.errors.UserInputError` at their source), file-system errors (missing or read-only files,
a full disk), running out of memory, and interruptions: SIGINT (Ctrl-C), SIGTERM and SIGHUP all stop a command
the same way, with one line and the shell's status for the signal (130, 143, 129); what the command was writing is
removed as it unwinds (training saves its last completed step first, see :mod:`reconet_lib.train.loop`). A
traceback still means a bug in the library. Usage errors (a bad option value, a missing argument) are one line
too, ``reconet stylize: error: <what is wrong> (see reconet stylize --help)``, with exit status 2: every parser
is a :class:`OneLineParser`.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import signal
import sys
from typing import Iterator

from .cpu_threads import wait_passively
from .errors import ReconetError, TrainingInterrupted, first_line

#: Exit status of an error the user can fix (the same as argparse's usage errors).
USER_ERROR = 2
#: Exit status after Ctrl-C (128 + SIGINT).
INTERRUPTED = 130
#: Signals that stop every command as Ctrl-C does (where the system has them).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class Interrupted(KeyboardInterrupt):
    """A stop signal, raised in the main thread like Ctrl-C's ``KeyboardInterrupt``; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


@contextlib.contextmanager
def stop_signals_interrupt() -> Iterator[None]:
    """For the ``with`` block, SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted` (once: a repeated signal is
    ignored while the command unwinds and removes its temporaries). Main thread only; restores the handlers."""
    received: list[int] = []

    def handler(signum, frame):
        if not received:
            received.append(signum)
            raise Interrupted(signum)

    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr and exit status 2, without the usage block.

    Sub-parsers made by :meth:`add_subparsers` are of the same class (argparse's default ``parser_class``), so
    every ``reconet`` sub-command answers the same way. ``--help`` is unchanged. ``commands`` is the action that
    :meth:`add_subparsers` returned (``commands.choices``: the sub-command parsers by name), or None.
    """

    commands = None

    def add_subparsers(self, **kwargs):  # noqa: D102 - argparse's, remembered in ``commands``
        self.commands = super().add_subparsers(**kwargs)
        return self.commands

    def error(self, message: str):  # noqa: D102 - argparse's hook
        lines = str(message).strip().splitlines() or ["invalid arguments"]
        self.exit(USER_ERROR, f"{self.prog}: error: {lines[0]} (see {self.prog} --help)\n")

    def parse_args(self, args=None, namespace=None):
        """As argparse's, but an unknown option after a sub-command is reported by that sub-command's parser
        (``reconet stylize: error: unrecognized arguments: --bogus (see reconet stylize --help)``)."""
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            command = getattr(parsed, "command", None)
            owner = self.commands.choices.get(command, self) if self.commands is not None else self
            owner.error(f"unrecognized arguments: {' '.join(extra)}")
        return parsed


#: The sub-commands in the order ``reconet --help`` lists them.
COMMANDS = ("train", "stylize", "evaluate", "export")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``reconet`` parser with every sub-command, or with just ``only`` (one of :data:`COMMANDS`).

    :func:`main` builds just the command it runs: the command modules import what their commands need (torch for
    most), and ``reconet stylize --model`` must not pay for the others (:mod:`reconet_lib.stylize_command`).
    """
    wait_passively()  # the `reconet` entry point: before the commands' modules import torch (cpu_threads)
    parser = OneLineParser(
        prog="reconet",
        description="ReCoNet real-time coherent video style transfer: train, stylise, evaluate, export.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS if only is None else (only,):
        _add_command(sub, name)
    return parser


def _add_command(sub, name: str) -> None:
    """Import the module of command ``name`` and register its parser."""
    # Imported here on purpose: OpenMP reads its wait policy when torch is first imported, so after wait_passively;
    # and only the command that runs is imported (stylize --model imports no torch).
    if name == "train":
        from . import train  # after wait_passively; only when this command runs
        train.add_train_command(sub)
    elif name == "stylize":
        from . import stylize_command  # after wait_passively; only when this command runs
        stylize_command.add_stylize_command(sub)
    elif name == "evaluate":
        from . import evaluate  # after wait_passively; only when this command runs
        evaluate.add_evaluate_command(sub)
    elif name == "export":
        from . import export  # after wait_passively; only when this command runs
        export.add_export_command(sub)
    else:
        raise ValueError(f"no command {name!r}")


def _command_named(argv: list[str] | None) -> str | None:
    """The sub-command the command line names (its first word), or None (``--help``, a mistake: every command)."""
    argv = sys.argv[1:] if argv is None else argv
    return argv[0] if argv and argv[0] in COMMANDS else None


def main(argv: list[str] | None = None) -> int:
    """Run the command line; user errors print one line on stderr and return a non-zero exit status."""
    parser = build_parser(_command_named(argv))
    args = parser.parse_args(argv)  # usage errors: one line, SystemExit(2); --help: SystemExit(0)
    try:
        with stop_signals_interrupt():
            result = args.func(args)
    except TrainingInterrupted as exc:
        return _fail(args, str(exc), exc.exit_status)
    except ReconetError as exc:
        return _fail(args, first_line(exc, 2000), USER_ERROR)
    except OSError as exc:
        return _fail(args, describe_os_error(exc), USER_ERROR)
    except MemoryError:
        return _fail(args, "out of memory; try a smaller size or batch (--crop, --size, --batch-size)", USER_ERROR)
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        return _fail(args, f"interrupted by {signal.Signals(signum).name}; unfinished outputs were removed",
                     128 + signum, error=False)
    return int(result or 0)


def _fail(args: argparse.Namespace, message: str, status: int, *, error: bool = True) -> int:
    print(f"reconet {args.command}: error: {message}" if error else f"reconet {args.command}: {message}",
          file=sys.stderr)
    return status


def describe_os_error(exc: OSError) -> str:
    """One line for a file-system error: what failed, on which file, and what to do for the common cases."""
    hints = {
        errno.ENOSPC: "the disk is full; free some space or choose another output folder",
        errno.EROFS: "the file system is read-only; choose another output folder",
        errno.EACCES: "permission denied; choose a folder you can write to",
        errno.EDQUOT: "the disk quota is exhausted; free some space",
    }
    text = exc.strerror or first_line(exc)
    where = f" ({exc.filename})" if exc.filename else ""
    hint = hints.get(exc.errno)
    if not exc.strerror:  # a library message such as "checkpoint X does not exist; train one ..."
        return first_line(exc, 2000)
    return f"{text}{where}" + (f": {hint}" if hint else "")
