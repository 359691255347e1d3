"""Benchmark: stylize_video against a naive per-frame loop on the CPU, and against the CPU's float32 roofline.

Measured side by side in one run, on the same randomly initialised network (speed only: the arithmetic is the
same as for a trained model) and the same clip:

* **naive loop**, the way a first script (and the seed repository) does it: decode a frame, resize it, run the
  network in float32 eager mode at batch 1 (default NCHW layout), convert to uint8, encode; all in one thread of
  control, one frame after the other;
* **stylize_video** with the library's defaults: the precision policy's dtype (float32 on a CPU without native
  bfloat16), ``optimize_for_inference`` (channels-last, rewritten layers, Winograd convolutions in float32 below
  AVX-512, freed memory reused instead of page-faulted in afresh), decoding and encoding in their own threads;
* the **naive loop again**, after ``stylize_video`` has made its process-wide allocator setting
  (``memory.retain_freed_memory``): how much of the gain that setting alone gives (a first script does not have
  it, so the ratio is taken against the first naive run);
* the **float32 roofline**: this CPU's measured float32 matrix-multiply rate divided by the network's FLOPs per
  frame (135 GFLOP for the paper model at 640x360): the frame rate a perfect float32 implementation of direct
  convolution could reach. Winograd convolutions do fewer multiplications, so a share above 100 % is possible.

Prints the CPU's capability string and the precision decision, both frame rates, their ratio and the share of the
roofline. Run it as an AVX2-only CPU would with::

    env ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 python benchmarks/cpu_video.py

    python benchmarks/cpu_video.py                   # paper model, 640x360, 16 frames per method (~1 min on 2 cores)
    python benchmarks/cpu_video.py --frames 6 --preset demo
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from video import draw_clip  # noqa: E402  (the benchmark folder's shared test scene)

from reconet_lib import memory  # noqa: E402
from reconet_lib import precision  # noqa: E402
from reconet_lib import codec, stylize  # noqa: E402
from reconet_lib.cost import count_flops  # noqa: E402
from reconet_lib.network import ReCoNet  # noqa: E402


def matmul_rate(dtype: torch.dtype = torch.float32, n: int = 2048, seconds: float = 3.0) -> float:
    """Best measured rate of an ``n x n`` matrix multiply in ``dtype`` on the CPU, FLOP/s (wall clock)."""
    a, b = torch.rand(n, n, dtype=dtype), torch.rand(n, n, dtype=dtype)
    a @ b
    best, start = 0.0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t0))
    return best


def naive_loop(model: torch.nn.Module, clip: Path, output: Path, size: tuple[int, int], frames: int) -> float:
    """Frames/s of the seed-style loop: decode, resize, fp32 eager forward at batch 1, convert, encode, in turn."""
    height, width = size
    reader = imageio.get_reader(str(clip))
    writer = imageio.get_writer(str(output), fps=30, codec="libx264", macro_block_size=1)
    start, done = time.perf_counter(), 0
    with torch.no_grad():
        for frame in reader:
            image = np.array(Image.fromarray(frame).resize((width, height), Image.BILINEAR))
            x = torch.from_numpy(image).permute(2, 0, 1).float().div(255).unsqueeze(0)
            y = model(x).clamp(0, 1)
            writer.append_data((y[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
            done += 1
            if done == frames:
                break
    writer.close()
    reader.close()
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="paper", help="network preset (paper, demo, tiny)")
    parser.add_argument("--frames", type=int, default=16, help="frames stylised by each method (default 16)")
    parser.add_argument("--size", default="640x360", help="stylised frame size WxH (default 640x360)")
    parser.add_argument("--batch-size", type=int, default=1, help="stylize_video's batch (default 1, as the naive loop)")
    args = parser.parse_args()
    from reconet_lib.sizes import parse_size

    size = parse_size(args.size)
    if not isinstance(size, tuple):
        parser.error("--size needs WxH, e.g. 640x360")
    height, width = size
    device = torch.device("cpu")
    report = precision.cpu_precision_report()
    torch.manual_seed(0)
    model = ReCoNet.from_preset(args.preset).eval()
    flops = count_flops(model, height, width)
    print(f"CPU capability {report.capability}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"precision policy: {report.reason}; measured now: a bf16 convolution takes "
          f"{precision.probe_bf16_ratio():.2f}x the time of fp32")
    rate = matmul_rate()
    roofline = rate / flops
    print(f"float32 matmul {rate / 1e9:.0f} GFLOP/s; {args.preset} model {flops / 1e9:.1f} GFLOP per {width}x{height} "
          f"frame -> float32 roofline {roofline:.2f} frames/s")

    with tempfile.TemporaryDirectory(prefix="reconet-cpu-video-") as tmp:
        clip = codec.write_video(Path(tmp) / "clip.mp4", draw_clip(args.frames, 2 * height, 2 * width), fps=30)
        naive = naive_loop(model, clip, Path(tmp) / "naive.mp4", (height, width), args.frames)
        result = stylize.stylize_video(model, clip, Path(tmp) / "library.mp4", device=device, size=(height, width),
                                     batch_size=args.batch_size, progress=False)
        naive_reused = naive_loop(model, clip, Path(tmp) / "naive2.mp4", (height, width), args.frames)
    library = result.end_to_end_fps
    dtype = precision.inference_dtype(device)
    winograd = precision.inference_winograd(device, dtype)
    print(f"optimize_for_inference: {precision.precision_name(dtype)}, Winograd {'on' if winograd else 'off'}, "
          f"freed memory reused: {memory.retain_freed_memory()}")
    print("(roofline: direct convolution at the matmul rate; Winograd does fewer multiplications and can exceed it)")
    print(f"{'method':<52}{'frames/s':>10}{'vs naive':>10}{'of fp32 roofline':>18}")
    rows = [("naive loop (fp32 eager, batch 1, one thread)", naive),
            (f"stylize_video ({precision.precision_name(dtype)}, pipelined)", library),
            ("naive loop again, with the freed-memory setting", naive_reused)]
    for name, fps in rows:
        print(f"{name:<52}{fps:>10.2f}{fps / naive:>9.2f}x{fps / roofline:>17.0%}")


if __name__ == "__main__":
    main()
