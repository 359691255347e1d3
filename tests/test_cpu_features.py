"""The torch-free half of the precision policy: bfloat16 for runtimes with their own kernels only where the CPU has
it natively and no AVX2-only setting is in force; the override wins; nothing here imports torch."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconet_lib import cpu_features, precision
from reconet_lib.errors import UserInputError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def clean_env(monkeypatch):
    for name in (*cpu_features.AVX2_ONLY_ENV, cpu_features.CPU_BF16_ENV):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("flags, expected", [
    (frozenset({"avx2", "avx512f", "avx512_bf16"}), "bf16"),
    (frozenset({"avx2", "amx_tile"}), "bf16"),
    (frozenset({"avx2", "avx512f"}), "f32"),
    (frozenset({"avx2"}), "f32"),
])
def test_bf16_only_where_the_cpu_flags_say_native(clean_env, flags, expected):
    clean_env.setattr(cpu_features, "cpu_flags", lambda: flags)
    assert cpu_features.runtime_precision(lambda: pytest.fail("flags are known"))[0] == expected


@pytest.mark.parametrize("runtime_says, expected", [(True, "bf16"), (False, "f32")])
def test_without_os_flags_the_runtime_is_asked(clean_env, runtime_says, expected):
    clean_env.setattr(cpu_features, "cpu_flags", lambda: None)
    assert cpu_features.runtime_precision(lambda: runtime_says)[0] == expected


@pytest.mark.parametrize("name", sorted(cpu_features.AVX2_ONLY_ENV))
def test_each_avx2_only_setting_means_float32(clean_env, name):
    clean_env.setattr(cpu_features, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    clean_env.setenv(name, cpu_features.AVX2_ONLY_ENV[name].lower())
    precision_, reason = cpu_features.runtime_precision(lambda: True)
    assert precision_ == "f32" and name in reason


def test_the_override_wins_and_a_bad_value_is_one_line(clean_env):
    clean_env.setattr(cpu_features, "cpu_flags", lambda: frozenset())
    clean_env.setenv(cpu_features.CPU_BF16_ENV, "1")
    assert cpu_features.runtime_precision(lambda: False)[0] == "bf16"
    clean_env.setenv(cpu_features.CPU_BF16_ENV, "0")
    for name, value in cpu_features.AVX2_ONLY_ENV.items():
        clean_env.setenv(name, value)
    assert cpu_features.runtime_precision(lambda: True)[0] == "f32"
    clean_env.setenv(cpu_features.CPU_BF16_ENV, "maybe")
    with pytest.raises(UserInputError, match="RECONET_CPU_BF16='maybe' is not understood"):
        cpu_features.runtime_precision(lambda: True)


def test_the_torch_policy_reads_the_same_facts():
    assert precision.cpu_flags is cpu_features.cpu_flags
    assert precision.AVX2_ONLY_ENV is cpu_features.AVX2_ONLY_ENV


def test_the_module_imports_no_torch():
    done = subprocess.run([sys.executable, "-c", "import sys, reconet_lib.cpu_features; print('torch' in sys.modules)"],
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr
