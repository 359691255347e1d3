"""Train the five catalog styles with the full recipe, measure them, and publish each as a shareable model.

The GPU recipe, as one command (MPI Sintel is downloaded and verified once, about 5.3 GB; each style trains the
``paper`` network for the recipe's 20000 steps, see ``reconet_lib.train.recipe``; ``huggingface-cli login`` first):

    python tools/publish_styles.py --out published --push-to YOUR_HF_USER --device cuda

For each style it trains (resuming an interrupted run), measures ``e_stab`` and ``E_warp`` of the trained network
on a generated clip with exact flow (``reconet_lib.synthetic``, the same clip for every style), writes
``<out>/<style>/`` with ``ReCoNet.save_pretrained`` (config.json, model.safetensors, README.md card with
style, recipe, steps and the measured errors) and, with ``--push-to OWNER``, uploads it to
``OWNER/reconet-<style>``. Without ``--push-to`` nothing leaves the machine; push a folder later with
``ReCoNet.from_pretrained(folder).push_to_hub("OWNER/reconet-<style>")`` (the card travels with the model).

A small run on a CPU (what ``tests/test_publish.py`` does; offline, procedural style, random VGG weights):

    python tools/publish_styles.py --out /tmp/pub --styles mosaic --steps 2 --preset tiny --crop 64x64 \\
        --data synthetic --vgg random --device cpu
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The five style images of the original ReCoNet code (reconet_lib.styles' downloaded catalog entries).
FIVE_STYLES = ("autoportrait", "candy", "composition", "edtaonisl", "udnie")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for the runs and the pretrained folders")
    parser.add_argument("--styles", nargs="+", default=list(FIVE_STYLES),
                        help="catalog style names (default: the five)")
    parser.add_argument("--push-to", default=None, metavar="OWNER",
                        help="Hugging Face user or organisation: upload each style to OWNER/reconet-<style>")
    parser.add_argument("--data", choices=("sintel", "synthetic"), default="sintel",
                        help="training frames: MPI Sintel (the recipe) or generated scenes (quick tests)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the recipe's)")
    parser.add_argument("--preset", default=None, help="network preset (default: the recipe's, paper)")
    parser.add_argument("--crop", default=None, metavar="WxH", help="training crop (default: the recipe's)")
    parser.add_argument("--batch-size", type=int, default=None, help="pairs per step (default: the recipe's)")
    parser.add_argument("--vgg", choices=("imagenet", "random"), default="imagenet",
                        help="loss network weights (random: offline tests only)")
    parser.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda if available)")
    parser.add_argument("--dry-run", action="store_true", help="check the styles and the push target and print "
                        "the plan; download, train and write nothing")
    return parser.parse_args(argv)


def training_config(args: argparse.Namespace, style: str, output: Path, *, sintel: Path | None = None):
    """The recipe's TrainConfig for ``style``, with the overrides given on the command line.

    ``sintel``: MPI Sintel's training folder; None: :func:`reconet_lib.train.recipe.prepare_sintel` (download once).
    """
    from reconet_lib.errors import UserInputError
    from reconet_lib.train.recipe import full_recipe, prepare_sintel
    from reconet_lib.sizes import parse_size

    if args.data == "sintel":
        config = full_recipe(sintel=sintel or prepare_sintel(), output=output, device=args.device)
    else:
        config = dataclasses.replace(full_recipe(sintel=".", output=output, device=args.device),
                                     data=[{"kind": "synthetic", "options": {"quick": True}}], num_workers=0,
                                     scale_range=(1.0, 1.0))
    changes = {"style": style, "vgg_weights": None if args.vgg == "random" else "imagenet"}
    if args.steps is not None:
        changes.update(steps=args.steps, checkpoint_every=0, log_every=1)
    if args.preset is not None:
        changes["model"] = args.preset
    if args.crop is not None:
        crop = parse_size(args.crop)  # (H, W)
        if not isinstance(crop, tuple):
            raise UserInputError(f"--crop {args.crop} must be exact, WxH (e.g. 256x256)")
        changes["crop"] = crop
    if args.batch_size is not None:
        changes["batch_size"] = args.batch_size
    return dataclasses.replace(config, **changes)


def recipe_text(config) -> str:
    """The card's one-line recipe."""
    data = ", ".join(d["kind"] for d in config.data)
    model = config.model if isinstance(config.model, str) else "custom"
    return (f"reconet_lib full recipe (tools/publish_styles.py): {model} preset, {data} frames, "
            f"{config.crop[1]}x{config.crop[0]} crops, batch {config.batch_size}, Adam lr {config.lr} "
            f"({config.lr_schedule}), precision {config.precision}, VGG-16 {config.vgg_weights or 'random (test only)'}")


def measure(checkpoint: Path, device) -> tuple[float, float, str]:
    """``e_stab`` and ``E_warp`` of the trained network on one generated clip with exact flow."""
    import torch

    from reconet_lib import load_model
    from reconet_lib.metrics import TemporalFlows, stability_error, warping_error
    from reconet_lib.synthetic import SyntheticConfig, make_sequence

    seq = make_sequence(SyntheticConfig(height=96, width=128, frames=8, objects=3, seed=7, scene="photo"))
    frames, flows = seq.frames_tensor(), TemporalFlows.from_synthetic(seq)
    model = load_model(checkpoint, device=device)
    with torch.no_grad():
        out = torch.cat([model(frames[k : k + 1].to(device)).float().cpu() for k in range(len(frames))])
    e_stab = stability_error(out, flows.backward, flows.valid_backward).mean
    e_warp = warping_error(out, flows.forward, flows.valid_forward).mean
    return e_stab, e_warp, ("generated photo scene (reconet_lib.synthetic, 128x96, 8 frames, seed 7) with exact "
                            "flow and occlusions; e_stab without square root")


