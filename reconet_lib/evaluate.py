"""Comparing stylised versions of a clip with the input, and the ``evaluate`` command.

A temporal error alone says little (a model that blurs everything looks stable), so :func:`evaluate_versions`
measures the input clip's own ``e_stab`` and ``E_warp`` (:mod:`reconet_lib.metrics`) beside each stylised
version's, on the same flows, and reports their ratio (:class:`EvaluationTable`). ``reconet evaluate`` is its
command line.
"""
from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import UserInputError
from .memory import require
from .metrics import TemporalError, TemporalFlows, load_frames, temporal_errors
from .sizes import format_size, resolve_size, size_arg
from .video import probe


# ------------------------------------------------------------------------------- comparing versions

#: The table's note when ``E_warp`` follows Lai et al.'s released rule.
LAI_NOTE = ("E_warp by Lai et al.'s released rule: mask from the forward-backward check without a frame test, "
            "pixels whose flow leaves the frame compared with the nearest border pixel (they raise it on a moving "
            "camera; against exact occlusion masks, the check's motion-boundary band lowers it)")


@dataclass
class EvaluationTable:
    """``e_stab`` and ``E_warp`` of an input clip and of stylised versions of it, on the same flows.

    Attributes:
        names: column names, ``"input"`` first, then the versions in the order given.
        errors: ``errors[name][metric]`` -> :class:`TemporalError` (metrics ``"e_stab"``, ``"E_warp"``).
        flow_source: where the flows came from.
    """

    names: list[str]
    errors: dict[str, dict[str, TemporalError]]
    flow_source: str
    metrics: tuple[str, ...] = field(default=("e_stab", "E_warp"))
    notes: list[str] = field(default_factory=list)

    def value(self, metric: str, name: str) -> float:
        """The mean of ``metric`` for column ``name``."""
        return self.errors[name][metric].mean

    def ratio(self, metric: str, name: str) -> float:
        """``metric`` of ``name`` divided by the input's own: how much flicker the stylisation adds.

        NaN where it is undefined: the input's own error is 0 (a still or all-black clip) or a value is NaN.
        """
        base = self.value(metric, "input")
        value = self.value(metric, name)
        if math.isnan(base) or math.isnan(value) or base <= 0:
            return math.nan
        return value / base

    def rows(self) -> list[dict]:
        """One dict per (metric, column): ``metric``, ``version``, ``value``, ``ratio_to_input``."""
        return [
            {"metric": m, "version": n, "value": self.value(m, n), "ratio_to_input": self.ratio(m, n)}
            for m in self.metrics
            for n in self.names
        ]

    def to_text(self, digits: int = 6) -> str:
        """A plain-text table: one row per metric with its value per column, then its ratio to the input."""
        width = max(12, digits + 6, *(len(n) + 2 for n in self.names))
        lines = [f"{'metric':<20}" + "".join(f"{n:>{width}}" for n in self.names)]
        for m in self.metrics:
            reversed_ = any(self.errors[n][m].time_reversed for n in self.names)
            label = m + (" (reversed)" if reversed_ else "")
            lines.append(f"{label:<20}" + "".join(f"{self.value(m, n):>{width}.{digits}f}" for n in self.names))
            lines.append(f"{'  ratio to input':<20}" + "".join(f"{_ratio_text(self.ratio(m, n)):>{width}}"
                                                               for n in self.names))
        if any(math.isnan(self.ratio(m, n)) for m in self.metrics for n in self.names):
            lines.append("n/a: ratio undefined (the input's own error is 0, e.g. a still or all-black clip, or no "
                         "valid pixel)")
        lines.append(f"flows: {self.flow_source}; images in [0, 1], mean squared error per valid pixel and channel, no square root")
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


def _ratio_text(ratio: float) -> str:
    """A ratio with two decimals, or ``n/a`` where it is undefined (NaN)."""
    return "n/a" if math.isnan(ratio) else f"{ratio:.2f}"


