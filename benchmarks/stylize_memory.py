"""Benchmark: peak resident memory of `reconet stylize` processes, alone and 8 at once, and where it goes.

Part 1 runs ``reconet stylize`` on a small generated clip (20 frames, 64x48, the tiny preset) ``--processes`` times
at once and reports every process's exit status and peak resident memory (``ru_maxrss`` from ``os.wait4``), once
with the library's defaults and once with ``RECONET_RETAIN_FREED_MEMORY=0``.

Part 2 runs one process that reports its resident memory after each stage: the interpreter, ``import torch``, the
command line's modules, the checkpoint loaded, the network prepared for the CPU (oneDNN), and the clip stylised.

    python benchmarks/stylize_memory.py                 # 8 processes
    python benchmarks/stylize_memory.py --processes 4
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

REPO = Path(__file__).resolve().parents[1]

_STAGES = r"""
import os, sys, resource, json
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) // 1024 for l in f if l.startswith("VmRSS:"))
stages = [("python", rss())]
import torch
stages.append(("import torch", rss()))
from reconet_lib import cli, checkpoint, stylize
stages.append(("import reconet_lib (cli, stylize, train, metrics)", rss()))
model = checkpoint.load_model(sys.argv[1])
stages.append(("checkpoint loaded", rss()))
net = stylize.StylizeNetwork(model, "cpu")
stages.append(("network prepared for the CPU", rss()))
stylize.stylize_video(model, sys.argv[2], sys.argv[3], device="cpu", progress=False)
stages.append(("clip stylised", rss()))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
import psutil
full = psutil.Process().memory_full_info()  # uss: pages only this process holds; shared library pages excluded
print(json.dumps({"stages": stages, "peak_mb": peak, "uss_mb": full.uss // 2**20, "pss_mb": full.pss // 2**20,
                  "shared_mb": full.shared // 2**20}))
"""


def _make_inputs(folder: Path) -> tuple[Path, Path]:
    import numpy as np
    import torch

    from reconet_lib.checkpoint import model_checkpoint, save_checkpoint
    from reconet_lib.codec import write_video
    from reconet_lib.network import ReCoNet

    rng = np.random.default_rng(0)
    clip = write_video(folder / "clip.mp4", rng.integers(0, 256, (20, 48, 64, 3), dtype=np.uint8), fps=10)
    torch.manual_seed(0)
    ckpt = save_checkpoint(folder / "tiny.pt", model_checkpoint(ReCoNet.from_preset("tiny"), "random", "0" * 64))
    return clip, ckpt


def _run_at_once(clip: Path, ckpt: Path, folder: Path, processes: int, env: dict) -> list[tuple[int, int]]:
    """Start ``processes`` stylize commands at once; (exit status, peak RSS in MB) of each."""
    children = [subprocess.Popen([sys.executable, "-m", "reconet_lib", "stylize", str(clip), "--checkpoint",
                                  str(ckpt), "-o", str(folder / f"out_{i}.mp4"), "--quiet", "--device", "cpu"],
                                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                for i in range(processes)]
    results = []
    for child in children:
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        results.append((child.returncode, usage.ru_maxrss // 1024))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--stages-only", action="store_true", help="only part 2 (one process, by stage)")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryDirectory(prefix="reconet-stylize-memory-") as tmp:
        folder = Path(tmp)
        clip, ckpt = _make_inputs(folder)
        report = {}
        for label, extra in (() if args.stages_only else (("defaults", {}), ("RECONET_RETAIN_FREED_MEMORY=0", {"RECONET_RETAIN_FREED_MEMORY": "0"}))):
            tic = time.perf_counter()
            results = _run_at_once(clip, ckpt, folder, args.processes, {**env, **extra})
            report[label] = {"exit_statuses": [r[0] for r in results], "peak_rss_mb": [r[1] for r in results],
                             "seconds": round(time.perf_counter() - tic, 1)}
            print(f"{args.processes} at once, {label}: exit {sorted(set(r[0] for r in results))}, peak RSS MB "
                  f"{[r[1] for r in results]} ({report[label]['seconds']} s)")
        staged = subprocess.run([sys.executable, "-c", _STAGES, str(ckpt), str(clip), str(folder / "staged.mp4")],
                                env=env, capture_output=True, text=True, check=True)
        stages = json.loads(staged.stdout.strip().splitlines()[-1])
        previous = 0
        for name, mb in stages["stages"]:
            print(f"  {name:<52} {mb:>6} MB  (+{mb - previous})")
            previous = mb
        print(f"  peak {stages['peak_mb']} MB; at the end: unique to the process (USS) {stages['uss_mb']} MB, "
              f"proportional (PSS) {stages['pss_mb']} MB, shared (library pages) {stages['shared_mb']} MB")
        report["stages"] = stages
        print(json.dumps(report))


if __name__ == "__main__":
    main()
