"""A non-editable install keeps its data where the user can see it (never inside site-packages)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from reconet_lib import config

REPO = Path(__file__).resolve().parents[1]


def test_data_dir_in_a_source_checkout_is_the_repository_data_folder(monkeypatch):
    monkeypatch.delenv(config.DATA_ENV, raising=False)
    assert config.source_checkout() == REPO
    assert config.data_dir() == REPO / "data"


def test_data_dir_follows_reconet_data(monkeypatch, tmp_path):
    monkeypatch.setenv(config.DATA_ENV, str(tmp_path / "mine"))
    assert config.data_dir() == (tmp_path / "mine").resolve()


@pytest.mark.slow
def test_non_editable_install_puts_data_in_the_working_folder(tmp_path):
    # Build a wheel from a copy of the sources (nothing is written into the repository), install it without
    # dependencies into a fresh venv that borrows this environment's packages, and ask from another folder.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "reconet_lib", source / "reconet_lib", ignore=shutil.ignore_patterns("__pycache__"))
    wheels, venv, work = tmp_path / "wheels", tmp_path / "venv", tmp_path / "work"
    work.mkdir()
    run = lambda *args, **kw: subprocess.run(args, check=True, capture_output=True, text=True, **kw)  # noqa: E731
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source))
    run(sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv))
    python = venv / "bin" / "python"
    site = Path(run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    # This environment's packages (torch, ...) after the venv's own; its .pth files (the editable finder) are not run.
    (site / "zz_borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index",
        *map(str, wheels.glob("*.whl")))
    env = {k: v for k, v in os.environ.items() if k not in (config.DATA_ENV, "PYTHONPATH")}
    probe = "import reconet_lib; from reconet_lib.config import data_dir; print(reconet_lib.__file__); print(data_dir())"
    lines = run(str(python), "-c", probe, cwd=work, env=env).stdout.split()
    assert Path(lines[0]).is_relative_to(site)  # the installed copy, not this checkout
    assert Path(lines[1]) == work.resolve() / "data"
    env[config.DATA_ENV] = str(tmp_path / "chosen")
    assert run(str(python), "-c", probe, cwd=work, env=env).stdout.split()[1] == str((tmp_path / "chosen").resolve())
