"""The ``reconet`` command line (also ``python -m reconet_lib``).

Each sub-command lives in the module it belongs to and registers itself through an
``add_<name>_command(subparsers)`` function that sets ``func`` on its parser.
"""
from __future__ import annotations

import argparse
import sys

from .errors import ReconetError


def build_parser() -> argparse.ArgumentParser:
    from . import metrics, train, video

    parser = argparse.ArgumentParser(
        prog="reconet",
        description="ReCoNet real-time coherent video style transfer: train, stylise, evaluate.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    train.add_train_command(sub)
    video.add_stylize_command(sub)
    metrics.add_evaluate_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; user errors print one line on stderr and return exit status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except (ReconetError, FileNotFoundError, NotADirectoryError, PermissionError, IsADirectoryError) as exc:
        print(f"reconet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"reconet {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)