def export(checkpoint: Path, folder: Path, **card_fields) -> Path:
    """A training checkpoint as a pretrained folder; the card takes style, steps and train config from it."""
    from reconet_lib.checkpoint import load_checkpoint, load_model
    from reconet_lib.pretrained import ModelCard

    payload = load_checkpoint(checkpoint)
    card = ModelCard(style=payload["style_name"], steps=payload.get("step"),
                     train_config=payload.get("train_config"), **card_fields)
    return load_model(checkpoint).save_pretrained(folder, card=card)


def check_push(owner: str | None, styles: list[str]) -> list[str | None]:
    """The repository of each style (None: not pushed), checked before any training: ids, network, token."""
    from reconet_lib.errors import UserInputError
    from reconet_lib.hub import hub_downloads_allowed, is_repo_id

    if owner is None:
        return [None] * len(styles)
    repos = [f"{owner}/reconet-{style}" for style in styles]
    bad = [r for r in repos if not is_repo_id(r)]
    if bad:
        raise UserInputError(f"--push-to {owner!r} gives {bad[0]!r}, not a Hugging Face repository id; "
                             "give a user or organisation name")
    if not hub_downloads_allowed():
        raise UserInputError("--push-to needs network access, but RECONET_OFFLINE or HF_HUB_OFFLINE is set; "
                             "unset them, or leave out --push-to and push the folders later")
    from huggingface_hub import get_token

    if not get_token():
        raise UserInputError("--push-to needs a Hugging Face write token: run `huggingface-cli login` "
                             "(or set HF_TOKEN) first")
    return repos


def plan(args: argparse.Namespace) -> list[tuple]:
    """``(style, TrainConfig, pretrained folder, repository or None, catalog entry)`` per style, all checked first.

    With ``--dry-run`` the Sintel folder is named, not prepared: nothing is downloaded or written.
    """
    from reconet_lib.config import data_dir
    from reconet_lib.train.recipe import prepare_sintel
    from reconet_lib.styles import get_style

    entries = [get_style(style) for style in args.styles]  # an unknown name fails here, before any training
    repos = check_push(args.push_to, args.styles)
    out = Path(args.out)
    sintel = None
    if args.data == "sintel":
        sintel = data_dir() / "sintel" / "training" if args.dry_run else prepare_sintel()
    steps = []
    for entry, style, repo in zip(entries, args.styles, repos):
        config = training_config(args, style, out / "runs" / style, sintel=sintel)
        steps.append((style, config, out / style, repo, entry))
    return steps


def publish(args: argparse.Namespace) -> list[Path]:
    """Train, measure, save (and push) each style; with ``--dry-run`` only print the plan."""
    from reconet_lib.network import ReCoNet
    from reconet_lib.precision import parse_device
    from reconet_lib.train import train

    steps = plan(args)
    if args.dry_run:
        for style, config, folder, repo, _ in steps:
            data = ", ".join(d["kind"] for d in config.data)
            print(f"[{style}] would train {config.steps} steps ({config.model} preset, {data} frames, "
                  f"{config.crop[1]}x{config.crop[0]} crops, batch {config.batch_size}) into {config.output}, "
                  f"write {folder}, push {repo or 'nowhere'}", flush=True)
        sintel = next((Path(d["path"]) for d in steps[0][1].data if d["kind"] == "sintel"), None) if steps else None
        if sintel is not None:
            ready = (sintel / "flow").is_dir()
            state = "ready in" if ready else "not prepared yet; the run downloads it once (5.3 GB) into"
            print(f"MPI Sintel: {state} {sintel.parent}", flush=True)
        return []
    device = parse_device(args.device)
    folders = []
    for style, config, folder, repo, entry in steps:
        print(f"[{style}] training {config.steps} steps into {config.output}", flush=True)
        result = train(config, resume=True, progress=False, verbose=False)
        e_stab, e_warp, where = measure(result.checkpoint, device)
        folder = export(result.checkpoint, folder, recipe=recipe_text(config), e_stab=e_stab, e_warp=e_warp,
                        evaluated_on=where, notes=f"Style image: {entry.title}, {entry.artist}. {entry.licence_note}")
        print(f"[{style}] e_stab {e_stab:.6f}, E_warp {e_warp:.6f} -> {folder}", flush=True)
        if repo:
            url = ReCoNet.from_pretrained(folder).push_to_hub(repo)
            print(f"[{style}] pushed: {url}", flush=True)
        folders.append(folder)
    return folders


def main(argv=None) -> int:
    sys.path.insert(0, str(ROOT))
    from reconet_lib.errors import ReconetError

    args = parse_args(argv)
    try:
        publish(args)
    except (ReconetError, OSError) as exc:
        print(f"publish_styles: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
