"""ONNX export: dynamic batch/height/width, checked against PyTorch in onnxruntime, atomic, one-line errors."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from reconet_lib import cli, export
from reconet_lib.checkpoint import model_checkpoint, save_checkpoint
from reconet_lib.errors import UserInputError
from reconet_lib.files import temporaries

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def exported(tiny, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    diff = export.export_onnx(tiny, path)
    return path, diff


def _run(path, x: torch.Tensor) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([export.OUTPUT_NAME], {export.INPUT_NAME: x.numpy()})[0]


def test_export_reports_the_measured_agreement_with_pytorch(exported):
    path, diff = exported
    assert path.is_file() and 0 <= diff <= export.DEFAULT_ATOL
    assert temporaries(path.parent) == []


@pytest.mark.parametrize("shape", [(1, 5, 5), (1, 7, 13), (2, 31, 17), (3, 64, 48), (1, 101, 66)])
def test_exported_graph_matches_pytorch_at_odd_and_even_sizes_and_batches(tiny, exported, shape):
    b, h, w = shape
    x = torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(h * w))
    with torch.inference_mode():
        expected = tiny(x).numpy()
    got = _run(exported[0], x)
    assert got.shape == (b, 3, h, w)
    assert np.abs(got - expected).max() <= 1e-4
    assert got.min() >= 0 and got.max() <= 1  # eval-mode output: clamped


def test_exported_graph_has_symbolic_batch_height_and_width(exported):
    graph = onnx.load(str(exported[0])).graph
    (inp,), (out,) = graph.input, graph.output
    assert (inp.name, out.name) == (export.INPUT_NAME, export.OUTPUT_NAME)
    dims = inp.type.tensor_type.shape.dim
    assert dims[1].dim_value == 3
    assert all(d.dim_param and not d.dim_value for d in (dims[0], dims[2], dims[3]))


def test_export_leaves_the_model_untouched(tiny, exported):
    assert not tiny.training and all(p.dtype == torch.float32 for p in tiny.parameters())
    assert all(p.requires_grad for p in tiny.parameters())


@pytest.mark.parametrize("name, fragment", [
    ("model.txt", "must end in .onnx"),
    ("folder.onnx", "is a folder"),
    ("afile/model.onnx", "is a file, not a folder"),
])
def test_bad_export_paths_are_one_line_errors_before_any_work(tiny, tmp_path, name, fragment):
    (tmp_path / "folder.onnx").mkdir()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UserInputError, match=fragment) as info:
        export.export_onnx(tiny, tmp_path / name)
    assert "\n" not in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only folders")
def test_export_into_a_read_only_folder_is_a_one_line_error(tiny, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(UserInputError, match="not writable"):
            export.export_onnx(tiny, folder / "m.onnx")
    finally:
        folder.chmod(0o700)


def test_an_export_that_does_not_match_pytorch_writes_nothing_and_keeps_the_old_file(tiny, tmp_path):
    target = tmp_path / "m.onnx"
    target.write_bytes(b"previous")
    with pytest.raises(UserInputError, match="differs from PyTorch.*nothing was written"):
        export.export_onnx(tiny, target, atol=0.0)  # float rounding alone exceeds 0
    assert target.read_bytes() == b"previous"
    assert temporaries(tmp_path) == []


def test_export_refuses_what_is_not_a_reconet(tmp_path):
    with pytest.raises(UserInputError, match="expects a ReCoNet"):
        export.export_onnx(torch.nn.Conv2d(3, 3, 1), tmp_path / "m.onnx")


def test_reconet_export_command_writes_a_checked_file_and_says_so(tiny, tmp_path, capsys):
    checkpoint = save_checkpoint(tmp_path / "model.pt", model_checkpoint(tiny, "mosaic", "0" * 64))
    output = tmp_path / "out" / "model.onnx"
    assert cli.main(["export", str(checkpoint), "-o", str(output)]) == 0
    printed = capsys.readouterr()
    assert printed.out.startswith(f"wrote {output}") and "onnxruntime matches PyTorch" in printed.out
    x = torch.rand(1, 3, 23, 41)
    with torch.inference_mode():
        assert np.abs(_run(output, x) - tiny(x).numpy()).max() <= 1e-4


@pytest.mark.parametrize("args, fragment", [
    (["missing.pt", "-o", "m.onnx"], "missing.pt"),
    (["{ckpt}", "-o", "m.txt"], "must end in .onnx"),
])
def test_reconet_export_command_errors_are_one_line_on_stderr(tiny, tmp_path, capsys, monkeypatch, args, fragment):
    monkeypatch.chdir(tmp_path)
    checkpoint = save_checkpoint(tmp_path / "model.pt", model_checkpoint(tiny, "mosaic", "0" * 64))
    argv = ["export"] + [a.format(ckpt=checkpoint) for a in args]
    assert cli.main(argv) == cli.USER_ERROR
    err = capsys.readouterr().err.strip()
    assert err.startswith("reconet export: error:") and fragment in err and "\n" not in err
