"""Exception types shared across the library."""


class ReconetError(Exception):
    """Base class for errors the library raises about user input (files, options, checkpoints)."""


class UserInputError(ReconetError, ValueError):
    """Bad input given by the user: the message says what is wrong and how to fix it.

    The command line prints such errors on one line, without a traceback.
    """


class TrainingInterrupted(ReconetError):
    """A run was stopped by a signal (SIGTERM) after saving a checkpoint; ``exit_status`` is the
    conventional shell status (128 + the signal number, 143 for SIGTERM). Ctrl-C raises ``KeyboardInterrupt``."""

    def __init__(self, message: str, exit_status: int) -> None:
        super().__init__(message)
        self.exit_status = int(exit_status)


def first_line(exc: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message (its type name when the message is empty), cut to ``limit``."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text[:limit]
