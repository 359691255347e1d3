"""Benchmark: how fast does ReCoNet train, and is the data loader keeping up?

For each training size (256x256 and 360x640, HxW) and each precision (float32 and mixed: bf16 on Ampere or newer,
fp16 with a gradient scaler on older GPUs, bf16 autocast on CPUs with native bfloat16, skipped on other CPUs:
``reconet_lib.precision`` decides) this runs ``reconet_lib.train.train`` twice in a
fresh process each time:

* **loader excluded**: every step gets the same pair, already decoded and augmented in memory (no worker
  processes), so the number is the speed of the training step alone (network, VGG-16 loss network, backward, Adam);
* **loader included**: the real data pipeline (synthetic pairs read from PNG/.flo files, resized, cropped and
  flipped by ``PairAugment``, with the default number of loader workers).

If "included" is clearly slower than "excluded" the run is data-bound: add loader workers, or store the data at
training size. Target (reported, not asserted): included within 5 % of excluded. Peak memory is
``torch.cuda.max_memory_allocated`` on CUDA and the peak resident set size of the process on the CPU; the
target is that 360x640 with batch 2 in mixed precision fits in 15 GB (a Colab T4 has 15 GB).

The loss network has RANDOM weights (speed does not depend on them), the style is the procedural ``mosaic``.

    python benchmarks/training.py                    # paper model, 256x256 and 360x640, batch 2
    python benchmarks/training.py --quick            # CPU-sized: 128x128 and 180x320, a few steps
    python benchmarks/training.py --device cpu --preset demo --steps 5
    python benchmarks/training.py --warp             # only: warp (grid_sample) vs its gather derivation, side by side
    python benchmarks/training.py --quick --precisions fp32 --warp-forms grid_sample,gather   # whole runs, before/after

``--warp`` times the backward warp both temporal losses call every step, forward and backward, on the output
``(2, 3, H, W)`` and on paper-model features ``(2, 192, H/4, W/4)``: ``reconet_lib.warp.warp`` (``F.grid_sample``)
against ``warp_by_gather`` (the hand-written four-tap gather it replaced), alternating calls in one process.
``--warp-forms grid_sample,gather`` runs the whole benchmark (real ``train()``, both loaders) once with each form of
the warp the temporal losses call (``gather``: ``losses.warp`` set to the gather form in the child process, the
training before the change), each size and precision's runs back to back.
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

import torch

from reconet_lib import precision as policy
from reconet_lib import train as train_mod


class _SamePair(torch.utils.data.Dataset):
    """A dataset whose every item is one pair held in memory (the "loader excluded" case)."""

    def __init__(self, sample: dict, length: int = 1000) -> None:
        self.sample, self.length = sample, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        return self.sample


def _gather_warp(image, flow, *, mode="bilinear", return_valid=False):
    """The warp before ``F.grid_sample``: the same answer by the hand-written gather (``warp_by_gather``)."""
    from reconet_lib.warp import inside_mask, warp_by_gather

    out = warp_by_gather(image, flow, mode=mode)
    return (out, inside_mask(flow).expand(out.shape[0], -1, -1, -1)) if return_valid else out


def child(args) -> None:
    """Train for ``warmup + steps`` steps in this process; print steps/second after the warm-up and peak memory."""
    if args.warp_form == "gather":  # the training before the grid_sample warp
        from reconet_lib import losses

        losses.warp = _gather_warp
    device = policy.parse_device(args.device)
    height, width = args.height, args.width
    config = train_mod.TrainConfig(
        data=[{"kind": "synthetic", "options": {"quick": args.quick}}], model=args.preset, crop=(height, width),
        batch_size=args.batch_size, steps=args.warmup + args.steps, vgg_weights=None, style="mosaic",
        style_size=256, precision=args.precision, output=args.output, checkpoint_every=0, log_every=args.warmup,
        num_workers=0 if args.loader == "memory" else None, device=str(device),
    )
    dataset = _SamePair(train_mod.build_dataset(config)[0]) if args.loader == "memory" else None
    result = train_mod.train(config, progress=False, verbose=False, dataset=dataset)
    records = train_mod.read_log(args.output)
    warm = next(r for r in records if r["step"] == args.warmup)
    last = records[-1]
    steps_per_s = (last["step"] - warm["step"]) / (last["elapsed_s"] - warm["elapsed_s"])
    print(json.dumps({
        "steps_per_s": steps_per_s,
        "pairs_per_s": steps_per_s * args.batch_size,
        "skipped": sum(r["skipped"] for r in records),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "finished": result.finished,
    }))


def warp_speed(device: torch.device, height: int, width: int, rounds: int = 5) -> None:
    """Print forward+backward milliseconds of ``warp`` and ``warp_by_gather``, measured alternately (best of rounds)."""
    from reconet_lib.warp import warp, warp_by_gather

    generator = torch.Generator().manual_seed(0)
    for channels, scale in ((3, 1), (192, 4)):
        h, w = height // scale, width // scale
        image = torch.rand(2, channels, h, w, generator=generator).to(device).requires_grad_(True)
        flow = (torch.randn(2, 2, h, w, generator=generator) * 3).to(device)
        best = {}
        for _ in range(rounds):
            for name, fn in (("grid_sample", warp), ("gather", warp_by_gather)):
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                t0 = time.perf_counter()
                fn(image, flow).square().mean().backward()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
        print(f"warp fwd+bwd (2, {channels:3}, {h}, {w}): grid_sample {best['grid_sample'] * 1e3:7.1f} ms, "
              f"gather {best['gather'] * 1e3:7.1f} ms ({best['gather'] / best['grid_sample']:.1f}x)")


def loss_step_speed(device: torch.device, height: int, width: int, preset: str, rounds: int = 3) -> None:
    """Print seconds per loss + backward + Adam step with each warp (alternating, fastest of ``rounds``).

    The step of :func:`reconet_lib.losses.pair_losses` (network on both frames, VGG-16 with random weights, all five
    loss terms) with ``losses.warp`` set to ``warp`` or to ``warp_by_gather``; the data is one random pair.
    """
    from reconet_lib import losses
    from reconet_lib.network import ReCoNet, ReCoNetConfig
    from reconet_lib.warp import warp

    generator = torch.Generator().manual_seed(0)
    model = ReCoNet(ReCoNetConfig.preset(preset)).to(device).train()
    vgg = losses.VGGFeatures(weights=None, device=device)
    weights = losses.LossWeights()
    grams = losses.style_grams(vgg, torch.rand(1, 3, 256, 256, generator=generator).to(device),
                               weights.style_layer_weights)
    batch = {"current": torch.rand(2, 3, height, width, generator=generator),
             "previous": torch.rand(2, 3, height, width, generator=generator),
             "flow": torch.randn(2, 2, height, width, generator=generator) * 3,
             "valid": (torch.rand(2, 1, height, width, generator=generator) > 0.1).float()}
    batch = {k: v.to(device) for k, v in batch.items()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    best = {}
    try:
        for _ in range(rounds):
            for name, fn in (("grid_sample", warp), ("gather", _gather_warp)):
                losses.warp = fn
                t0 = time.perf_counter()
                optimizer.zero_grad(set_to_none=True)
                losses.pair_losses(model, vgg, batch, grams, weights)["total"].backward()
                optimizer.step()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
    finally:
        losses.warp = warp
    print(f"loss step ({preset}, batch 2, {height}x{width}): with grid_sample {1 / best['grid_sample']:.3f} steps/s, "
          f"with gather {1 / best['gather']:.3f} steps/s ({best['gather'] / best['grid_sample']:.2f}x)")


def run_child(args, height: int, width: int, precision: str, loader: str, folder: Path,
              warp_form: str = "grid_sample") -> dict:
    output = folder / f"{height}x{width}-{precision}-{loader}-{warp_form}"
    command = [
        sys.executable, __file__, "--child", "--device", args.device, "--preset", args.preset,
        "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--warmup", str(args.warmup),
        "--height", str(height), "--width", str(width), "--precision", precision, "--loader", loader,
        "--output", str(output), "--warp-form", warp_form,
    ] + (["--quick"] if args.quick else [])
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        return {"error": tail[0][:200]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: cuda if available)")
    parser.add_argument("--quick", action="store_true", help="CPU-sized run: half the sizes, few steps, quick data")
    parser.add_argument("--preset", default="paper", help="network preset (paper, demo, tiny)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 30, quick 2)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed first steps (default 10, quick 1)")
    parser.add_argument("--precisions", default="fp32,mixed", help="comma-separated: fp32, mixed, bf16, fp16")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--warp", action="store_true", help="only time warp against its gather form")
    parser.add_argument("--warp-forms", default="grid_sample",
                        help="comma-separated: grid_sample (now), gather (before): whole runs with each")
    parser.add_argument("--warp-form", default="grid_sample", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--height", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--width", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--precision", help=argparse.SUPPRESS)
    parser.add_argument("--loader", choices=("memory", "real"), help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps is None:
        args.steps = 2 if args.quick else 30
    if args.warmup is None:
        args.warmup = 1 if args.quick else 10
    if args.child:
        return child(args)

    device = policy.parse_device(args.device)
    if args.warp:
        warp_speed(device, 360, 640)
        return loss_step_speed(device, *((128, 128) if args.quick else (256, 256)), args.preset)
    sizes = [(128, 128), (180, 320)] if args.quick else [(256, 256), (360, 640)]
    # "mixed" is the policy's reduced precision: bf16 or fp16 + scaler on CUDA by compute capability; on the CPU
    # bf16 only where it is native (on other CPUs it is emulated and many times slower, so it is skipped)
    if device.type == "cuda":
        mixed = "fp16" if policy.training_precision(device, "auto")[1] else "bf16"
    else:
        mixed = "bf16" if policy.cpu_bf16_native() else None
        if mixed is None and "mixed" in args.precisions.split(","):
            print(f"mixed precision skipped: {policy.describe(device)}")
    precisions = [mixed if p == "mixed" else p for p in args.precisions.split(",")]
    precisions = [p for p in precisions if p is not None]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"preset {args.preset!r}, batch {args.batch_size}, {args.warmup} warm-up + {args.steps} timed steps, "
          f"loss network with RANDOM weights (speed only)")
    print(f"{'size HxW':>9} {'precision':>9} {'warp':>11} {'excluded':>13} {'included':>13} {'incl/excl':>9} "
          f"{'peak memory (excl / incl)':>27}")
    rows = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="reconet-train-bench-") as tmp:
        for height, width in sizes:
            for precision in precisions:
                for form in args.warp_forms.split(","):
                    excluded = run_child(args, height, width, precision, "memory", Path(tmp), form)
                    included = run_child(args, height, width, precision, "real", Path(tmp), form)
                    row = {"height": height, "width": width, "precision": precision, "batch_size": args.batch_size,
                           "warp": form, "loader_excluded": excluded, "loader_included": included}
                    rows.append(row)
                    print(_format(row, device), flush=True)
    print(f"({time.perf_counter() - started:.0f} s in all; steps/s of the whole training step incl. the VGG-16 loss "
          f"network; 'peak memory' is {'max_memory_allocated' if device.type == 'cuda' else 'peak RSS'})")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": name, "preset": args.preset, "rows": rows}, indent=1))


def _format(row: dict, device: torch.device) -> str:
    ex, inc = row["loader_excluded"], row["loader_included"]
    size = f"{row['height']}x{row['width']}"
    if "error" in ex or "error" in inc:
        return f"{size:>9} {row['precision']:>9} {row['warp']:>11}  failed: {ex.get('error') or inc.get('error')}"
    key = "peak_gpu_mb" if device.type == "cuda" else "peak_rss_mb"
    memory = f"{ex[key] / 1024:.2f} / {inc[key] / 1024:.2f} GB"
    return (f"{size:>9} {row['precision']:>9} {row['warp']:>11} {ex['steps_per_s']:>7.3f} step/s "
            f"{inc['steps_per_s']:>7.3f} step/s "
            f"{inc['steps_per_s'] / ex['steps_per_s']:>9.0%} {memory:>27}")


if __name__ == "__main__":
    main()
