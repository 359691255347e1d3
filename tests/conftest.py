"""Suite-wide settings: no test may reach the internet by accident.

``RECONET_OFFLINE=1`` switches the resource policy's downloads off for every test
(:mod:`reconet_lib.resources`); tests of downloads unset it and talk to a server on 127.0.0.1.
"""
import os

import pytest
import torch

from reconet_lib.network import ReCoNet


@pytest.fixture(scope="module")
def tiny():
    """A ``tiny`` ReCoNet in eval mode whose instance norms have non-trivial affine parameters (seeded), so that an
    exported or rewritten normalisation that drops them shows (tests of export and of the OpenVINO backend)."""
    torch.manual_seed(0)
    model = ReCoNet.from_preset("tiny").eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.InstanceNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model


@pytest.fixture(autouse=True)
def _offline_by_default(monkeypatch):
    monkeypatch.setenv("RECONET_OFFLINE", "1")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` are skipped without a GPU (``RECONET_CUDA_TESTS_ON_CPU=1`` runs them on the CPU)."""
    marked = [item for item in items if "cuda" in item.keywords]
    if not marked or os.environ.get("RECONET_CUDA_TESTS_ON_CPU") == "1":
        return
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (a GPU); RECONET_CUDA_TESTS_ON_CPU=1 runs it against the CPU")
    for item in marked:
        item.add_marker(skip)
