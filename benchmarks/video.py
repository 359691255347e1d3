"""Benchmark: how much of the network's speed survives video decoding and encoding?

Stylises a procedurally drawn clip (written to an H.264 MP4 first, so decoding is part of the run) with the
paper-sized ReCoNet and prints

* the network alone: frames/second of model calls on batches already on the device (no I/O at all);
* the network inside the pipeline: frames/second of the model calls during ``stylize_video``;
* end to end: frames/second of ``stylize_video`` from MP4 in to MP4 out, and its ratio to the network alone
  (the goal is >= 90 %: decoding and encoding hidden behind the network);
* peak resident memory (and peak GPU memory) of a fresh process stylising two clips of different lengths,
  to show that memory does not grow with the length of the video.

The network has **random weights**: this measures speed, not style (the arithmetic is the same).

    python benchmarks/video.py               # full: 640x360, 60 and 240 frames
    python benchmarks/video.py --quick       # small: 144x256, 12 and 48 frames
    python benchmarks/video.py --device cpu --preset tiny --size 640x360 --lengths 30 300
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from reconet_lib import precision as policy
from reconet_lib import codec, stylize, video
from reconet_lib.sizes import size_arg
from reconet_lib.stylize import StylizeNetwork


def draw_clip(frames: int, height: int, width: int, seed: int = 0):
    """Yield a moving test scene: drifting colour gradients and textured discs, ``(H, W, 3)`` uint8 frames."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    discs = [(rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.08, 0.2) * height,
              rng.uniform(-4, 4), rng.uniform(-3, 3), rng.uniform(0, 1, 3)) for _ in range(5)]
    for t in range(frames):
        image = np.stack([
            0.5 + 0.4 * np.sin(x / 40 + t / 9), 0.5 + 0.4 * np.sin(y / 30 - t / 13), 0.5 + 0.3 * np.cos((x + y) / 70),
        ], axis=-1)
        for cx, cy, r, vx, vy, colour in discs:
            px, py = (cx + vx * t) % width, (cy + vy * t) % height
            inside = (x - px) ** 2 + (y - py) ** 2 < r ** 2
            stripes = 0.75 + 0.25 * np.sin((x - px) / 3)
            image[inside] = colour * stripes[inside, None]
        yield (image.clip(0, 1) * 255).astype(np.uint8)


def build_model(preset: str, device: torch.device):
    from reconet_lib.network import ReCoNet

    torch.manual_seed(0)
    return ReCoNet.from_preset(preset).to(device).eval()


def network_alone_fps(model, device, height, width, batch_size, half, seconds=3.0) -> float:
    """Frames/second of model calls on batches already in memory, after a warm-up (stylize_video's network path)."""
    network = StylizeNetwork(model, device, half)
    x = torch.randint(0, 256, (batch_size, height, width, 3), dtype=torch.uint8)
    for _ in range(3):
        network(x)
    calls, inside, start = 0, 0.0, time.perf_counter()
    while time.perf_counter() - start < seconds or calls < 3:
        inside += network(x)[1]
        calls += 1
    return calls * batch_size / inside


def child(args) -> None:
    """Stylise one clip in this (fresh) process and print frames, rates and peak memory as JSON."""
    device = policy.parse_device(args.device)
    model = build_model(args.preset, device)
    half = False if args.no_half else None
    # A short warm-up outside the measurement (CUDA context, cuDNN algorithm choice).
    network_alone_fps(model, device, args.height, args.width, args.batch_size, half, seconds=0.5)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    report = stylize.stylize_video(model, args.clip, args.output, device=device, batch_size=args.batch_size,
                                 half=half, progress=False)
    print(json.dumps({
        "frames": report.frames,
        "model_fps": report.model_fps,
        "end_to_end_fps": report.end_to_end_fps,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: cuda if available)")
    parser.add_argument("--quick", action="store_true", help="small frames and short clips")
    parser.add_argument("--preset", default="paper", help="network preset (paper, demo, tiny)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--no-half", action="store_true", help="float32 instead of fp16/bf16 autocast")
    parser.add_argument("--size", type=size_arg, default=None, help="frame size WxH (default 640x360)")
    parser.add_argument("--lengths", type=int, nargs=2, default=None, metavar=("SHORT", "LONG"),
                        help="the two clip lengths in frames (default 60 240)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--clip", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--height", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--width", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    height, width = (144, 256) if args.quick else (360, 640)
    if isinstance(args.size, tuple):
        height, width = args.size
    elif args.size is not None:
        parser.error("--size needs WxH, e.g. 640x360")
    lengths = tuple(args.lengths) if args.lengths else ((12, 48) if args.quick else (60, 240))
    device = policy.parse_device(args.device)
    half = False if args.no_half else None
    precision = stylize.resolve_precision(device, half)
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, preset {args.preset!r} with RANDOM "
          f"weights (speed only), {height}x{width} frames, batch {args.batch_size}, "
          + (f"half precision {precision}" + (" via optimize_for_inference" if device.type == "cpu" else " autocast")
             if precision else "float32"))

    model = build_model(args.preset, device)
    alone = network_alone_fps(model, device, height, width, args.batch_size, half)
    print(f"network alone (batches already on the device, no I/O): {alone:8.1f} frames/s")
    del model

    with tempfile.TemporaryDirectory(prefix="reconet-bench-") as tmp:
        rows = []
        for frames in lengths:
            clip = codec.write_video(Path(tmp) / f"clip_{frames}.mp4", draw_clip(frames, height, width), fps=30)
            command = [sys.executable, __file__, "--child", "--device", str(device), "--preset", args.preset,
                       "--batch-size", str(args.batch_size), "--clip", str(clip), "--output",
                       str(Path(tmp) / f"out_{frames}.mp4"), "--height", str(height), "--width", str(width)]
            if args.no_half:
                command.append("--no-half")
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                sys.exit(f"benchmark child failed:\n{result.stderr}")
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))

    print(f"{'frames':>7} {'network in pipeline':>20} {'end to end':>11} {'e2e / alone':>12} "
          f"{'e2e / in-pipeline':>18} {'peak RSS':>9} {'peak GPU':>9}")
    for row in rows:
        gpu = f"{row['peak_gpu_mb']:7.0f}MB" if row["peak_gpu_mb"] is not None else f"{'-':>9}"
        print(f"{row['frames']:>7} {row['model_fps']:>14.1f} fr/s {row['end_to_end_fps']:>6.1f} fr/s "
              f"{row['end_to_end_fps'] / alone:>12.0%} {row['end_to_end_fps'] / row['model_fps']:>18.0%} "
              f"{row['peak_rss_mb']:>7.0f}MB {gpu}")
    growth = rows[1]["peak_rss_mb"] - rows[0]["peak_rss_mb"]
    print(f"peak RSS grows by {growth:+.0f} MB from {lengths[0]} to {lengths[1]} frames "
          f"(the clip itself is {lengths[1] * height * width * 3 / 2**20:.0f} MB of raw frames)")


if __name__ == "__main__":
    main()
