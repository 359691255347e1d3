"""Benchmark: ``reconet stylize`` against what a user would write instead, end to end, in one run.

Every contender turns the same 640x360 H.264 clip into a stylised H.264 file with the same randomly initialised
paper model (speed only: a trained model has the same arithmetic), each in a fresh process, timed from before the
model is loaded (or compiled) to the closed output file:

* **project (OpenVINO)**: ``reconet stylize CLIP --model model.onnx -o out.mp4``, the project's torch-free backend
  (:mod:`reconet_lib.openvino_backend`: one single-threaded stream per core, uint8 in the graph, bf16 only where
  the CPU has it natively and the AVX2-only settings are off); the child checks that torch was never imported;
* **project (PyTorch)**: ``reconet stylize CLIP --checkpoint CKPT -o out.mp4`` (the library's pipeline and precision
  policy in PyTorch);
* **openvino**: the simplest loop around OpenVINO: ``imageio`` decodes a frame, ``openvino.compile_model`` of the
  ONNX file written by ``reconet export`` (default settings) runs it, ``imageio`` encodes it with libx264;
* **onnxruntime**: the same loop with an ``onnxruntime.InferenceSession`` (default settings);
* **eager**: the same loop with the PyTorch model called as it is (float32, NCHW, ``torch.inference_mode``).

Each runs twice: **quiet**, and **busy**, with one competing process spinning on one of the cores (what a
second program, a browser tab or another notebook does to a laptop). Both CPU kinds: **native** (this CPU), and
**avx2**, the AVX2-only settings of :data:`reconet_lib.precision.AVX2_ONLY_ENV` in the contenders' processes.
OpenVINO and onnxruntime pick their kernels from ``cpuid`` themselves: these settings do not reach them (and
OpenVINO refuses to start under ``ONEDNN_MAX_CPU_ISA``), so in the avx2 rows they keep AVX-512 and are given what
their defaults choose on an AVX2 CPU, float32 (``INFERENCE_PRECISION_HINT=f32``): a comparison tilted in their
favour. The project's OpenVINO backend runs under all three settings (it lifts ``ONEDNN_MAX_CPU_ISA`` for
OpenVINO's first compile only) and its policy picks float32 from them, as the OpenVINO loop is told to. The two
OpenVINO contenders run back to back, so that they see the same load. Peak memory is the peak resident set size of
the contender's process (``VmHWM``), imports included (PyTorch alone takes about 0.5 GB; OpenVINO about 55 MB), and
beside it the peak above the process's size after its imports. **CPU s/frame** is the CPU time of the contender's
process and its ffmpeg children from model loading to the closed file, per frame: unlike frames/s it hardly depends
on what else the machine runs, so on a shared machine it is the figure to compare (a contender that needs 1.2x less
CPU per frame is 1.2x faster on an otherwise idle machine whose cores it keeps busy).

Prints one table per CPU kind, each figure beside the OpenVINO loop's and the eager loop's; targets (issue 19): the
project at least 1.2x the OpenVINO loop's frames/s and at most 1.5x its peak memory, and never slower than eager
(busy too).

    python benchmarks/compare_runtimes.py                     # 8 frames quiet, 4 busy; 10-20 minutes on 2 cores
    python benchmarks/compare_runtimes.py --frames 8 --kinds native --loads quiet
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONTENDERS = ("project-ov", "openvino", "project", "onnxruntime", "eager")
LABELS = {"project-ov": "project (OpenVINO)", "openvino": "OpenVINO loop", "project": "project (PyTorch)",
          "onnxruntime": "onnxruntime loop", "eager": "eager loop"}
HERE = Path(__file__).resolve()


# ------------------------------------------------------------------------------------------------ the children


def _memory() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the ffmpeg decoders and encoders), user + system."""
    import resource

    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def _simple_loop(clip: str, out: str, run) -> int:
    """imageio decode -> ``run`` (float32 NCHW [0, 1] -> same) -> imageio libx264 encode; returns frames."""
    import imageio.v2 as imageio
    import numpy as np

    reader = imageio.get_reader(clip)
    writer = imageio.get_writer(out, fps=reader.get_meta_data().get("fps", 25), codec="libx264", macro_block_size=1)
    frames = 0
    for frame in reader:
        x = np.ascontiguousarray(frame.transpose(2, 0, 1)[None], dtype=np.float32) / 255
        y = run(x)
        writer.append_data((np.clip(y[0].transpose(1, 2, 0), 0, 1) * 255).round().astype(np.uint8))
        frames += 1
    writer.close()
    reader.close()
    return frames


