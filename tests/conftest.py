"""Suite-wide settings: no test may reach the internet by accident.

``RECONET_OFFLINE=1`` switches the resource policy's downloads off for every test
(:mod:`reconet_lib.resources`); tests of downloads unset it and talk to a server on 127.0.0.1.
"""
import pytest


@pytest.fixture(autouse=True)
def _offline_by_default(monkeypatch):
    monkeypatch.setenv("RECONET_OFFLINE", "1")
