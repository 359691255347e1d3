"""The study that chose the quick-mode (CPU) recipe of the tutorial models (issue 17; table in docs/results.md).

For each candidate recipe it trains the tutorial's two models (ReCoNet and the per-frame baseline) the way the
notebooks do (`reconet_lib.train.tutorial.tutorial_config` plus the candidate's changes, real `train()`), on
photo scenes that leave one photograph out, then measures on footage the models never saw (a clip panning over
the held-out photograph with its own objects moving, and the photograph itself as a still):

* wall-clock and CPU time of training both models;
* edge correlation with the input (structure kept; target >= 0.6), colour distance to the painting relative to
  the input's (sliced Wasserstein over RGB; target <= 0.6), both on the clip's frames and on the still;
* e_stab (exact flow and occlusions, no square root) of ReCoNet and of the baseline, and their ratio
  (target <= 1/3).

The style is a real painting (`candy` by default; give `--style-mirror DIR` holding candy.jpg when offline, for
example the repository's test fixtures). With `--busy` every candidate is trained a second time beside one
competing busy process (a pure-Python loop on one core), to show what a learner's browser does to training.

    python benchmarks/quick_recipe.py --style-mirror ../shared/styles                 # all candidates
    python benchmarks/quick_recipe.py --style-mirror ../shared/styles --only "chosen: ..." --busy
    python benchmarks/quick_recipe.py ... --avx2     # in a child process capped at AVX2 (reconet_lib.precision)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from reconet_lib import metrics, photos, styles, synthetic
from reconet_lib.losses import LossWeights
from reconet_lib.checkpoint import load_model
from reconet_lib.precision import AVX2_ONLY_ENV
from reconet_lib.style_metrics import edge_correlation, relative_colour_distance
from reconet_lib.train import train
from reconet_lib.train.tutorial import QUICK_RECIPE, tutorial_config

#: Candidate recipes: the tutorial loss network (tutorial_config's ``loss_network``), optionally other loss
#: weights, ``finetune`` (ReCoNet starts from the trained baseline's weights, as the tutorial does; False: from
#: random weights) and TrainConfig changes (``steps`` applies to both models; ``reconet_steps`` and
#: ``reconet_lr_schedule`` to ReCoNet alone).
#: "chosen" is exactly what the tutorial builds offline today (tutorial_config + ensure_tutorial_checkpoints).
#: The rows marked "session 4" were measured from scratch with 150 steps each (the recipe of that time).
_SCRATCH = dict(finetune=False, steps=150, reconet_lr_schedule="constant")
CANDIDATES: dict[str, dict] = {
    "session 4, old: random VGG-16, absolute terms, 64 px crops, 100 steps": dict(
        loss_network="vgg16_random", weights=LossWeights(), crop=(64, 64), finetune=False, steps=100,
        reconet_lr_schedule="constant"),
    "session 4: random VGG-16, relative terms, content relu3_3, style to relu4_3, beta 20": dict(
        loss_network="vgg16_random", weights=LossWeights.offline(
            beta=20.0, content_layer="relu3_3", lambda_f=1.0, lambda_o=20.0,
            style_layer_weights={k: 0.25 for k in ("relu1_2", "relu2_2", "relu3_3", "relu4_3")}), **_SCRATCH),
    "session 4: random texture network (colour + 4 scales), content scale2": dict(
        loss_network="random_texture", **_SCRATCH),
    "session 4: random VGG-16, relative terms, beta 3, lambda_f 1, lambda_o 20": dict(
        loss_network="vgg16_random", weights=LossWeights.offline(beta=3.0, lambda_f=1.0, lambda_o=20.0), **_SCRATCH),
    "session 4: random VGG-16, relative terms, beta 3, lambda_f 3, lambda_o 60": dict(
        loss_network="vgg16_random", weights=LossWeights.offline(beta=3.0, lambda_f=3.0, lambda_o=60.0), **_SCRATCH),
    "from scratch: beta 1, lambda_f 1, lambda_o 20": dict(
        loss_network="vgg16_random", weights=LossWeights.offline(beta=1.0, lambda_f=1.0, lambda_o=20.0), **_SCRATCH),
    "fine-tuned 75 steps: beta 1, lambda_f 1, lambda_o 60": dict(
        loss_network="vgg16_random", weights=LossWeights.offline(beta=1.0, lambda_f=1.0, lambda_o=60.0),
        reconet_steps=75, reconet_lr_schedule="constant"),
    "fine-tuned 150 steps: beta 0.7, lambda_f 3, lambda_o 150": dict(
        loss_network="vgg16_random", weights=LossWeights.offline(beta=0.7, lambda_f=3.0, lambda_o=150.0),
        reconet_steps=150, reconet_lr_schedule="constant"),
    "fine-tuned 150 steps: beta 0.7, lambda_f 10, lambda_o 500, cosine": dict(
        loss_network="vgg16_random", weights=LossWeights.offline(beta=0.7, lambda_f=10.0, lambda_o=500.0),
        reconet_steps=150, reconet_lr_schedule="cosine"),
    "fine-tuned 150 steps, small network (16-32-64, 2 blocks): beta 0.7, lambda_f 3, lambda_o 150": dict(
        loss_network="vgg16_random", weights=LossWeights.offline(beta=0.7, lambda_f=3.0, lambda_o=150.0),
        reconet_steps=150, reconet_lr_schedule="constant", model={"channels": [16, 32, 64], "residual_blocks": 2}),
    "fine-tuned 200 steps at a constant rate: beta 0.7, lambda_f 3, lambda_o 200": dict(
        loss_network="vgg16_random", weights=LossWeights.offline(beta=0.7, lambda_f=3.0),
        reconet_lr_schedule="constant"),
    "fine-tuned 200 steps, cosine: beta 0.7, lambda_f 3, lambda_o 200": dict(
        loss_network="vgg16_random", weights=LossWeights.offline(beta=0.7, lambda_f=3.0)),
    "fine-tuned 200 steps, cosine: beta 3, lambda_f 3, lambda_o 200": dict(
        loss_network="vgg16_random", weights=LossWeights.offline(beta=3.0, lambda_f=3.0)),
    "fine-tuned 200 steps, cosine: beta 2, lambda_f 1, lambda_o 200": dict(
        loss_network="vgg16_random", weights=LossWeights.offline(lambda_f=1.0)),
    "fine-tuned 200 steps, cosine: beta 2, alpha 1.5, lambda_f 3, lambda_o 200": dict(
        loss_network="vgg16_random", weights=LossWeights.offline(alpha=1.5, lambda_f=3.0)),
    "session 6: alpha 1.5, beta 2, lambda_f 3, lambda_o 200": dict(
        loss_network="vgg16_random", weights=LossWeights.offline(alpha=1.5)),
    "session 6: alpha 2, beta 2, lambda_f 3, lambda_o 200": dict(
        loss_network="vgg16_random", weights=LossWeights.offline(alpha=2.0)),
    "session 6: content relu1_2, beta 2, lambda_f 3, lambda_o 200": dict(
        loss_network="vgg16_random", weights=LossWeights.offline(content_layer="relu1_2")),
    "session 6: network 16-32-64, 1 block": dict(
        loss_network="vgg16_random", model={"channels": [16, 32, 64], "residual_blocks": 1}),
    "session 6: baseline 300 steps": dict(loss_network="vgg16_random", steps=300, reconet_steps=200),
    "session 6: lr 4e-3": dict(loss_network="vgg16_random", lr=4e-3),
    "session 6: no total variation (gamma 0)": dict(
        loss_network="vgg16_random", weights=LossWeights.offline(gamma=0.0)),
    "session 6: crop 96, baseline 300 steps": dict(loss_network="vgg16_random", crop=(96, 96), steps=300,
                                                   reconet_steps=200),
    "session 6: crop 112, baseline 300 steps": dict(loss_network="vgg16_random", crop=(112, 112), steps=300,
                                                    reconet_steps=200),
    "session 6: crop 112, baseline 300 steps, lambda_o 300": dict(
        loss_network="vgg16_random", weights=LossWeights.offline(lambda_o=300.0), crop=(112, 112), steps=300,
        reconet_steps=200),
    "session 5 chosen: baseline 150 steps on 128 px crops, fine-tuned 200 steps, cosine, beta 2, lambda_f 3, "
    "lambda_o 200": dict(loss_network="vgg16_random", crop=(128, 128), steps=150, reconet_steps=200),
    "chosen: baseline 300 steps on 112 px crops, fine-tuned 200 steps, cosine, beta 2, lambda_f 3, lambda_o 200 "
    "(LossWeights.offline, QUICK_RECIPE)": dict(loss_network="vgg16_random"),
}


def _config(changes: dict, temporal: bool, data_root: Path, output: Path, init: Path | None = None):
    changes = dict(changes)
    network = changes.pop("loss_network")
    weights = changes.pop("weights", None)
    changes.pop("finetune", None)
    reconet_steps = changes.pop("reconet_steps", None)
    reconet_schedule = changes.pop("reconet_lr_schedule", None)
    base = tutorial_config(True, "cpu", temporal=temporal, loss_network=network, style="candy", output=output,
                           init=init)
    weights = base.loss if weights is None else weights
    if not temporal:
        weights = dataclasses.replace(weights, lambda_f=0.0, lambda_o=0.0)
    if temporal and reconet_steps is not None:
        changes["steps"] = reconet_steps
    if temporal and reconet_schedule is not None:
        changes["lr_schedule"] = reconet_schedule
    if "steps" in changes:
        changes["checkpoint_every"] = changes["steps"] // 2
    return dataclasses.replace(base, loss=weights, data=[{"kind": "synthetic", "path": str(data_root), "options": {}}],
                               **changes)


def _busy_loop(stop_at: float) -> None:
    x = 0
    while time.time() < stop_at:
        x += 1


def _train_both(name: str, changes: dict, data_root: Path, workdir: Path, busy: bool) -> dict:
    stopper = None
    if busy:
        stopper = multiprocessing.Process(target=_busy_loop, args=(time.time() + 3600,), daemon=True)
        stopper.start()
    try:
        result = {}
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for model, temporal in (("baseline", False), ("reconet", True)):
            out = workdir / f"{model}-{'busy' if busy else 'quiet'}"
            init = result["baseline"] if temporal and changes.get("finetune", True) else None
            config = _config(changes, temporal, data_root, out, init=init)
            train(config, resume=False, progress=False, verbose=False)
            result[model] = out / "last.pt"
        result["wall_s"] = time.perf_counter() - wall0
        result["cpu_s"] = time.process_time() - cpu0
        return result
    finally:
        if stopper is not None:
            stopper.terminate()
            stopper.join()


@torch.no_grad()
def _measure(checkpoints: dict, held_out: str, style: torch.Tensor) -> dict:
    clip = synthetic.make_sequence(dataclasses.replace(synthetic.default_config(True), photos=(held_out,),
                                                       frames=10, seed=11))
    frames = clip.frames_tensor()
    still = torch.from_numpy(photos.photo_pixels(held_out).copy()).permute(2, 0, 1)[None].float() / 255
    still = torch.nn.functional.interpolate(still, scale_factor=256 / max(still.shape[-2:]), mode="area")
    flows = metrics.TemporalFlows.from_synthetic(clip)
    row = {}
    for model in ("reconet", "baseline"):
        net = load_model(checkpoints[model], device="cpu")
        out = net(frames).clamp(0, 1)
        row[f"{model}_e_stab"] = metrics.temporal_errors(out, flows)["e_stab"].mean
        prefix = "" if model == "reconet" else "baseline_"
        row[f"{prefix}edge_clip"] = edge_correlation(frames, out)
        row[f"{prefix}colour_clip"] = relative_colour_distance(frames, out, style)
        out_still = net(still).clamp(0, 1)
        row[f"{prefix}edge_still"] = edge_correlation(still, out_still)
        row[f"{prefix}colour_still"] = relative_colour_distance(still, out_still, style)
        if model == "reconet":
            row["frames"] = (frames[[0, -1]], out[[0, -1]])
    row["e_stab_ratio"] = row["reconet_e_stab"] / row["baseline_e_stab"]
    return row


def _run(args) -> list[dict]:
    torch.set_num_threads(args.threads) if args.threads else None
    if args.style_mirror:
        os.environ["RECONET_MIRROR"] = str(Path(args.style_mirror).resolve())
    style = styles.load_style("candy", size=256)
    style = style[None] if style.dim() == 3 else style
    names = [n for n in CANDIDATES if not args.only or any(n.startswith(o) for o in args.only)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="quick-recipe-") as tmp:
        tmp = Path(tmp)
        others = tuple(p for p in photos.PHOTOS if p != args.hold_out)
        data_root = synthetic.generate_dataset(
            tmp / "scenes", scenes=synthetic.default_scene_count(True),
            config=dataclasses.replace(synthetic.default_config(True), photos=others))
        for name in names:
            for busy in ((False, True) if args.busy else (False,)):
                smoke = {"steps": args.steps, "reconet_steps": args.steps} if args.steps else {}
                changes = {**CANDIDATES[name], **smoke}
                trained = _train_both(name, changes, data_root, tmp / _slug(name), busy)
                row = {"candidate": name, "busy": busy, "wall_s": trained["wall_s"], "cpu_s": trained["cpu_s"],
                       "load_avg": os.getloadavg()[1],
                       **_measure(trained, args.hold_out, style)}
                if args.save_frames and not busy:
                    _save_frames(row.pop("frames"), Path(args.save_frames) / f"{_slug(name)}.png")
                row.pop("frames", None)
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)[:60]


def _save_frames(frames, path: Path) -> None:
    import imageio.v3 as iio

    inputs, outputs = frames
    grid = torch.cat([torch.cat(list(inputs), 1), torch.cat(list(outputs), 1)], 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, (grid.permute(1, 2, 0).numpy() * 255).round().astype("uint8"))


def _table(rows: list[dict], header: str) -> None:
    print(f"\n{header}")
    print("| candidate | competing load | train both (wall s) | CPU s | machine load avg | edge (clip / still) "
          "| colour (clip / still) | baseline edge / colour (clip) | e_stab ReCoNet / baseline |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['candidate']} | {'one busy process' if r['busy'] else 'quiet'} | {r['wall_s']:.0f} | "
              f"{r['cpu_s']:.0f} | {r['load_avg']:.1f} | {r['edge_clip']:.2f} / {r['edge_still']:.2f} | "
              f"{r['colour_clip']:.2f} / {r['colour_still']:.2f} | "
              f"{r['baseline_edge_clip']:.2f} / {r['baseline_colour_clip']:.2f} | {r['e_stab_ratio']:.2f} "
              f"({r['reconet_e_stab']:.2e} / {r['baseline_e_stab']:.2e}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="candidate names to run (default: all)")
    parser.add_argument("--hold-out", default="chelsea", choices=sorted(photos.PHOTOS),
                        help="photograph kept out of training and used for the measurements")
    parser.add_argument("--style-mirror", help="folder holding candy.jpg (RECONET_MIRROR), for offline machines")
    parser.add_argument("--busy", action="store_true", help="also train beside one competing busy process")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: the library's choice)")
    parser.add_argument("--save-frames", help="folder for first/last frame pictures of each candidate")
    parser.add_argument("--avx2", action="store_true", help="run in a child process capped at AVX2")
    parser.add_argument("--wait", choices=("passive", "active"), default="passive",
                        help="OpenMP wait policy (the library asks for passive; active is libgomp's default)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--steps", type=int, help="override every candidate's steps (a smoke test of the script)")
    args = parser.parse_args()
    policy = args.wait.upper()
    if args.avx2 or os.environ.get("OMP_WAIT_POLICY", "").upper() != policy:
        # both settings must be in place before torch loads: run in a child process that has them
        argv = [a for a in sys.argv[1:] if a != "--avx2"]
        env = {**os.environ, **(AVX2_ONLY_ENV if args.avx2 else {}), "OMP_WAIT_POLICY": policy}
        sys.exit(subprocess.call([sys.executable, __file__, *argv], env=env))
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{torch.get_num_threads()} threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
          f"quick recipe {QUICK_RECIPE}")
    rows = _run(args)
    _table(rows, f"held-out photograph: {args.hold_out}; style candy; capability "
                 f"{torch.backends.cpu.get_cpu_capability()}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