def _reconet_stylize(args, option: str, model: str) -> int:
    """``reconet stylize CLIP <option> MODEL -o OUT`` in this process (the project's contenders); frames written."""
    from reconet_lib import cli, video  # imported by the caller before the clock started: no cost here

    status = cli.main(["stylize", args.clip, option, model, "-o", args.out, "--quiet"])
    if status:
        raise SystemExit(status)
    return video.probe(args.out).frame_count


def child(args) -> None:
    """Run one contender in this process; print one JSON line."""
    extra = {}
    if args.child == "project-ov":
        # what `reconet stylize --model` imports (no torch), before the clock starts
        from reconet_lib import cli, cpu_features, openvino_backend, stylize_command, video  # noqa: F401
        after_imports, cpu_at_imports = _memory()[0], _cpu_seconds()
        start = time.perf_counter()
        frames = _reconet_stylize(args, "--model", args.onnx)
        extra = {"torch_imported": "torch" in sys.modules,
                 "precision": cpu_features.runtime_precision(lambda: False)[0]}
    elif args.child == "project":
        # what `reconet stylize` imports (torch included), before the clock starts, as for the other contenders
        from reconet_lib import cli, export, metrics, stylize, train, video  # noqa: F401
        after_imports, cpu_at_imports = _memory()[0], _cpu_seconds()
        start = time.perf_counter()
        frames = _reconet_stylize(args, "--checkpoint", args.checkpoint)
    elif args.child == "openvino":
        import openvino
        after_imports, cpu_at_imports = _memory()[0], _cpu_seconds()
        start = time.perf_counter()
        config = {"INFERENCE_PRECISION_HINT": "f32"} if args.kind == "avx2" else {}
        compiled = openvino.compile_model(args.onnx, "CPU", config)
        frames = _simple_loop(args.clip, args.out, lambda x: compiled(x)[0])
    elif args.child == "onnxruntime":
        import onnxruntime
        after_imports, cpu_at_imports = _memory()[0], _cpu_seconds()
        start = time.perf_counter()
        session = onnxruntime.InferenceSession(args.onnx, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        frames = _simple_loop(args.clip, args.out, lambda x: session.run(None, {name: x})[0])
    else:
        import torch
        from reconet_lib.checkpoint import load_model
        after_imports, cpu_at_imports = _memory()[0], _cpu_seconds()
        start = time.perf_counter()
        model = load_model(args.checkpoint)

        def run(x):
            with torch.inference_mode():
                return model(torch.from_numpy(x)).numpy()
        frames = _simple_loop(args.clip, args.out, run)
    seconds = time.perf_counter() - start
    peak = _memory()[1]
    cpu = _cpu_seconds() - cpu_at_imports
    print(json.dumps({"frames": frames, "seconds": seconds, "fps": frames / seconds, "peak_mb": peak,
                      "above_imports_mb": peak - after_imports, "cpu_s_per_frame": cpu / frames, **extra}))


# ------------------------------------------------------------------------------------------------ the parent


def _prepare(folder: Path, frames: int, width: int, height: int, preset: str) -> dict:
    """The clip (libx264), a checkpoint of a random model and its ONNX export, made once."""
    import imageio.v2 as imageio
    import torch

    sys.path.insert(0, str(HERE.parent))
    from video import draw_clip  # the benchmark folder's shared test scene

    from reconet_lib.checkpoint import model_checkpoint, save_checkpoint
    from reconet_lib.export import export_onnx
    from reconet_lib.network import ReCoNet

    clip = folder / "clip.mp4"
    with imageio.get_writer(clip, fps=25, codec="libx264", quality=8, macro_block_size=1) as writer:
        for frame in draw_clip(frames, height, width):
            writer.append_data(frame)
    torch.manual_seed(0)
    model = ReCoNet.from_preset(preset).eval()
    checkpoint = save_checkpoint(folder / "model.pt", model_checkpoint(model, "random", "0" * 64))
    onnx = folder / "model.onnx"
    diff = export_onnx(model, onnx)
    print(f"prepared {frames} frames {width}x{height}, {preset} model; ONNX export matches PyTorch within {diff:.1e}")
    return {"clip": clip, "checkpoint": checkpoint, "onnx": onnx}


def _run(contender: str, kind: str, files: dict, folder: Path, frames: int, busy: bool, timeout: float) -> dict:
    from reconet_lib.precision import AVX2_ONLY_ENV

    env = dict(os.environ)
    if kind == "avx2":
        env.update(AVX2_ONLY_ENV)
        if contender == "openvino":  # OpenVINO does not start under a oneDNN ISA cap (see the docstring)
            env.pop("ONEDNN_MAX_CPU_ISA")
    clip = files["clip"] if frames is None else files[f"clip{frames}"]
    command = [sys.executable, str(HERE), "--child", contender, "--kind", kind, "--clip", str(clip),
               "--checkpoint", str(files["checkpoint"]), "--onnx", str(files["onnx"]),
               "--out", str(folder / f"{contender}-{kind}-{int(busy)}.mp4")]
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout:.0f} s"}
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        return {"error": tail[0][:160]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _table(kind: str, results: dict, loads: list[str]) -> None:
    print(f"\n== {kind}: frames/s end to end (x OpenVINO loop, x eager loop), CPU time per frame (OpenVINO's / "
          f"this), peak RSS (x OpenVINO loop) ==")
    for load in loads:
        ov, eager = results[load].get("openvino", {}), results[load].get("eager", {})
        for name in CONTENDERS:
            r = results[load].get(name)
            if r is None:
                continue
            label = LABELS[name]
            if "error" in r:
                print(f"  {load:5} {label:18}  failed: {r['error']}")
                continue
            vs_ov = f"{r['fps'] / ov['fps']:5.2f}x OV" if "fps" in ov else "   - OV"
            vs_eager = f"{r['fps'] / eager['fps']:5.2f}x eager" if "fps" in eager else "   - eager"
            mem_ov = f"{r['peak_mb'] / ov['peak_mb']:4.2f}x OV" if "peak_mb" in ov else "  -"
            cpu_ov = f"{ov['cpu_s_per_frame'] / r['cpu_s_per_frame']:4.2f}x OV" if "cpu_s_per_frame" in ov else "-"
            note = (f"   [{r['precision']}, torch imported: {r['torch_imported']}]"
                    if "torch_imported" in r else "")
            print(f"  {load:5} {label:18} {r['fps']:6.2f} frames/s ({vs_ov}, {vs_eager})   CPU "
                  f"{r['cpu_s_per_frame']:5.2f} s/frame ({cpu_ov} less)   peak {r['peak_mb']:5.0f} MB ({mem_ov}; "
                  f"{r['above_imports_mb']:4.0f} MB above imports)   {r['frames']} frames in {r['seconds']:.1f} s"
                  f"{note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=8, help="frames per quiet run (default 8)")
    parser.add_argument("--busy-frames", type=int, default=4, help="frames per busy run (default 4)")
    parser.add_argument("--size", default="640x360", help="WxH (default 640x360)")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--kinds", default="native,avx2", help="comma-separated: native, avx2")
    parser.add_argument("--loads", default="quiet,busy", help="comma-separated: quiet, busy")
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--timeout", type=float, default=300, help="seconds per contender run")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of all contenders; each reports its fastest round (load only adds time) and "
                             "the highest peak memory of all rounds (default 1)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    for name in ("child", "kind", "clip", "checkpoint", "onnx", "out"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    width, height = (int(v) for v in args.size.lower().split("x"))
    kinds, loads = args.kinds.split(","), args.loads.split(",")
    contenders = args.contenders.split(",")
    print(f"CPU: {_cpu_name()}, {os.cpu_count()} logical CPUs; each contender in a fresh process, "
          f"{args.frames} frames quiet, {args.busy_frames} busy (one competing process spinning); "
          f"fastest of {args.repeat} round(s)")
    everything = {}
    with tempfile.TemporaryDirectory(prefix="reconet-runtimes-") as tmp:
        folder = Path(tmp)
        files = _prepare(folder, args.frames, width, height, args.preset)
        files[f"clip{args.busy_frames}"] = _cut(files["clip"], args.busy_frames, folder)
        for kind in kinds:
            results = {load: {} for load in loads}
            for load in loads:
                frames = None if load == "quiet" else args.busy_frames
                runs = {name: [] for name in contenders}
                for _ in range(args.repeat):  # rounds of every contender, so that each sees the same loads
                    for name in contenders:
                        runs[name].append(_run(name, kind, files, folder, frames, load == "busy", args.timeout))
                results[load] = {name: _best(found) for name, found in runs.items()}
            _table(kind, results, loads)
            everything[kind] = results
    if args.json:
        Path(args.json).write_text(json.dumps(everything, indent=1))


def _best(runs: list[dict]) -> dict:
    """The fastest of a contender's runs, with the highest peak memory of them all and every run's frames/s."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[0]
    best = max(ok, key=lambda r: r["fps"])
    return {**best, "peak_mb": max(r["peak_mb"] for r in ok), "all_fps": [round(r["fps"], 3) for r in ok]}


def _cut(clip: Path, frames: int, folder: Path) -> Path:
    """The first ``frames`` frames of ``clip`` as their own H.264 file."""
    import imageio.v2 as imageio

    out = folder / f"clip{frames}.mp4"
    with imageio.get_reader(clip) as reader, imageio.get_writer(out, fps=25, codec="libx264", quality=8,
                                                                macro_block_size=1) as writer:
        for index, frame in enumerate(reader):
            if index >= frames:
                break
            writer.append_data(frame)
    return out


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