def evaluate_versions(
    inputs,
    versions: Mapping[str, object],
    *,
    flows: TemporalFlows | None = None,
    method: str = "dis",
    size: int | tuple[int, int] | None = None,
    resize: bool = False,
    lai: bool = False,
) -> EvaluationTable:
    """``e_stab`` and ``E_warp`` of the input clip and of each stylised version, on the same flows.

    Args:
        inputs: the input clip (anything :func:`load_frames` takes).
        versions: ``{name: clip}``, e.g. ``{"baseline": out1, "reconet": out2}``; each clip has the
            input's number of frames. A version of another size but the same aspect ratio is resized to the
            input's size (with a note in the table); one of another aspect ratio is refused unless ``resize``.
        flows: ground-truth or precomputed :class:`TemporalFlows`; ``None`` estimates them with
            ``method`` on the **input** frames.
        method: flow estimator when ``flows`` is None (``"dis"`` or a RAFT variant).
        size: resize every clip (and the flows) first: the longer side or ``(H, W)`` (see
            :mod:`reconet_lib.sizes`); default: the input's size.
        resize: stretch versions whose aspect ratio differs from the input's to the input's size.
        lai: ``E_warp`` by Lai et al.'s released rule (see :func:`reconet_lib.metrics.temporal_errors`):
            their forward-backward mask without a frame test, pixels whose flow leaves the frame kept. Needs
            flows in both directions (estimated ones have both; real Sintel ground truth has one).
    Returns:
        :class:`EvaluationTable`.
    Raises:
        UserInputError: no versions, a version of another length or (without ``resize``) aspect ratio, or flows
            that leave no valid pixel in any frame pair (all unknown, NaN or occluded).
    """
    if not versions:
        raise UserInputError("give at least one stylised version to compare with the input")
    if "input" in versions:
        raise UserInputError("'input' names the input clip's column; name the versions differently")
    count, input_size = _clip_shape(inputs)
    _check_memory(count, resolve_size(size, input_size), clips=1 + len(versions))
    frames = load_frames(inputs, size)
    size = tuple(frames.shape[-2:])
    if flows is None:
        flows = TemporalFlows.estimate(frames, method=method)
    elif flows.size != size:
        flows = flows.resized(size)
    _check_some_valid(flows)
    clips, notes = {"input": frames}, []
    for name, clip in versions.items():
        note = _version_size_note(name, _clip_shape(clip)[1], input_size, size, resize)
        if note:
            notes.append(note)
        clips[name] = load_frames(clip, size)
        if clips[name].shape[0] != frames.shape[0]:
            raise UserInputError(
                f"version {name!r} has {clips[name].shape[0]} frames but the input has {frames.shape[0]}; "
                "compare clips made from the same frames"
            )
    errors = {name: temporal_errors(clip, flows, lai=lai) for name, clip in clips.items()}
    if lai:
        notes.append(LAI_NOTE)
    return EvaluationTable(list(clips), errors, flows.source, notes=notes)


def _clip_shape(clip) -> tuple[int | None, tuple[int, int]]:
    """``(T, (H, W))`` of a clip, read without decoding its frames (T is None when the container does not say)."""
    if isinstance(clip, torch.Tensor):
        return clip.shape[0], tuple(clip.shape[-2:]) if clip.is_floating_point() else tuple(clip.shape[1:3])
    info = probe(clip)
    return info.frame_count, tuple(info.size)


def _check_memory(frame_count: int | None, size: tuple[int, int], clips: int) -> None:
    """Refuse an evaluation whose float frames and flows would not fit in memory (before decoding them)."""
    if not frame_count:
        return
    pixels = frame_count * size[0] * size[1]
    need = pixels * 4 * (3 * clips + 2 * 3 + 3)  # float32 clips, two flow directions with masks, warped chunk
    require(need, f"{clips} clips of {frame_count} frames of {format_size(size)}",
            "use --size to evaluate at a smaller size (e.g. --size 640), or shorter clips")


def _version_size_note(name: str, version: tuple[int, int], original: tuple[int, int], target: tuple[int, int],
                       resize: bool) -> str | None:
    """Refuse a version of another aspect ratio (unless ``resize``); describe a resize that will happen."""
    if version == target:
        return None
    same_aspect = abs(version[1] * original[0] - original[1] * version[0]) <= max(original[0], version[0])
    if not same_aspect and not resize:
        raise UserInputError(
            f"version {name!r} is {format_size(version)} but the input is {format_size(original)}, another aspect "
            "ratio; stylise the same frames at the same size, or stretch it on purpose (--resize / resize=True)"
        )
    how = "stretched" if not same_aspect else "resized"
    return f"version {name!r} ({format_size(version)}) was {how} to {format_size(target)} to match the input"


