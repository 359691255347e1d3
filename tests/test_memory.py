"""Reusing freed memory: with the setting, CPU inference stops paying page faults for fresh memory every frame."""
import os
import platform
import subprocess
import sys

import pytest

from reconet_lib import memory

# Five forward passes of the prepared tiny network on a frame whose full-resolution maps exceed glibc's 32 MiB mmap
# limit (8 channels x 1280 x 1024 floats = 40 MiB); count the minor page faults of the last three.
_FAULTS = """
import resource, torch
from reconet_lib import memory
from reconet_lib.inference import optimize_for_inference
from reconet_lib.network import ReCoNet
torch.manual_seed(0)
fast = optimize_for_inference(ReCoNet.from_preset("tiny"), "cpu", dtype=torch.float32)
x = torch.rand(1, 3, 1024, 1280)
with torch.inference_mode():
    for _ in range(2):
        fast(x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        fast(x)
print(memory.retain_freed_memory(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

glibc_only = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="mallopt is glibc's; elsewhere retain_freed_memory does nothing")


def _faults(setting: str) -> tuple[str, int]:
    env = {**os.environ, memory.RETAIN_ENV: setting}
    done = subprocess.run([sys.executable, "-c", _FAULTS], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    on, faults = done.stdout.split()
    return on, int(faults)


@glibc_only
def test_inference_on_the_cpu_reuses_freed_memory_instead_of_faulting_in_fresh_pages():
    on, faults_on = _faults("1")
    off, faults_off = _faults("0")
    assert (on, off) == ("True", "False")
    page = os.sysconf("SC_PAGE_SIZE")
    assert faults_off > 3 * 40 * 2**20 // page, f"without the setting only {faults_off} page faults: test too weak"
    assert faults_on < faults_off / 5, f"{faults_on} page faults with the setting vs {faults_off} without"


def test_the_setting_is_made_once_and_reported_the_same_afterwards():
    first = memory.retain_freed_memory()
    assert memory.retain_freed_memory() is first
