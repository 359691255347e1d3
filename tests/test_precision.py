"""The one device and precision policy: each decision pinned, and the AVX2-only emulation really answers float32."""
import os
import subprocess
import sys

import pytest
import torch

from reconet_lib import precision
from reconet_lib.errors import UserInputError

AVX2_ONLY = precision.AVX2_ONLY_ENV


@pytest.fixture
def fresh_policy(monkeypatch):
    """Clear the per-process cache before and after, and drop any override from the environment."""
    monkeypatch.delenv(precision.CPU_BF16_ENV, raising=False)
    precision.cpu_precision_report.cache_clear()
    yield monkeypatch
    precision.cpu_precision_report.cache_clear()


def _cpu(monkeypatch, *, hardware: bool, onednn: bool):
    monkeypatch.setattr(precision, "_hardware_bf16", lambda: hardware)
    monkeypatch.setattr(precision, "_onednn_bf16", lambda: onednn)
    monkeypatch.setattr(precision, "probe_bf16_ratio", lambda budget_s=0.1: pytest.fail("the decision must not time"))


def test_cpu_with_native_bf16_gets_bf16(fresh_policy):
    _cpu(fresh_policy, hardware=True, onednn=True)
    assert precision.cpu_bf16_native()
    assert precision.inference_dtype("cpu") == torch.bfloat16
    assert precision.inference_autocast("cpu") == torch.bfloat16


def test_cpu_without_bf16_instructions_gets_fp32(fresh_policy):
    _cpu(fresh_policy, hardware=False, onednn=True)
    assert not precision.cpu_bf16_native()
    assert precision.inference_dtype("cpu") == torch.float32
    assert precision.inference_autocast("cpu") is None
    assert "no native bfloat16" in precision.describe("cpu")


def test_cpu_whose_onednn_is_capped_below_bf16_gets_fp32(fresh_policy):
    _cpu(fresh_policy, hardware=True, onednn=False)
    assert precision.inference_dtype("cpu") == torch.float32
    assert "emulated" in precision.describe("cpu")


def test_cpu_bf16_environment_override(fresh_policy):
    _cpu(fresh_policy, hardware=False, onednn=False)
    fresh_policy.setenv(precision.CPU_BF16_ENV, "1")
    assert precision.inference_dtype("cpu") == torch.bfloat16
    precision.cpu_precision_report.cache_clear()
    fresh_policy.setenv(precision.CPU_BF16_ENV, "maybe")
    with pytest.raises(UserInputError, match="RECONET_CPU_BF16"):
        precision.cpu_bf16_native()


def test_decision_is_cached_once_per_process(fresh_policy):
    calls = []
    fresh_policy.setattr(precision, "_hardware_bf16", lambda: calls.append(1) or False)
    fresh_policy.setattr(precision, "_onednn_bf16", lambda: False)
    precision.cpu_bf16_native()
    precision.cpu_bf16_native()
    assert calls == [1]


@pytest.mark.parametrize(
    "capability, inference, training",
    [
        ((9, 0), torch.float16, (torch.bfloat16, False)),  # H100
        ((8, 0), torch.float16, (torch.bfloat16, False)),  # A100
        ((7, 5), torch.float16, (torch.float16, True)),  # T4 (Colab)
        ((6, 0), torch.float32, (torch.float16, True)),  # P100: no tensor cores
    ],
)
def test_cuda_precision_follows_compute_capability(monkeypatch, capability, inference, training):
    monkeypatch.setattr(precision, "_cuda_capability", lambda device: capability)
    assert precision.inference_dtype("cuda:0") == inference
    assert precision.training_precision("cuda:0", "auto") == training
    assert precision.inference_autocast("cuda:0", half=True) == torch.float16


def test_cuda_bf16_training_on_an_older_gpu_is_refused(monkeypatch):
    monkeypatch.setattr(precision, "_cuda_capability", lambda device: (7, 5))
    with pytest.raises(UserInputError, match="compute capability 8.0"):
        precision.training_precision("cuda:0", "bf16")


def test_training_on_the_cpu_is_fp32_by_default_and_bf16_on_request():
    assert precision.training_precision("cpu", "auto") == (None, False)
    assert precision.training_precision("cpu", "fp32") == (None, False)
    assert precision.training_precision("cpu", "bf16") == (torch.bfloat16, False)
    with pytest.raises(UserInputError, match="needs a CUDA GPU"):
        precision.training_precision("cpu", "fp16")
    with pytest.raises(UserInputError, match="not one of"):
        precision.training_precision("cpu", "half")


def test_forcing_fp32_always_wins():
    assert precision.inference_autocast("cpu", half=False) is None
    assert precision.inference_autocast("cpu", half=True) == torch.bfloat16


@pytest.mark.parametrize("device, dtype, avx512, channels, expected", [
    ("cpu", torch.float32, False, None, True),
    ("cpu", torch.float32, False, 64, True),
    ("cpu", torch.float32, False, 192, True),
    ("cpu", torch.float32, False, 32, False),
    ("cpu", torch.float64, False, None, True),
    ("cpu", torch.float32, True, 192, False),
    ("cpu", torch.bfloat16, False, 192, False),
    ("cuda", torch.float32, False, 192, False),
    ("cuda", torch.float16, False, 192, False),
])
def test_winograd_is_used_for_wide_float32_layers_where_convolutions_lack_avx512(monkeypatch, device, dtype, avx512,
                                                                                 channels, expected):
    monkeypatch.setattr(precision, "onednn_avx512", lambda: avx512)
    monkeypatch.setattr(precision.platform, "machine", lambda: "x86_64")
    assert precision.inference_winograd(device, dtype, channels) is expected


