"""The ``train`` command: its options are made from :class:`~.config.TrainConfig`'s fields (help, choices and
defaults come from the dataclass), and they override ``--config`` (or, when resuming, the run's config.json).

An option the user does not give is absent from the parsed arguments (``argparse.SUPPRESS``), so "not given"
and "given as none" differ: ``--grad-clip none`` clears a value set by ``--config``.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from pathlib import Path

from ..checkpoint import latest_checkpoint
from ..errors import UserInputError
from ..losses import LossWeights
from ..sizes import exact_size_arg
from .config import CONFIG_NAME, TrainConfig, parse_data_spec
from .loop import train

#: Words that mean "no value" for options whose field may be None.
NONE_WORDS = ("none", "off")
_LOSS_PREFIX = "loss."


def add_train_command(subparsers) -> argparse.ArgumentParser:
    """Register ``reconet train`` on the command line's sub-parsers."""
    parser = subparsers.add_parser(
        "train",
        help="train a ReCoNet on frame pairs (checkpoints, resume, several GPUs with torchrun)",
        description=(
            "Train a ReCoNet for one style on frame pairs with optical flow. Checkpoints (step_*.pt and last.pt) and "
            "log.jsonl go to --output; --resume continues an interrupted run exactly; Ctrl-C or SIGTERM saves the "
            "last completed step first. Options override --config; without --config, --resume reuses the run's "
            "stored config.json. Sizes are exact WxH (width x height). On several GPUs: "
            "torchrun --nproc_per_node N -m reconet_lib train ..."
        ),
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--config", metavar="FILE", help="start from this config (JSON or YAML); other options override it")
    defaults = TrainConfig()
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name == "loss":
            _add_loss_options(parser, defaults.loss)
        else:
            _add_field_option(parser, f, hints[f.name], getattr(defaults, f.name))
    parser.add_argument("--resume", action="store_true", default=False,
                        help="continue from the latest checkpoint in --output (an error if it holds none)")
    parser.add_argument("--resume-or-start", action="store_true", default=False,
                        help="continue from the latest checkpoint in --output, or start a new run there if it holds "
                             "none (for jobs that are restarted by a scheduler)")
    parser.add_argument("--save-config", metavar="FILE", help="write the resulting config to FILE (JSON/YAML) and exit")
    parser.add_argument("--no-progress", action="store_true", default=False, help="no progress bar")
    parser.set_defaults(func=run_train_command)
    return parser


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_field_option(parser: argparse.ArgumentParser, f: dataclasses.Field, hint, default) -> None:
    """One option for a TrainConfig field: its type, choices and help from the field, its default shown."""
    meta = f.metadata
    flags = [meta.get("flag", _flag(f.name))] + ([meta["short"]] if "short" in meta else [])
    shown = "; ".join(f"{s['kind']}{':' + s['path'] if s['path'] else ''}" for s in default) if f.name == "data" \
        else _format_default(default)
    options = dict(dest=f.name, help=f"{meta['help']} (default {shown})")
    if "metavar" in meta:
        options["metavar"] = meta["metavar"]
    if "choices" in meta:
        options["choices"] = meta["choices"]
    if f.name == "data":  # parsed in config_from_args, so that a bad spec is a one-line error
        options.update(action="append", type=str)
    else:
        options["type"] = _parser_for(hint, f.name)
    parser.add_argument(*flags, **options)


def _add_loss_options(parser: argparse.ArgumentParser, defaults: LossWeights) -> None:
    """``--alpha``, ``--beta``, ... one per number field of :class:`~reconet_lib.losses.LossWeights`."""
    hints = typing.get_type_hints(LossWeights)
    for f in dataclasses.fields(LossWeights):
        if hints[f.name] is not float:
            continue
        parser.add_argument(_flag(f.name), dest=_LOSS_PREFIX + f.name, type=_number("number", float), metavar="W",
                            help=f"loss weight {f.name} (default {getattr(defaults, f.name):g}); "
                                 "lambda-f 0 and lambda-o 0 give a per-frame baseline")


def _format_default(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[1]}x{value[0]}"
    if isinstance(value, tuple):
        return ",".join(f"{v:g}" for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _parser_for(hint, name: str):
    """The argparse ``type=`` for a field's annotation (``X | None`` also accepts ``none``)."""
    members = set(typing.get_args(hint)) if typing.get_origin(hint) in (typing.Union, types.UnionType) else {hint}
    optional = type(None) in members
    members.discard(type(None))
    core = members.pop() if len(members) == 1 else str
    if core == tuple[int, int]:
        parse = exact_size_arg
    elif core == tuple[float, float]:
        parse = _float_pair
    elif core is int:
        parse = _number("integer", int)
    elif core is float:
        parse = _number("number", float)
    else:
        parse = str
    if not optional:
        return parse

    def parse_optional(text: str):
        return None if text.strip().lower() in NONE_WORDS else parse(text)

    return parse_optional


def _number(what: str, kind):
    def parse(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{'n' if what[0] in 'aeiou' else ''} {what}") from None

    return parse


def _float_pair(text: str) -> tuple[float, float]:
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a pair LOW,HIGH of numbers (e.g. 0.8,1.2)") from None
    return low, high


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` that the parsed ``train`` options describe (given options override the base)."""
    given = vars(args)
    output = given.get("output") or TrainConfig().output
    stored = Path(output) / CONFIG_NAME
    if given.get("config"):
        values = TrainConfig.load(given["config"]).to_dict()
    elif (given.get("resume") or given.get("resume_or_start")) and stored.is_file():
        values = TrainConfig.load(stored).to_dict()
    else:
        values = TrainConfig().to_dict()
    for f in dataclasses.fields(TrainConfig):
        if f.name in given:
            values[f.name] = given[f.name]
    if "data" in given:
        values["data"] = [parse_data_spec(spec) for spec in given["data"]]
    for key, value in given.items():
        if key.startswith(_LOSS_PREFIX):
            values["loss"][key[len(_LOSS_PREFIX):]] = value
    return TrainConfig.from_dict(values)


def run_train_command(args: argparse.Namespace) -> int:
    """``reconet train``: build the config, then train (or only save the config with ``--save-config``)."""
    config = config_from_args(args)
    save_to = getattr(args, "save_config", None)
    if save_to:
        config.save(save_to)
        print(f"wrote {save_to}")
        return 0
    if args.resume and not args.resume_or_start:
        check_run_to_resume(config.output)
    result = train(config, resume=args.resume or args.resume_or_start, progress=not args.no_progress)
    return 0 if result.finished else 1


def check_run_to_resume(output: str | os.PathLike) -> None:
    """Refuse ``--resume`` on a folder that holds no run: a mistyped path must not silently start a new one.

    Raises:
        UserInputError: names the folder and the two fixes.
    """
    output = Path(output)
    if latest_checkpoint(output) is None:
        what = "does not exist" if not output.exists() else "holds no checkpoint (last.pt or step_*.pt)"
        raise UserInputError(f"--resume: {output} {what}, so there is no run to continue; check the --output path, "
                             "or pass --resume-or-start to start a new run there")
