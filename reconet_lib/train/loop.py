"""The training loop: :func:`train` prepares a run (inputs checked before anything is written, the output folder
locked, the checkpoint to resume from chosen), then runs steps on a :class:`~.state.RunState` until the last
step, a ``stop_after`` count, divergence, or a stop signal.

A step (:func:`~.step.train_step`) runs the network on a batch of pairs under autocast, backpropagates the total loss
(:func:`reconet_lib.losses.pair_losses`), clips the gradient, and updates unless the loss or gradient is not
finite. SIGINT (Ctrl-C) and SIGTERM let the current step finish, save an "interrupted" checkpoint and then stop
(``KeyboardInterrupt``, or :class:`~reconet_lib.errors.TrainingInterrupted` for SIGTERM); a second signal stops
at once.
"""
from __future__ import annotations

import hashlib
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .. import losses, memory, styles
from ..checkpoint import (LAST_NAME, LOCK_NAME, exclusive, latest_checkpoint, load_model, remove_stale_temporaries,
                          resume_point, save_step_checkpoint)
from ..cost import conv_layers
from ..errors import ReconetError, TrainingInterrupted, UserInputError
from ..losses import VGG_LAYERS
from ..network import ReCoNetConfig
from ..precision import parse_device, precision_name, training_precision
from ..texture_net import TEXTURE_LAYERS
from .config import CONFIG_NAME, RESUME_FIELDS, TrainConfig
from .log import LOG_NAME, LogWindow, append_record, log_record, truncate_log
from .processes import Processes, start_processes
from .sampling import SampleStream, build_dataset, default_num_workers, make_step_loader
from .state import RunState, lr_factor
from .step import PairLoss, train_step


class TrainingDivergedError(ReconetError):
    """Too many consecutive training steps had a non-finite loss or gradient; the message says what to try."""


@dataclass
class TrainResult:
    """What :func:`train` did.

    Attributes:
        output_dir: the run's folder.
        checkpoint: ``last.pt`` if a checkpoint exists (None if the run stopped before its first one).
        step: steps completed in total (including those of earlier, resumed-from runs).
        start_step: the step this call started from (0, or the checkpoint's step when resuming).
        finished: whether ``config.steps`` were reached.
        skipped_steps: steps skipped by the non-finite guard during this call.
        history: the log records this call wrote.
        seconds: wall-clock time of this call's training loop.
    """

    output_dir: Path
    checkpoint: Path | None
    step: int
    start_step: int
    finished: bool
    skipped_steps: int
    history: list[dict]
    seconds: float

    @property
    def log_path(self) -> Path:
        return self.output_dir / LOG_NAME


# ==============================================================================================================
# The model and its loss
# ==============================================================================================================


def model_config_of(config: TrainConfig):
    """The :class:`~reconet_lib.network.ReCoNetConfig` that ``config.model`` names."""
    try:
        if isinstance(config.model, str):
            return ReCoNetConfig.preset(config.model)
        return ReCoNetConfig.from_dict(config.model)
    except UserInputError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise UserInputError(f"TrainConfig.model {config.model!r} is not a preset or ReCoNetConfig dict: {exc}") from None


def style_identity(style: str) -> tuple[str, str]:
    """``(style name, sha256 of the style file)``: catalog name, or the file's stem and its digest."""
    if style in styles.list_styles():
        return style, styles.style_sha256(style)
    path = Path(style).expanduser()
    if not path.is_file():
        raise UserInputError(
            f"style {style!r} is neither a catalog style ({', '.join(styles.list_styles())}) nor an image file"
        )
    return path.stem, hashlib.sha256(path.read_bytes()).hexdigest()


# ==============================================================================================================
# One run
# ==============================================================================================================


