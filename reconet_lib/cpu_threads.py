"""How the CPU's worker threads wait: the one rule for OpenMP's wait policy.

PyTorch runs each CPU operation on a team of OpenMP threads (GNU libgomp in the pip wheels). When a thread
finishes its share it *spins* (busy-waits) for a while before it sleeps, because on an otherwise idle machine
the next operation starts within microseconds and waking a sleeping thread costs more. On a machine whose
cores are shared (a learner's laptop with a browser open, a CI runner, several notebooks at once) that habit
backfires: the spinning threads burn the cores the other threads of the same team need, every operation ends
at a barrier that waits for a thread the scheduler has just taken off its core, and small operations, like
those of the quick tutorial models, pay that price thousands of times per step.

Measured on this project's 2-core machine while other processes kept the cores busy (a training step of the
quick recipe, ``benchmarks/quick_recipe.py`` and ``docs/results.md``): with the default (spinning) policy, 2
threads took 21 s of wall time and 3.3 s of CPU per step, 1 thread 5.4 s; with ``OMP_WAIT_POLICY=PASSIVE``,
2 threads took 3.8 s and 0.7 s of CPU. Passive waiting costs little on an idle machine (a few microseconds to
wake a thread per operation), so the library asks for it wherever it starts the process itself.

libgomp reads the policy once, when it is loaded, i.e. when ``torch`` is first imported. So
:func:`wait_passively` must run before that: the ``reconet`` command and ``python -m reconet_lib`` call it
first thing, the notebooks' setup cells call it before anything imports torch, and ``run.sh`` exports
:data:`PASSIVE_WAIT_ENV`. A value the user set already is kept. This module must not import torch.
"""
from __future__ import annotations

import os
import sys

#: The environment that makes OpenMP threads sleep instead of spinning while they wait for work.
PASSIVE_WAIT_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


def wait_passively() -> bool:
    """Ask OpenMP's threads to wait passively (unless the user chose a policy); call it before importing torch.

    Returns:
        True when the request can take effect in this process (torch was not imported yet, or the policy
        was already passive); False when torch is already loaded with another policy: then only a new process
        (a restarted notebook kernel) gets it.
    """
    for key, value in PASSIVE_WAIT_ENV.items():
        os.environ.setdefault(key, value)
    return "torch" not in sys.modules or waits_passively()


def waits_passively() -> bool:
    """Whether this process's environment asks OpenMP for passive waiting."""
    return all(os.environ.get(key, "").upper() == value for key, value in PASSIVE_WAIT_ENV.items())
