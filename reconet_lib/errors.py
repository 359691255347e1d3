"""Exception types shared across the library."""


class ReconetError(Exception):
    """Base class for errors the library raises about user input (files, options, checkpoints)."""


class UserInputError(ReconetError, ValueError):
    """Bad input given by the user: the message says what is wrong and how to fix it.

    The command line prints such errors on one line, without a traceback.
    """
