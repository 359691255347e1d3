"""Suite-wide settings: no test may reach the internet by accident.

``RECONET_OFFLINE=1`` switches the resource policy's downloads off for every test
(:mod:`reconet_lib.resources`); tests of downloads unset it and talk to a server on 127.0.0.1.
"""
import os

import pytest
import torch


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