def _check_some_valid(flows: TemporalFlows) -> None:
    """Refuse flows without a single valid pixel: every metric would be NaN."""
    for flow, valid in ((flows.backward, flows.valid_backward), (flows.forward, flows.valid_forward)):
        if flow is not None and bool(((valid > 0) & torch.isfinite(flow).all(dim=1, keepdim=True)).any()):
            return
    raise UserInputError(
        f"the flows ({flows.source}) leave no valid pixel in any frame pair (every flow value unknown, NaN, "
        "occluded or leaving the frame); check the flow files, or estimate flows on the input (--flow dis)"
    )


# ----------------------------------------------------------------------------------------- command


def add_evaluate_command(subparsers) -> argparse.ArgumentParser:
    """Register ``evaluate INPUT_CLIP VERSION... [--names ...] [--flow ...] [--size N|WxH] [--lai]``."""
    parser = subparsers.add_parser(
        "evaluate",
        help="temporal errors (e_stab, E_warp) of stylised clips beside the input's own",
        description=(
            "Compare the temporal stability of stylised versions of a clip. Flows come from ground truth "
            "(gt:<sintel_root>/<scene>) or are estimated on the INPUT clip (dis, raft). Errors are mean "
            "squared differences per valid pixel and channel of images in [0, 1], without square root."
        ),
    )
    parser.add_argument("input", metavar="INPUT_CLIP", help="the input clip: a video file or a folder of frames")
    parser.add_argument("versions", metavar="VERSION", nargs="+", help="stylised clips of the same frames")
    parser.add_argument("--names", nargs="+", help="column names for the versions (default: their file names)")
    parser.add_argument(
        "--flow", default="dis",
        help="gt:<sintel_root>/<scene> (ground truth in the Sintel layout), dis (OpenCV, default) or raft",
    )
    parser.add_argument(
        "--size", type=size_arg, default=None,
        help="resize every clip first: longer side N (aspect kept), or WxH exactly (e.g. 640x360)",
    )
    parser.add_argument(
        "--lai", action="store_true",
        help="E_warp by Lai et al.'s released rule (their evaluate_WarpError.py): mask from the forward-backward "
             "check alone, pixels whose flow leaves the frame kept (compared with the nearest border pixel; they "
             "raise it on a moving camera; against exact occlusion masks the check's motion-boundary band lowers "
             "it). Needs flows in both directions (dis, raft). e_stab is unchanged",
    )
    parser.add_argument(
        "--resize", action="store_true",
        help="stretch versions whose aspect ratio differs from the input's to its size (refused otherwise)",
    )
    parser.set_defaults(func=run_evaluate)
    return parser


def run_evaluate(args) -> int:
    """Body of the ``evaluate`` command: print the table, return 0."""
    for path in [args.input, *args.versions]:
        if not Path(path).exists():
            raise UserInputError(f"{path} does not exist; give video files or folders of frames")
    names = args.names or [Path(v).stem or str(v) for v in args.versions]
    if len(names) != len(args.versions):
        raise UserInputError(f"--names gave {len(names)} names for {len(args.versions)} versions")
    if len(set(names)) != len(names):
        raise UserInputError(f"version names must differ; got {names} (use --names)")
    flows, method = None, args.flow
    if args.flow.startswith("gt:"):
        scene_path = Path(args.flow[3:])
        if not scene_path.name:
            raise UserInputError("--flow gt: needs <sintel_root>/<scene>, e.g. gt:data/sintel/training/alley_1")
        flows = TemporalFlows.from_sintel(scene_path.parent, scene_path.name)
    elif args.flow not in ("dis", "raft", "raft_small", "raft_large"):
        raise UserInputError(f"--flow must be gt:<sintel_root>/<scene>, dis or raft; got {args.flow!r}")
    table = evaluate_versions(
        args.input, dict(zip(names, args.versions)), flows=flows, method=method, size=args.size, resize=args.resize,
        lai=args.lai,
    )
    print(table.to_text())
    return 0
