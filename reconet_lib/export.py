"""ONNX export of a trained ReCoNet, checked in onnxruntime against PyTorch before the file appears.

:func:`export_onnx` writes the eval-mode network (input and output ``(B, 3, H, W)`` float32 in [0, 1], output
clamped) with the batch size, height and width left dynamic, so one file stylises frames of any size at least
:data:`MIN_SIDE` pixels (smaller images reach the network's replicate-padding branch, which the graph does not
hold). The file is written atomically (:func:`reconet_lib.files.atomic_output`): before the rename, onnxruntime
runs the finished file on inputs of other, odd sizes and batch 2, and its output must agree with PyTorch's
within ``atol``; otherwise nothing is written. ``reconet export CKPT -o model.onnx`` is the command.

Needs the ``export`` extra (``pip install "reconet[export]"``: onnx, onnxscript, onnxruntime).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_model
from .errors import UserInputError
from .files import atomic_output
from .network import ReCoNet

#: Smallest height and width the exported graph accepts (padded to 8, every reflection pad fits).
MIN_SIDE = 5
#: Default agreement required between onnxruntime and PyTorch (absolute, on [0, 1] outputs).
DEFAULT_ATOL = 1e-4
#: ``(B, H, W)`` of the check inputs: none is the traced size; odd sizes, multiples of 4, batches of 1 and 3.
CHECK_SHAPES = ((1, 37, 53), (3, 40, 72), (1, 29, 70))
#: ``(B, H, W)`` of the example input the graph is traced with (then made dynamic; sizes 0, 1 and multiples of 4
#: would be specialised by the tracer).
EXAMPLE_SHAPE = (2, 67, 97)
INPUT_NAME, OUTPUT_NAME = "frames", "stylized"
_INSTALL_HINT = 'install the export extra: pip install "reconet[export]" (onnx, onnxscript, onnxruntime)'


def _check_path(path: str | os.PathLike) -> Path:
    """Refuse, in one line, an output path that cannot become a new ONNX file."""
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise UserInputError(f"export path {path} must end in .onnx")
    if path.is_dir():
        raise UserInputError(f"export path {path} is a folder; give a file name such as {path / 'model.onnx'}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserInputError(f"export path {path}: {parent} is a file, not a folder; choose another path")
            if not os.access(parent, os.W_OK):
                raise UserInputError(f"export path {path}: the folder {parent} is not writable; choose another path")
            break
    return path


def _exporter_modules():
    try:
        import onnxruntime  # in function: an optional extra (pip install reconet_lib[export]), needed only to export
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
    except ImportError:
        raise UserInputError(f"ONNX export needs onnxruntime and onnxscript; {_INSTALL_HINT}") from None
    return onnxruntime


def _to_onnx_bytes(model: ReCoNet, opset: int) -> bytes:
    """Trace ``model`` with dynamic batch, height and width; the serialised ONNX model."""
    b, h, w = EXAMPLE_SHAPE
    example = torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(0))
    # AUTO, not named dimensions with ranges: the padding to a multiple of 4 and the crop back add guards such as
    # "W is not a multiple of 4" that named dimensions reject; the ONNX ops (Pad, Slice) hold for every size, which
    # the check in onnxruntime then confirms at other sizes
    dims = {0: torch.export.Dim.AUTO, 2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO}
    quiet = io.StringIO()
    # the exporter reports its progress on stdout and through warnings/logging: a notebook cell stays clean
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            program = torch.onnx.export(model, (example,), dynamo=True, opset_version=opset, verbose=False,
                                        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                        dynamic_shapes=({k: v for k, v in dims.items()},), optimize=True)
        finally:
            logging.disable(logging.NOTSET)
    return program.model_proto.SerializeToString()


def max_difference(model: ReCoNet, onnx_path: str | os.PathLike,
                   shapes: tuple[tuple[int, int, int], ...] = CHECK_SHAPES) -> float:
    """Largest absolute difference between onnxruntime running ``onnx_path`` and ``model`` (eval mode) in PyTorch.

    Args:
        model: the float32 :class:`ReCoNet` the file was exported from.
        onnx_path: the ONNX file.
        shapes: ``(B, H, W)`` of the random [0, 1] inputs compared.
    Returns:
        the maximum over all inputs and pixels of ``|onnx - torch|`` (outputs in [0, 1]).
    """
    onnxruntime = _exporter_modules()
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only
    session = onnxruntime.InferenceSession(os.fspath(onnx_path), options, providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(1)
    worst = 0.0
    for b, h, w in shapes:
        x = torch.rand(b, 3, h, w, generator=generator)
        with torch.inference_mode():
            expected = model(x).numpy()
        try:
            got = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
        except Exception:  # noqa: BLE001 - onnxruntime's own errors (e.g. a size the graph fixed): no match
            return float("inf")
        if got.shape != expected.shape:
            return float("inf")
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def export_onnx(model: ReCoNet, path: str | os.PathLike, *, atol: float = DEFAULT_ATOL, opset: int = 18) -> float:
    """Write ``model`` as an ONNX file with dynamic batch, height and width, verified before it appears.

    The exported graph is the eval-mode network in float32: input ``frames`` ``(B, 3, H, W)`` in [0, 1] with
    ``H, W >= MIN_SIDE``, output ``stylized`` of the same shape, clamped to [0, 1]. Before the file is renamed into
    place, onnxruntime runs it on inputs of :data:`CHECK_SHAPES` (odd sizes, batch 2, none of them the traced
    size) and must match PyTorch within ``atol``.

    Args:
        model: a :class:`ReCoNet` (left untouched: a float32 CPU copy in eval mode is exported).
        path: the ``.onnx`` file to write (its folder is created if missing).
        atol: largest allowed absolute difference to PyTorch.
        opset: ONNX opset version.
    Returns:
        the measured largest difference to PyTorch.
    Raises:
        UserInputError: not a ReCoNet, a path that cannot be written (one line), the extra not installed, or a
            file that does not match PyTorch within ``atol`` (then no file is written).
    """
    if not isinstance(model, ReCoNet):
        raise UserInputError(f"export_onnx expects a ReCoNet; got {type(model).__name__}")
    path = _check_path(path)
    _exporter_modules()
    net = copy.deepcopy(model).float().cpu().eval().requires_grad_(False)
    data = _to_onnx_bytes(net, opset)
    measured = {}

    def verify(tmp: Path) -> None:
        measured["diff"] = max_difference(net, tmp)
        if not measured["diff"] <= atol:
            raise UserInputError(f"export to {path} refused: onnxruntime differs from PyTorch by "
                                 f"{measured['diff']:.2e} (> {atol:.0e}); nothing was written")

    with atomic_output(path, "wb", verify=verify) as handle:
        handle.write(data)
    return measured["diff"]


# --------------------------------------------------------------------------------------------------------------
# The ``reconet export`` command
# --------------------------------------------------------------------------------------------------------------


def add_export_command(subparsers) -> argparse.ArgumentParser:
    """Register ``reconet export CHECKPOINT -o model.onnx``."""
    parser = subparsers.add_parser(
        "export", help="write a trained model as ONNX (dynamic size), checked in onnxruntime",
        description="Export a checkpoint's network as an ONNX file with dynamic batch, height and width; the file "
                    "is written only after onnxruntime reproduces PyTorch's output within --atol.")
    parser.add_argument("checkpoint", help="a checkpoint written by reconet train (.pt)")
    parser.add_argument("-o", "--output", required=True, help="the ONNX file to write (.onnx)")
    parser.add_argument("--atol", type=float, default=DEFAULT_ATOL,
                        help=f"largest allowed difference to PyTorch (default {DEFAULT_ATOL:g})")
    parser.set_defaults(func=run_export_command)
    return parser


def run_export_command(args: argparse.Namespace) -> int:
    """``reconet export``: load the checkpoint, export, print one line with the measured difference."""


    output = _check_path(args.output)
    model = load_model(args.checkpoint)
    diff = export_onnx(model, output, atol=args.atol)
    print(f"wrote {output} (dynamic batch, height and width >= {MIN_SIDE}; onnxruntime matches PyTorch "
          f"within {diff:.1e})")
    return 0