def test_winograd_is_not_used_on_arm_cpus_where_it_was_never_measured(monkeypatch):
    monkeypatch.setattr(precision, "onednn_avx512", lambda: False)
    monkeypatch.setattr(precision.platform, "machine", lambda: "aarch64")
    assert precision.inference_winograd("cpu", torch.float32) is False


@pytest.mark.parametrize("cap, expected", [("AVX2", False), ("avx2", False), ("SSE41", False), ("AVX2_VNNI", False),
                                           ("AVX512_CORE", True), ("AVX512_CORE_AMX", True), ("", True)])
def test_onednn_isa_cap_decides_whether_convolutions_have_avx512(monkeypatch, cap, expected):
    """The convolutions' ISA is oneDNN's: torch's own capability string (ATEN_CPU_CAPABILITY) does not decide."""
    monkeypatch.setattr(precision, "cpu_has_avx512", lambda: True)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    assert precision.onednn_avx512() is expected
    monkeypatch.setattr(precision, "cpu_has_avx512", lambda: False)
    assert precision.onednn_avx512() is False


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo"), reason="reads Linux CPU flags")
def test_cpu_avx512_flag_is_read_from_the_operating_system_not_from_torch_settings():
    """ATEN_CPU_CAPABILITY lowers torch's own kernels, not what the CPU has: the flag must ignore it."""
    script = "from reconet_lib import precision; print(precision.cpu_has_avx512())"
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2"}
    lowered = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        flags = next(line for line in handle if line.startswith("flags")).split()
    assert lowered.stdout.strip() == str("avx512f" in flags)


def test_precision_names():
    assert precision.precision_name(None) == "fp32"
    assert precision.precision_name(torch.bfloat16) == "bf16"
    assert precision.precision_name(torch.float16, True) == "fp16 + gradient scaler"


@pytest.mark.parametrize("spec, expected", [(None, "cpu"), ("auto", "cpu"), ("cpu", "cpu"), (" CPU ".lower(), "cpu")])
def test_parse_device_without_cuda(monkeypatch, spec, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert precision.parse_device(spec) == torch.device(expected)


@pytest.mark.parametrize("spec, message", [("gpu0", "not a device name"), ("cuda", "CUDA is not available"),
                                           ("cuda:1", "CUDA is not available"), ("meta", "not supported")])
def test_parse_device_refuses_what_this_machine_cannot_do(monkeypatch, spec, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserInputError, match=message):
        precision.parse_device(spec)


def test_parse_device_refuses_a_gpu_index_that_does_not_exist(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(UserInputError, match="does not exist"):
        precision.parse_device("cuda:3")
    assert precision.parse_device("cuda:0") == torch.device("cuda", 0)


def _in_subprocess(code: str, env: dict) -> str:
    full = {**os.environ, **env}
    full.pop(precision.CPU_BF16_ENV, None)
    done = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_avx2_only_emulation_makes_the_policy_answer_fp32():
    """The settings CI uses to stand in for an AVX2-only CPU (any machine) lead to float32 everywhere."""
    out = _in_subprocess(
        "import torch; from reconet_lib import precision as p; "
        "print(torch.backends.cpu.get_cpu_capability(), p.inference_dtype('cpu'), p.training_precision('cpu'), "
        "p.inference_winograd('cpu', p.inference_dtype('cpu')))",
        AVX2_ONLY,
    )
    assert out == "AVX2 torch.float32 (None, False) True"


def test_the_emulation_really_makes_bf16_slower_than_fp32():
    """The AVX2-only settings reproduce the slowdown, not only the flags: a bf16 convolution is measured slower."""
    out = _in_subprocess("from reconet_lib import precision as p; print(p.probe_bf16_ratio(0.1))", AVX2_ONLY)
    assert float(out) > 1.5, f"emulated bf16 measured at {out} x the time of fp32"


@pytest.mark.parametrize("owner, name", sorted(precision.PRIVATE_TORCH_HELPERS))
def test_every_private_torch_helper_the_policy_calls_exists_in_this_torch(owner, name):
    """The library's one use of private torch names: an upgrade that removes one must fail here, not decide fp32."""
    namespace = {"torch.cpu": torch.cpu, "torch.ops.mkldnn": torch.ops.mkldnn}[owner]
    assert callable(getattr(namespace, name, None)), f"{owner}.{name} is gone: find its replacement"
    assert isinstance(precision._private_torch_check(owner, name), bool)


def test_only_listed_private_torch_helpers_can_be_called():
    with pytest.raises(KeyError):
        precision._private_torch_check("torch.cpu", "_is_avx512_supported")


@pytest.mark.skipif(precision.cpu_flags() is None, reason="reads Linux CPU flags")
def test_the_os_cpu_flags_and_torch_cpuid_agree_on_bf16_hardware():
    """On Linux the flags come from /proc/cpuinfo; elsewhere torch's cpuid helpers: both must say the same."""
    from_cpuid = any(precision._private_torch_check("torch.cpu", name)
                     for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    assert precision._hardware_bf16() == from_cpuid


def test_autocast_of_no_dtype_is_float32_and_of_a_dtype_is_torch_autocast():
    with precision.autocast("cpu", None):
        assert not torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with precision.autocast(torch.device("cpu"), torch.bfloat16):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    precision.synchronize("cpu")  # nothing to wait for on the CPU, and no error
