"""The ``reconet stylize`` command: its options, and which backend runs it.

The backend follows the model file the user gives: ``--checkpoint model.pt`` runs in PyTorch
(:mod:`reconet_lib.stylize`, CPU or CUDA, the precision policy of :mod:`reconet_lib.precision`);
``--model model.onnx`` (or OpenVINO IR ``.xml``) runs in OpenVINO (:mod:`reconet_lib.openvino_backend`, CPU, the
same policy through :mod:`reconet_lib.cpu_features`) and never imports torch unless ``--size`` or
``--consistency`` asks for the library's torch code. This module imports no torch, so that ``reconet stylize
--model`` stays a small process (the command line builds only the parser of the command it runs).
"""
from __future__ import annotations

import argparse

from .errors import UserInputError
from .openvino_backend import stylize_video_openvino
from .sizes import size_arg


def add_stylize_command(subparsers) -> argparse.ArgumentParser:
    """Register ``reconet stylize INPUT (--checkpoint CKPT | --model MODEL) -o OUTPUT`` on the sub-parsers."""
    parser = subparsers.add_parser(
        "stylize",
        help="stylise a video (or a folder of frames) with a trained ReCoNet",
        description="Stylise every frame of a video with a trained ReCoNet (a checkpoint, run in PyTorch, or an "
        "exported model, run in OpenVINO without PyTorch) and write an H.264 MP4 (source frame rate and audio "
        "kept) or a folder of PNG frames.",
    )
    parser.add_argument("input", help="video file or folder of frames (png/jpg/jpeg/bmp)")
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", help="ReCoNet checkpoint (.pt) written by `reconet train` (runs in PyTorch)")
    model.add_argument("--model", help="exported model (.onnx from `reconet export`, or OpenVINO IR .xml): runs in "
                                       "OpenVINO without importing PyTorch (pip install \"reconet[openvino]\")")
    parser.add_argument("-o", "--output", required=True, help="output .mp4 file, or a folder for PNG frames")
    parser.add_argument("--side-by-side", action="store_true", help="write input | output next to each other")
    parser.add_argument("--size", type=size_arg, default=None,
                        help="resize the input first: longer side N (aspect kept), or WxH exactly (e.g. 640x360); "
                             "MP4 output needs an even width and height (H.264 4:2:0, yuv420p), so an odd size is "
                             "padded by one pixel (the last column/row repeated, right/bottom, never resized) in "
                             "video output, while PNG folder output keeps the exact size")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="frames per network call (default: 1 on a CPU, 4 on a GPU; --checkpoint only)")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:1 ... (default: cuda if available; "
                                                         "--model runs on the CPU)")
    parser.add_argument("--no-half", action="store_true", help="run in float32 instead of fp16/bf16")
    parser.add_argument("--fps", type=float, default=None, help="output frame rate (default: the source's)")
    parser.add_argument("--allow-short", action="store_true",
                        help="accept a damaged video that yields fewer frames than its container announces")
    parser.add_argument("--consistency", type=float, default=0.0, metavar="ALPHA",
                        help="blend each stylised frame with the previous output warped into it by optical flow "
                             "(OpenCV DIS on the input frames): 0 = off (default), 0.5 = half, 1 = freeze; less "
                             "flicker for a little blur (reconet_lib.blend)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_stylize_command)
    return parser


def run_stylize_command(args: argparse.Namespace) -> int:
    """Carry out ``reconet stylize`` with the backend the model file calls for; prints one summary line."""
    if args.model is None:
        # here, not at the top: a checkpoint runs in PyTorch, which the --model path must not import
        from . import stylize

        return stylize.run_stylize_command(args)
    if args.batch_size is not None:
        raise UserInputError("--batch-size applies to --checkpoint; with --model every core runs one frame at a time")
    if (args.device or "auto").strip().lower() not in ("auto", "cpu"):
        raise UserInputError(f"--device {args.device}: an exported model (--model) runs on the CPU in OpenVINO; "
                             "use --checkpoint for a GPU")
    report = stylize_video_openvino(
        args.model, args.input, args.output, half=False if args.no_half else None, side_by_side=args.side_by_side,
        size=args.size, fps=args.fps, progress=not args.quiet, allow_short=args.allow_short,
        consistency=args.consistency)
    print(report.summary)
    return 0
