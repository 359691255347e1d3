"""The training log: ``log.jsonl`` records (every loss term averaged over a window of steps), reading and
plotting them.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..files import atomic_write_text
from ..losses import LOSS_TERMS

LOG_NAME = "log.jsonl"
#: The values summed per step (weighted terms, the total and the raw terms).
LOGGED = ("total", *LOSS_TERMS, *(f"{t}_raw" for t in LOSS_TERMS))


class LogWindow:
    """Sums of the logged values since the last log line (part of the checkpoint, so resuming is exact)."""

    def __init__(self, state: Mapping | None = None) -> None:
        state = dict(state or {})
        self.sums = {k: float(v) for k, v in state.get("sums", {}).items()}
        self.count = int(state.get("count", 0))
        self.skipped = int(state.get("skipped", 0))
        self.grad_norm = float(state.get("grad_norm", 0.0))
        self.grad_count = int(state.get("grad_count", 0))

    def add(self, values: Mapping[str, float], grad_norm: float | None) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.count += 1
        if grad_norm is not None:
            self.grad_norm += grad_norm
            self.grad_count += 1

    def state(self) -> dict:
        return {"sums": dict(self.sums), "count": self.count, "skipped": self.skipped,
                "grad_norm": self.grad_norm, "grad_count": self.grad_count}


def log_record(step: int, window: LogWindow, lr: float, seconds: float, samples_per_step: int) -> dict:
    """The ``log.jsonl`` record of ``step``: the window's means, the step's learning rate, skipped steps, speed."""
    record: dict[str, Any] = {"step": step, "lr": lr}
    if window.count:
        record.update({k: v / window.count for k, v in window.sums.items()})
    if window.grad_count:
        record["grad_norm"] = window.grad_norm / window.grad_count
    record["skipped"] = window.skipped
    steps_in_window = window.count + window.skipped
    if seconds > 0 and steps_in_window:
        record["pairs_per_s"] = steps_in_window * samples_per_step / seconds
    return record


def read_log(source: str | os.PathLike) -> list[dict]:
    """The records of a ``log.jsonl`` (or of ``<folder>/log.jsonl``), in order."""
    path = Path(source)
    if path.is_dir():
        path = path / LOG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"training log {path} does not exist; train first (it is written every log_every steps)")
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                records.append(json.loads(line))
            except ValueError:  # a line cut short by a crash: ignore it
                continue
    return records


def truncate_log(path: Path, last_step: int) -> None:
    """Keep only the records up to ``last_step`` (what a resume from that step must not repeat)."""
    if not path.is_file():
        return
    kept = [r for r in read_log(path) if r.get("step", 0) <= last_step]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


def append_record(path: Path, record: dict) -> None:
    """Append one JSON line to the log (a full disk raises ``OSError``; earlier lines stay)."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def plot_losses(source, *, raw: bool = False, terms: Sequence[str] | None = None, dpi: int = 75):
    """A figure of the logged loss terms against the step.

    Args:
        source: a ``log.jsonl``, a run folder, or ``{label: log or folder}`` to overlay several runs.
        raw: plot the unweighted terms (``<term>_raw``) instead of the weighted ones.
        terms: which terms (default ``total`` and the five terms of :data:`~reconet_lib.losses.LOSS_TERMS`).
        dpi: figure resolution.
    Returns:
        a ``matplotlib.figure.Figure`` (not registered with pyplot; display it or ``savefig`` it).
    """
    from matplotlib.figure import Figure  # in function: matplotlib takes a second or more to import; only plots need it

    runs = dict(source) if isinstance(source, Mapping) else {None: source}
    terms = list(terms) if terms is not None else ["total", *LOSS_TERMS]
    cols = min(3, len(terms))
    rows = math.ceil(len(terms) / cols)
    fig = Figure(figsize=(4.0 * cols, 2.8 * rows), dpi=dpi, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for (label, run) in runs.items():
        records = read_log(run)
        for ax, term in zip(axes, terms):
            key = term if (term == "total" or not raw) else f"{term}_raw"
            points = [(r["step"], r[key]) for r in records if key in r]
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, label=label)
    for ax, term in zip(axes, terms):
        ax.set_title(term if (term == "total" or not raw) else f"{term} (unweighted)", fontsize=10)
        ax.set_xlabel("step")
        values = [v for line in ax.get_lines() for v in line.get_ydata()]
        if values and min(values) > 0 and max(values) / min(values) > 20:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        if len(runs) > 1 and ax is axes[0]:
            ax.legend(fontsize=9)
    for ax in axes[len(terms):]:
        ax.set_visible(False)
    return fig