@dataclass
class _Run:
    """What stays fixed while a run trains."""

    config: TrainConfig
    device: torch.device
    autocast_dtype: torch.dtype | None
    use_scaler: bool
    procs: Processes
    output: Path
    style: tuple[str, str]
    say: Callable[..., None]

    @property
    def log_path(self) -> Path:
        return self.output / LOG_NAME

    def save(self, state: RunState, **extra) -> None:
        """Checkpoint ``state`` (process 0 writes ``last.pt`` and ``step_*.pt``; every process waits for it)."""
        self.procs.barrier()
        if self.procs.main:
            c = self.config
            data_state = {"seed": c.seed, "next_sample": state.step * self.procs.world_size * c.batch_size,
                          "world_size": self.procs.world_size, "batch_size": c.batch_size}
            payload = state.checkpoint(c, self.style, dict(
                data_state=data_state, precision=precision_name(self.autocast_dtype, self.use_scaler), **extra))
            save_step_checkpoint(self.output, payload, c.keep_last)
        self.procs.barrier()


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    verbose: bool = True,
    dataset=None,
) -> TrainResult:
    """Train ReCoNet as ``config`` says, writing checkpoints and ``log.jsonl`` to ``config.output``.

    Args:
        config: the :class:`TrainConfig`.
        resume: continue from the latest checkpoint in ``config.output`` (start afresh if there is none).
            Without it, a folder that already holds checkpoints is refused (so nothing is overwritten by mistake).
        progress: show a ``tqdm.auto`` progress bar (process 0 only).
        stop_after: stop after this many steps of this call without a final checkpoint, as an interruption
            would (for tests and demonstrations of resuming).
        verbose: print what is being trained (process 0, stdout).
        dataset: the pair dataset to train on instead of :func:`~.sampling.build_dataset` (``config``) (e.g. data
            held in memory for a benchmark).
    Returns:
        a :class:`TrainResult`.
    Raises:
        UserInputError / FileNotFoundError: bad config, missing data or style, an output folder that cannot
            hold the run, or a checkpoint that does not belong to it.
        TrainingDivergedError: ``config.max_nonfinite`` consecutive steps were non-finite.
        KeyboardInterrupt / TrainingInterrupted: SIGINT / SIGTERM, after saving the last completed step.
    """
    config = TrainConfig.from_dict(config.to_dict())  # a private, validated copy
    if stop_after is not None and (int(stop_after) != stop_after or stop_after < 1):
        raise UserInputError(f"stop_after must be a positive number of steps or None; got {stop_after!r}")
    device = parse_device(config.device)
    autocast_dtype, use_scaler = training_precision(device, config.precision)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    procs = start_processes(device)
    say = print if (verbose and procs.main) else (lambda *a, **k: None)
    run = _Run(config, device, autocast_dtype, use_scaler, procs, Path(config.output).expanduser(),
               style_identity(config.style), say)
    try:
        with ExitStack() as stack, torch.random.fork_rng(devices=[device.index] if device.type == "cuda" else []):
            return _train(run, resume, progress, stop_after, dataset, stack)
    finally:
        procs.close()


def _train(run: _Run, resume: bool, progress: bool, stop_after: int | None, dataset,
           stack: ExitStack) -> TrainResult:
    config, procs = run.config, run.procs
    style_image, dataset, initial = _check_inputs(run, dataset)  # before anything is written
    start = _open_output(run, resume, stack)
    state, runner, vgg_source = _build(run, style_image, start, initial)
    _start_log(run, resumed=start is not None, step=state.step)
    workers = default_num_workers(run.device.type == "cuda") if config.num_workers is None else config.num_workers
    loader = make_step_loader(SampleStream(dataset, config.seed), state.step + 1, config.steps, config.batch_size,
                              rank=procs.rank, world_size=procs.world_size, num_workers=workers,
                              pin_memory=run.device.type == "cuda")
    run.say(f"training ReCoNet ({config.model if isinstance(config.model, str) else 'custom'} preset, "
            f"{sum(p.numel() for p in state.model.parameters()):,} parameters) on {len(dataset)} pairs "
            f"({', '.join(s['kind'] for s in config.data)}), crop {config.crop[1]}x{config.crop[0]} (WxH), "
            f"batch {config.batch_size} x {procs.world_size} process(es), style {run.style[0]!r}, VGG weights "
            f"{vgg_source}, "
            f"{precision_name(run.autocast_dtype, run.use_scaler)} on {run.device}")
    if start is not None:
        run.say(f"resuming from {start[0]} at step {state.step}")
    elif config.init is not None:
        run.say(f"starting from the network weights of {config.init}")
    with _stop_requests() as stop:
        return _loop(run, state, runner, loader, stop, progress, stop_after)


def _check_inputs(run: _Run, dataset) -> tuple[torch.Tensor, object, dict | None]:
    """Load the style image, the dataset and the starting weights (``config.init``), and check the output path:
    every input fault before any write."""
    output = run.output
    if output.exists() and not output.is_dir():
        raise UserInputError(f"output {output} is a file, not a folder; choose a folder for the run (--output)")
    _check_memory(run)
    style_image = styles.load_style(run.config.style, size=run.config.style_size, device=run.device)
    if dataset is None:
        if not run.procs.main:  # process 0 prepares caches (own videos' flow) first
            run.procs.barrier()
        dataset = build_dataset(run.config)
        if run.procs.main:
            run.procs.barrier()
    initial = None if run.config.init is None else initial_weights(run.config.init, model_config_of(run.config))
    return style_image, dataset, initial


