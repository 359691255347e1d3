"""What the quick tutorial models cost to train online, where they use the ImageNet VGG-16 (issue 20).

Online, quick mode trains the tutorial models with the ImageNet VGG-16 and the default `LossWeights` (style up to
`relu4_3`, absolute terms); offline, with the random stand-in and `LossWeights.offline()` (up to `relu3_3`). The
ImageNet file need not be on this machine to time the online recipe: its arithmetic is that of a VGG-16 of the
same architecture and depth, so the online configs are run with seeded random weights (`vgg_weights=None`) and
otherwise unchanged. Offline and online configs of both models (the baseline and ReCoNet) are trained side by
side, interleaved, for a few steps each, on the same data and style (`candy`: `--style-mirror DIR`), and the
median step time of each is printed with the online/offline ratio. Multiply the ratio by a measured offline run
(`docs/results.md`) for the online time; the download (about 553 MB, once) comes on top.

    python benchmarks/quick_online_cost.py --style-mirror ../shared/styles [--steps 25] [--repeats 2] [--avx2]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time

from reconet_lib.precision import AVX2_ONLY_ENV
from reconet_lib.train import train
from reconet_lib.train.tutorial import tutorial_config

WARM_UP_STEPS = 5  # not timed: the first steps build the data and warm the kernels up


def step_seconds(loss_network: str, temporal: bool, steps: int, output: str) -> tuple[float, float]:
    """(median, best) seconds per training step of a tutorial config; the online one with random VGG weights."""
    config = tutorial_config(True, "cpu", temporal=temporal, loss_network=loss_network, style="candy")
    if loss_network == "vgg16_imagenet":
        config = dataclasses.replace(config, vgg_weights=None)  # same VGG-16 architecture and depth, random weights
    config = dataclasses.replace(config, steps=steps, checkpoint_every=0, log_every=1, output=output)
    elapsed = [record["elapsed_s"] for record in train(config, progress=False, verbose=False).history]
    times = [b - a for a, b in zip(elapsed[WARM_UP_STEPS - 1:], elapsed[WARM_UP_STEPS:])]
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--style-mirror", help="folder holding candy.jpg (sets RECONET_MIRROR)")
    parser.add_argument("--steps", type=int, default=25, help="steps per run (the first 5 are not timed)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repetitions of the four runs")
    parser.add_argument("--avx2", action="store_true", help="run in a child process capped at AVX2")
    args = parser.parse_args()
    if args.steps <= WARM_UP_STEPS + 1:
        parser.error(f"--steps must be more than {WARM_UP_STEPS + 1}")
    if args.avx2:
        argv = [a for a in sys.argv[1:] if a != "--avx2"]
        sys.exit(subprocess.run([sys.executable, __file__, *argv], env={**os.environ, **AVX2_ONLY_ENV}).returncode)
    if args.style_mirror:
        os.environ["RECONET_MIRROR"] = args.style_mirror
    medians: dict[tuple[str, bool], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for temporal in (False, True):
                for network in ("vgg16_random", "vgg16_imagenet"):
                    start = time.perf_counter()
                    median, best = step_seconds(network, temporal, args.steps, f"{tmp}/{repeat}-{network}-{temporal}")
                    medians.setdefault((network, temporal), []).append(median)
                    print(f"repeat {repeat} {'reconet ' if temporal else 'baseline'} {network:15s}: median step "
                          f"{median:.3f} s, best {best:.3f} s ({args.steps} steps in {time.perf_counter() - start:.0f} s)",
                          flush=True)
    for temporal in (False, True):
        offline = statistics.median(medians["vgg16_random", temporal])
        online = statistics.median(medians["vgg16_imagenet", temporal])
        print(f"{'reconet' if temporal else 'baseline'}: online/offline step time {online / offline:.2f} "
              f"({online:.3f} s vs {offline:.3f} s)")


if __name__ == "__main__":
    main()
