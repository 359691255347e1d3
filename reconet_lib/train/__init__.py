"""Training ReCoNet: configuration, data order, the loop, checkpoints and resuming, logging, the tutorial's runs
and the ``train`` command.

One training step takes a batch of frame pairs (``current``, ``previous``, ``flow`` current -> previous,
``valid``; see ``docs/design.md``), runs the network on both frames and minimises the paper's total loss over
the pair (:func:`reconet_lib.losses.pair_losses`): content, style and total-variation terms on both frames plus
the feature-map and output temporal terms once per pair. The optimiser is Adam.

Modules (each imported here, so ``from reconet_lib.train import X`` works for every public name):

* :mod:`.config`: :class:`TrainConfig` (every field with its command-line help), data sources, config files.
* :mod:`.sampling`: the data as a function of ``(seed, step)``: :class:`SampleStream`, :class:`StepBatches`,
  :func:`build_dataset` and the one loader, :func:`make_step_loader`.
* :mod:`.state`: :class:`RunState`, everything a step changes (model, Adam, ``LambdaLR`` schedule, gradient
  scaler, step, RNG, log window), saved and restored by checkpoints as a whole.
* :mod:`.step`: :func:`train_step`, one optimisation step (the loop's and the GPU check's), and :class:`PairLoss`.
* :mod:`.loop`: :func:`train`; SIGINT/SIGTERM save the last completed step before stopping.
* :mod:`.log`: ``log.jsonl`` records, :func:`read_log`, :func:`plot_losses`.
* :mod:`.processes`: several processes under ``torchrun`` (``DistributedDataParallel``, NCCL or Gloo).
* :mod:`.recipe`: the full-mode recipe on real frames (:data:`RECIPE`, :func:`full_recipe`, :func:`prepare_sintel`).
* :mod:`.tutorial`: :func:`tutorial_config` and :func:`ensure_tutorial_checkpoints` for the notebooks.
* :mod:`.command`: ``reconet train``, its options made from :class:`TrainConfig`'s fields.

What the loop takes care of:

* **Mixed precision**: ``precision="auto"`` asks :func:`reconet_lib.precision.training_precision` (bf16 autocast
  on GPUs that support it, fp16 with a gradient scaler on older GPUs, float32 on the CPU). The losses themselves
  are computed in float32.
* **A non-finite guard**: a step whose loss or gradient is NaN/inf is skipped (no parameter update) and counted;
  after ``max_nonfinite`` such steps in a row training stops with :class:`TrainingDivergedError`.
* **Checkpoints** every ``checkpoint_every`` steps and at the end: ``last.pt`` and ``step_0001000.pt``, written
  atomically and read back before they replace anything (:mod:`reconet_lib.checkpoint`), the oldest deleted
  beyond ``keep_last``. ``reconet_lib.load_model(path)`` turns any of them into a ready-to-run model.
* **Exact resuming**: the data a step sees is a function of ``(seed, step)`` only, and the checkpoint holds the
  whole :class:`RunState`, so ``resume=True`` after an interruption at any step continues the very same loss
  trajectory (bit-identical on the CPU in float32). A resume refuses a ``last.pt`` of another run, one older
  than the folder's newest ``step_*.pt``, or a damaged one, naming the file to delete and the one to use.
* **Logging**: every ``log_every`` steps one JSON line with every loss term (weighted and raw, averaged over the
  steps since the last line) is appended to ``<output>/log.jsonl``; :func:`plot_losses` draws it.
* **Several GPUs**: started with ``torchrun --nproc_per_node N -m reconet_lib train ...`` the same code wraps the
  model in ``DistributedDataParallel``; each process reads its own share of the samples and process 0 alone
  writes checkpoints and logs.
"""
from ..checkpoint import LAST_NAME, LOCK_NAME, checkpoint_files, exclusive, latest_checkpoint
from .command import add_train_command, config_from_args, run_train_command
from .config import CONFIG_NAME, DATA_KINDS, LR_SCHEDULES, RESUME_FIELDS, TrainConfig, normalize_sources, parse_data_spec
from .log import LOG_NAME, plot_losses, read_log
from .loop import TrainingDivergedError, TrainResult, model_config_of, train
from .recipe import RECIPE, RecipeValue, colab_time_estimate, full_recipe, prepare_sintel
from .sampling import SampleStream, StepBatches, build_dataset, default_num_workers, make_step_loader
from .state import RunState, lr_factor, make_scheduler
from .step import PairLoss, StepResult, train_step
from .tutorial import TUTORIAL_VERSION, ensure_tutorial_checkpoints, tutorial_config

__all__ = [
    "CONFIG_NAME", "DATA_KINDS", "LAST_NAME", "LOCK_NAME", "LOG_NAME", "LR_SCHEDULES", "PairLoss", "RECIPE",
    "RESUME_FIELDS", "RecipeValue", "RunState", "SampleStream", "StepBatches", "StepResult", "TUTORIAL_VERSION",
    "TrainConfig", "TrainResult", "TrainingDivergedError", "add_train_command", "build_dataset", "checkpoint_files",
    "colab_time_estimate", "config_from_args", "default_num_workers", "ensure_tutorial_checkpoints", "exclusive",
    "full_recipe", "latest_checkpoint", "lr_factor", "make_scheduler", "make_step_loader", "model_config_of",
    "normalize_sources", "parse_data_spec", "plot_losses", "prepare_sintel", "read_log", "run_train_command", "train",
    "train_step", "tutorial_config",
]