def initial_weights(path: str | os.PathLike, model_config: ReCoNetConfig) -> dict[str, torch.Tensor]:
    """The network weights stored in checkpoint ``path`` (training or model-only), checked to be ``model_config``'s
    network; a missing or unreadable file, or another network, is one UserInputError line."""
    if not Path(path).is_file():
        raise UserInputError(f"TrainConfig.init: {path} is not a file; give the checkpoint to start from (--init CKPT) "
                             "or leave it out to start from random weights")
    model = load_model(path)
    if model.config != model_config:
        raise UserInputError(f"TrainConfig.init: {path} holds another network ({model.config}) than this run trains "
                             f"({model_config}); train the same preset (--preset) or start from random weights")
    return model.state_dict()


def training_memory_lower_bound(config: TrainConfig) -> int:
    """Bytes a training step needs at least: the activations kept for the backward pass, in float32.

    Counts, for the ``2 * batch_size`` frames of a step, every ReCoNet convolution's output and its normalised
    copy, and every VGG-16 convolution output up to the deepest loss layer for the stylised frames (the input
    frames' features need no gradient). Weights, optimiser state, workspace and the allocator's slack come on top,
    so a run needs more than this; what is refused by it cannot fit.
    """
    h, w = config.crop
    frames = 2 * config.batch_size
    network = sum(2 * c["out_channels"] * c["out_height"] * c["out_width"]
                  for c in conv_layers(model_config_of(config), h, w))
    # VGG-16's convolutions up to relu4_3: (index in vgg16.features, channels, downscale)
    vgg_convs = ((0, 64, 1), (2, 64, 1), (5, 128, 2), (7, 128, 2), (10, 256, 4), (12, 256, 4), (14, 256, 4),
                 (17, 512, 8), (19, 512, 8), (21, 512, 8))
    if config.loss.network == "vgg16":
        deepest = max(VGG_LAYERS[name] for name in config.loss.vgg_layers)
        vgg = sum(c * (h // s) * (w // s) for index, c, s in vgg_convs if index < deepest)
    else:  # the offline texture network: one map bank per layer, at 1/f of the crop (128 maps, see texture_net)
        vgg = sum(128 * -(-h // f) * -(-w // f) for name, f in TEXTURE_LAYERS.items() if name in config.loss.vgg_layers)
    return 4 * frames * (network + vgg)


def _check_memory(run: _Run) -> None:
    h, w = run.config.crop
    memory.require(training_memory_lower_bound(run.config),
                   f"training steps of {run.config.batch_size} pairs of {w}x{h} crops",
                   "use a smaller --crop or --batch-size", device=run.device)


def _open_output(run: _Run, resume: bool, stack: ExitStack) -> tuple[Path, dict] | None:
    """Lock the output folder (process 0), clear a killed run's temporaries, and pick the checkpoint to resume."""
    if run.procs.main:
        stack.enter_context(exclusive(run.output / LOCK_NAME, wait=False))
        remove_stale_temporaries(run.output)
    existing = latest_checkpoint(run.output)
    if existing is not None and not resume:
        raise UserInputError(
            f"{run.output} already holds checkpoints ({existing.name}); pass resume=True (--resume) to continue that "
            "run, or choose another output folder"
        )
    start = resume_point(run.output) if resume else None
    if start is not None:
        _check_resumable(start[1], run.config, run.style[1], start[0])
    return start


def _check_resumable(payload: Mapping, config: TrainConfig, style_sha: str, path: Path) -> None:
    """Refuse a checkpoint of another run (other config or style) or one beyond ``config.steps``."""
    stored = payload.get("train_config")
    if not isinstance(stored, Mapping):
        raise UserInputError(f"cannot resume from {path}: it holds no training config (a model-only checkpoint); "
                             f"delete {path} or train into a new output folder")
    current = config.to_dict()
    different = [name for name in RESUME_FIELDS if name in stored and stored[name] != current[name]]
    if different:
        detail = "; ".join(f"{n}: checkpoint {stored[n]!r}, now {current[n]!r}" for n in different)
        raise UserInputError(
            f"cannot resume from {path}: the config differs in {', '.join(different)} ({detail}). Resume with the "
            f"run's own config ({path.parent / CONFIG_NAME}), delete {path} if it is another run's, or train into "
            "a new output folder"
        )
    if payload.get("style_sha256") != style_sha:
        raise UserInputError(f"cannot resume from {path}: it was trained on another style image (sha256 differs); "
                             f"resume with that style, delete {path}, or train into a new output folder")
    if int(payload["step"]) > config.steps:
        raise UserInputError(f"the checkpoint {path} is at step {payload['step']}, beyond TrainConfig.steps={config.steps}")


def _build(run: _Run, style_image: torch.Tensor, start: tuple[Path, dict] | None,
           initial: dict | None = None) -> tuple[RunState, nn.Module, str]:
    """The run state (fresh with the ``initial`` weights if given, or restored from ``start``), the module one step
    calls (PairLoss, maybe in DDP) and where the loss network's weights came from."""
    config, device = run.config, run.device
    state = RunState.create(config, model_config_of(config), device, run.use_scaler)
    if initial is not None and start is None:
        state.model.load_state_dict(initial)
    vgg = losses.build_loss_network(config.loss, config.vgg_weights, device=device, seed=config.seed)
    grams = losses.style_grams(vgg, style_image, list(config.loss.style_layer_weights))
    runner: nn.Module = PairLoss(state.model, vgg, grams, config.loss)
    if run.procs.distributed:
        runner = nn.parallel.DistributedDataParallel(
            runner, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False
        )
    if start is not None:
        state.restore(start[1])
        previous_world = int(start[1].get("data_state", {}).get("world_size", run.procs.world_size))
        if previous_world != run.procs.world_size:
            run.say(f"note: the checkpoint was written by {previous_world} process(es), this run has "
                    f"{run.procs.world_size}: the data order from here on differs from an uninterrupted run")
    return state, runner, vgg.weights_source


def _start_log(run: _Run, resumed: bool, step: int) -> None:
    """Create the folder, cut the log back to ``step`` (or start it afresh) and store the config."""
    if run.procs.main:
        run.output.mkdir(parents=True, exist_ok=True)
        if resumed:
            truncate_log(run.log_path, step)
        else:
            run.log_path.unlink(missing_ok=True)
        run.config.save(run.output / CONFIG_NAME)
    run.procs.barrier()


# ==============================================================================================================
# Steps
# ==============================================================================================================


def _step(run: _Run, state: RunState, runner: nn.Module, batch: Mapping, stop_requested: bool) -> bool:
    """One optimisation step (:func:`~.step.train_step`) or a skipped one, and the run state's bookkeeping;
    returns whether any process was asked to stop."""
    result = train_step(runner, state.optimizer, state.scaler, batch, device=run.device,
                        autocast_dtype=run.autocast_dtype, grad_clip=run.config.grad_clip,
                        world_size=run.procs.world_size, stop_requested=stop_requested)
    if result.updated:
        state.nonfinite["consecutive"] = 0
        state.window.add(result.terms, result.grad_norm if result.grad_finite else None)
    else:
        state.nonfinite["consecutive"] += 1
        state.nonfinite["total"] += 1
        state.window.skipped += 1
    state.advance_schedule()
    state.step += 1
    return result.stop_requested


def _loop(run: _Run, state: RunState, runner: nn.Module, loader, stop: _StopRequest, progress: bool,
          stop_after: int | None) -> TrainResult:
    """Run the steps of ``loader``; log, checkpoint, and stop on divergence, ``stop_after`` or a signal."""
    config = run.config
    # The bar counts frame pairs, so that its rate reads "pairs/s" and its estimate of the time left is honest
    # whatever the batch size; the step is shown beside it.
    pairs_per_step = config.batch_size * run.procs.world_size
    bar = tqdm(total=config.steps * pairs_per_step, initial=state.step * pairs_per_step, desc="training",
               unit="pair", disable=not (progress and run.procs.main), dynamic_ncols=True, file=sys.stdout)
    start_step = saved_step = state.step
    history: list[dict] = []
    skipped_before = state.nonfinite["total"]
    started = window_started = time.perf_counter()
    stopping = False
    try:
        for batch in _batches(loader, stop):
            stopping = _step(run, state, runner, batch, stop.signum is not None)
            bar.update(pairs_per_step)
            diverged = state.nonfinite["consecutive"] >= config.max_nonfinite
            if state.step % config.log_every == 0 or state.step == config.steps or diverged:
                now = time.perf_counter()
                record = log_record(state.step, state.window, config.lr * lr_factor(config, state.step - 1),
                                    now - window_started, config.batch_size * run.procs.world_size)
                record["elapsed_s"] = now - started
                state.window, window_started = LogWindow(), time.perf_counter()
                if run.procs.main:
                    append_record(run.log_path, record)
                    history.append(record)
                    if "total" in record:
                        bar.set_postfix(step=f"{state.step}/{config.steps}", loss=f"{record['total']:.4g}",
                                        refresh=False)
            if diverged:
                raise _diverged(run, state)
            if (config.checkpoint_every and state.step % config.checkpoint_every == 0) or state.step == config.steps:
                run.save(state)
                saved_step = state.step
            if stopping or (stop_after is not None and state.step - start_step >= stop_after):
                break
    finally:
        bar.close()
    if progress and run.procs.main:
        _print_progress_record(config, state.step, state.step - start_step, pairs_per_step,
                               time.perf_counter() - started)
    local_stop = stop.signum is not None and not run.procs.distributed  # several processes stop together only
    if (stopping or local_stop) and state.step < config.steps:
        _stop_for_signal(run, state, stop.signum or signal.SIGTERM, saved_step)
    seconds = time.perf_counter() - started
    last = run.output / LAST_NAME
    if state.step >= config.steps:
        run.say(f"done: {state.step} steps in {seconds:.1f} s; checkpoint {last}")
    return TrainResult(run.output, last if last.is_file() else None, state.step, start_step,
                       state.step >= config.steps, state.nonfinite["total"] - skipped_before, history, seconds)


def _print_progress_record(config: TrainConfig, step: int, steps_done: int, pairs_per_step: int,
                           seconds: float) -> None:
    """One plain line on stdout after the progress bar, e.g. ``training: 300 pairs (steps 1-150 of 150) in 80.2 s,
    3.74 pairs/s``: a static record of the run, since a notebook stores a progress-bar widget in its first state
    (``0/300``), whatever the bar showed live."""
    pairs = steps_done * pairs_per_step
    rate = f", {pairs / seconds:.2f} pairs/s" if seconds > 0 and pairs else ""
    span = f"steps {step - steps_done + 1}-{step}" if steps_done else "no step"
    print(f"training: {pairs} pairs ({span} of {config.steps}) in {seconds:.1f} s{rate}", flush=True)


def _batches(loader, stop: _StopRequest):
    """The loader's batches; a loader worker killed by the same Ctrl-C ends them quietly once a stop is asked for."""
    iterator = iter(loader)
    while True:
        try:
            yield next(iterator)
        except StopIteration:
            return
        except RuntimeError:
            if stop.signum is None:
                raise
            return


def _diverged(run: _Run, state: RunState) -> TrainingDivergedError:
    last = latest_checkpoint(run.output)
    return TrainingDivergedError(
        f"training stopped at step {state.step}: {state.nonfinite['consecutive']} steps in a row had a non-finite "
        f"loss or gradient ({state.nonfinite['total']} in all) and were skipped. Last checkpoint: "
        f"{last or 'none'}. Try a lower learning rate (--lr), gradient clipping (--grad-clip 1.0) or "
        "--precision fp32/bf16"
    )


# ==============================================================================================================
# Stop signals
# ==============================================================================================================


class _StopRequest:
    """Signal handler for SIGINT/SIGTERM: the first signal asks the loop to stop after its step; a second one
    stops at once (``KeyboardInterrupt``, no checkpoint)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum


@contextmanager
def _stop_requests():
    """Handle SIGINT and SIGTERM with a :class:`_StopRequest` for the ``with`` block (main thread only)."""
    request = _StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    names = [s for s in ("SIGINT", "SIGTERM") if hasattr(signal, s)]
    previous = {name: signal.signal(getattr(signal, name), request) for name in names}
    try:
        yield request
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)


def _stop_for_signal(run: _Run, state: RunState, signum: int, saved_step: int) -> None:
    """Save the last completed step as an "interrupted" checkpoint, then raise what the signal means."""
    name = signal.Signals(signum).name
    if state.step > saved_step:
        run.save(state, interrupted=name)
    last = run.output / LAST_NAME
    message = (f"training stopped by {name} after step {state.step}; checkpoint {last}; continue with "
               f"--resume (resume=True)")
    run.say(message)
    if signum == getattr(signal, "SIGINT", None):
        raise KeyboardInterrupt(message)
    raise TrainingInterrupted(message, exit_status=128 + int(signum))
