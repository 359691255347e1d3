"""The OpenVINO backend: ``reconet stylize --model model.onnx`` matches PyTorch, keeps the pipeline's semantics,
never imports torch, and refuses every bad model file or option in one line."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from reconet_lib import cli, codec, export, images, openvino_backend, stylize, video
from reconet_lib.checkpoint import model_checkpoint, save_checkpoint

from video_clips import leftovers, smooth_clip

if os.environ.get("CI") and importlib.util.find_spec("openvino") is None:  # CI installs the extra (run.sh)
    pytest.fail("CI did not install the openvino extra: its backend would go untested", pytrace=False)
pytest.importorskip("openvino")
pytest.importorskip("onnxruntime")  # the export extra writes the ONNX file the backend runs
pytest.importorskip("onnxscript")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def files(tiny, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ov")
    onnx_path = folder / "tiny.onnx"
    export.export_onnx(tiny, onnx_path)
    checkpoint = save_checkpoint(folder / "tiny.pt", model_checkpoint(tiny, "random", "0" * 64))
    clip = codec.write_video(folder / "in.mp4", smooth_clip(frames=6), fps=10)
    return {"onnx": onnx_path, "checkpoint": checkpoint, "clip": clip, "folder": folder}


def _torch_uint8(model, frames: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return images.to_uint8(model(images.to_float(frames)))


def _frames(height=37, width=53, count=3, seed=0) -> np.ndarray:
    return (np.random.default_rng(seed).random((count, height, width, 3)) * 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------------
# Agreement with PyTorch
# ----------------------------------------------------------------------------------------------------------


def test_float32_output_matches_pytorch_to_one_rounding_level_on_few_pixels(tiny, files):
    """In float32 the two runtimes differ by ~1e-6 (the export check: <= 1e-4, measured ~2e-6). After rounding
    to uint8 such a difference can only flip a value that sits at a rounding boundary, by one level, and only on
    a fraction of about 2 * 255 * difference of the values: at most one level, on at most 0.1 % of them (a
    difference of 1e-4 would already flip ~5 %)."""
    frames = _frames()
    network = openvino_backend.OpenVinoNetwork(files["onnx"], frames.shape[1:3], half=False)
    assert network.plan.precision == "f32"
    # every instance normalisation was rewritten as one 4-D operation (and the output still agrees, below)
    assert network.norms_rewritten == sum(isinstance(m, torch.nn.InstanceNorm2d) for m in tiny.modules()) > 0
    got = np.stack([out for _, out in network.stylize(iter(frames))]).astype(int)
    expected = _torch_uint8(tiny, frames).astype(int)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1
    assert np.mean(got != expected) <= 1e-3


def test_bfloat16_output_stays_within_a_few_levels_of_pytorch_float32(tiny, files):
    """bfloat16 keeps 8 significant bits (relative rounding 2^-9 per operation) through ~20 layers: measured
    at most 5 levels of 255 and 0.6-0.8 on average (tiny and paper models). Bounds: 8 and 1.5 levels; a wrong
    layout, scale or channel order would be off by tens of levels."""
    frames = _frames(seed=1)
    network = openvino_backend.OpenVinoNetwork(files["onnx"], frames.shape[1:3], half=True)
    assert network.plan.precision == "bf16"
    got = np.stack([out for _, out in network.stylize(iter(frames))]).astype(int)
    diff = np.abs(got - _torch_uint8(tiny, frames).astype(int))
    assert diff.max() <= 8 and diff.mean() <= 1.5


def test_frames_come_back_in_order_with_several_streams(tiny, files):
    frames = _frames(height=20, width=24, count=9, seed=2)
    network = openvino_backend.OpenVinoNetwork(files["onnx"], frames.shape[1:3], half=False, streams=3)
    pairs = list(network.stylize(iter(frames)))
    assert [p[0] is f or np.array_equal(p[0], f) for p, f in zip(pairs, frames)] == [True] * 9
    expected = _torch_uint8(tiny, frames).astype(int)
    assert np.abs(np.stack([p[1] for p in pairs]).astype(int) - expected).max() <= 1


class _StalledFirstRequest:
    """Stands in for ``AsyncInferQueue``: frame 0's request finishes only after ``delay`` seconds (a stream on a
    core another program holds), every other frame at once; the output is the input as floats (``(1, H, W, 3)``)."""

    def __init__(self, delay: float):
        self.delay, self.timers, self.callback = delay, [], None

    def set_callback(self, callback):
        self.callback = callback

    def start_async(self, inputs, index):
        request = SimpleNamespace(latency=1.0, get_output_tensor=lambda _, x=inputs[0]: SimpleNamespace(
            data=x.astype(np.float32)))
        if index == 0:
            self.timers.append(threading.Timer(self.delay, self.callback, (request, index)))
            self.timers[-1].start()
        else:
            self.callback(request, index)

    def wait_all(self):
        for timer in self.timers:
            timer.join()


def test_frames_come_back_in_order_when_one_stream_stalls_past_the_look_ahead():
    """A late frame 0 lets the others run ahead by the look-ahead only; then the runner waits for frame 0 (an
    earlier version waited for a frame to be handed back instead, which only it could do: a deadlock)."""
    frames = [np.full((2, 3, 3), k, np.uint8) for k in range(12)]
    runner = openvino_backend._InOrder(_StalledFirstRequest(delay=0.3), ahead=4)
    result: list = []
    worker = threading.Thread(target=lambda: result.extend(runner.run(iter(frames))), daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "the runner hung"
    assert [int(out[0, 0, 0]) for _, out in result] == list(range(12))
    assert all(inp is frame for (inp, _), frame in zip(result, frames))


def test_whole_video_matches_the_pytorch_pipeline_frame_for_frame(tiny, files, tmp_path):
    """Same frames, names and size as ``stylize_video`` (PNG output: exact pixels, no codec in between)."""
    ov = openvino_backend.stylize_video_openvino(files["onnx"], files["clip"], tmp_path / "ov", half=False,
                                                 progress=False)
    pt = stylize.stylize_video(tiny, files["clip"], tmp_path / "pt", half=False, progress=False)
    assert ov.frames == pt.frames == 6
    names = sorted(p.name for p in (tmp_path / "ov").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "pt").iterdir())
    a, b = (np.stack(list(video.read_frames(tmp_path / name))).astype(int) for name in ("ov", "pt"))
    assert a.shape == b.shape and np.abs(a - b).max() <= 1


def test_mp4_output_keeps_frame_count_size_and_rate_and_side_by_side_doubles_the_width(files, tmp_path):
    report = openvino_backend.stylize_video_openvino(files["onnx"], files["clip"], tmp_path / "out.mp4",
                                                     side_by_side=True, progress=False)
    source, out = video.probe(files["clip"]), video.probe(tmp_path / "out.mp4")
    assert report.frames == out.frame_count == source.frame_count == 6
    assert out.size == (source.size[0], 2 * source.size[1]) and out.fps == pytest.approx(source.fps)
    assert leftovers(tmp_path) == []


# ----------------------------------------------------------------------------------------------------------
# The command line, without torch
# ----------------------------------------------------------------------------------------------------------


def test_cli_stylize_with_a_model_never_imports_torch(files, tmp_path):
    out = tmp_path / "out.mp4"
    script = ("import sys\nfrom reconet_lib.cli import main\n"
              f"status = main(['stylize', {str(files['clip'])!r}, '--model', {str(files['onnx'])!r}, "
              f"'-o', {str(out)!r}, '--quiet'])\n"
              "print('status', status, 'torch imported', 'torch' in sys.modules)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "status 0 torch imported False" in done.stdout
    assert "stylised 6 frames" in done.stdout
    assert video.probe(out).frame_count == 6


def test_the_torch_free_modules_import_no_torch():
    script = ("import sys\nimport reconet_lib.openvino_backend, reconet_lib.stylize_command, reconet_lib.pipeline\n"
              "import reconet_lib.cpu_features, reconet_lib.cli\nprint('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr


def _cli_error(capsys, argv) -> str:
    status = cli.main(argv)
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and err.startswith("reconet stylize: error: "), err
    return err


@pytest.mark.parametrize("name, content, fragment", [
    ("missing.onnx", None, "does not exist; write one with: reconet export"),
    ("model.pt", b"x", "a PyTorch checkpoint goes with --checkpoint"),
    ("model.xml", b"<net/>", "no weights file"),
    ("broken.onnx", b"this is not a protobuf", "not a readable ONNX or OpenVINO IR file"),
])
def test_a_bad_model_file_is_one_line_and_writes_nothing(files, tmp_path, capsys, name, content, fragment):
    model = tmp_path / name
    if content is not None:
        model.write_bytes(content)
    out = tmp_path / "sub" / "out.mp4"
    err = _cli_error(capsys, ["stylize", str(files["clip"]), "--model", str(model), "-o", str(out), "--quiet"])
    assert fragment in err and str(model) in err
    assert not out.exists() and not out.parent.exists()


def test_a_model_with_non_finite_weights_is_refused(files, tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(files["onnx"]))
    weight = next(t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT and np.prod(t.dims) > 8)
    values = onnx.numpy_helper.to_array(weight).copy()
    values.flat[0] = np.nan
    weight.CopyFrom(onnx.numpy_helper.from_array(values, weight.name))
    bad = tmp_path / "nan.onnx"
    onnx.save(proto, str(bad))
    err = _cli_error(capsys, ["stylize", str(files["clip"]), "--model", str(bad), "-o", str(tmp_path / "o.mp4")])
    assert "non-finite weights" in err and not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize("extra, fragment", [
    (["--device", "cuda"], "runs on the CPU in OpenVINO"),
    (["--batch-size", "2"], "--batch-size applies to --checkpoint"),
])
def test_options_of_the_pytorch_backend_are_refused_with_a_model(files, tmp_path, capsys, extra, fragment):
    err = _cli_error(capsys, ["stylize", str(files["clip"]), "--model", str(files["onnx"]),
                              "-o", str(tmp_path / "o.mp4"), *extra])
    assert fragment in err


def test_checkpoint_and_model_together_are_a_usage_error(files, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["stylize", str(files["clip"]), "--model", str(files["onnx"]), "--checkpoint",
                  str(files["checkpoint"]), "-o", str(tmp_path / "o.mp4")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "not allowed with argument" in err


def test_missing_openvino_is_one_line_naming_the_extra(files, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # what `import openvino` sees when it is not installed
    err = _cli_error(capsys, ["stylize", str(files["clip"]), "--model", str(files["onnx"]),
                              "-o", str(tmp_path / "o.mp4")])
    assert 'pip install "reconet[openvino]"' in err


def test_under_all_avx2_only_settings_it_runs_in_float32_and_leaves_the_environment_as_it_was(files):
    """OpenVINO's CPU plugin fails under ONEDNN_MAX_CPU_ISA (meant for torch's oneDNN); the backend lifts it for its
    first compile only, in a fresh process as the notebooks run (the plugin reads the cap once per process)."""
    script = ("import os, sys\nfrom reconet_lib.openvino_backend import OpenVinoNetwork\n"
              f"net = OpenVinoNetwork({str(files['onnx'])!r}, (16, 16))\n"
              "import numpy as np\nframe = net(np.zeros((16, 16, 3), np.uint8))\n"
              "print(net.plan.precision, frame.shape, os.environ['ONEDNN_MAX_CPU_ISA'])\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
           "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
    env.pop("RECONET_CPU_BF16", None)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "f32 (16, 16, 3) AVX2"


def test_the_precision_follows_the_policy(files, monkeypatch):
    for name in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "RECONET_CPU_BF16"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")  # an AVX2-only setting OpenVINO can run under
    assert openvino_backend.OpenVinoNetwork(files["onnx"], (16, 16)).plan.precision == "f32"
    monkeypatch.setenv("RECONET_CPU_BF16", "1")
    assert openvino_backend.OpenVinoNetwork(files["onnx"], (16, 16)).plan.precision == "bf16"
    assert openvino_backend.OpenVinoNetwork(files["onnx"], (16, 16), half=False).plan.precision == "f32"
