"""Notebook 06 runs as it runs on Colab: the package installed non-editable, the notebook in an empty folder.

Colab's setup cell does ``pip install git+<repository>``: pip copies the sources, builds a wheel and installs it
into site-packages, dependencies resolved against what the runtime already has. This test does the same with a
copy of the sources, into a fresh virtual environment that borrows this environment's packages (torch and the
rest) through a path file, so no network and no second torch are needed: ``--no-index`` makes pip resolve every
declared dependency from what is there, and fail if one is missing. Then notebook 06, opened straight from its
badge (no notebook 05 before it, no repository around it), runs top to bottom in an empty folder, in quick mode and
offline; it must train its models, write only under ``./data`` there, and print nothing on stderr.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "06_video_stylization.ipynb"
INSTALL_TIMEOUT_S = 300
NOTEBOOK_TIMEOUT_S = 1500  # the whole notebook, both tutorial models trained from scratch included


def _run(*args, timeout, **kwargs):
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, args))} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _colab_like_environment(tmp_path: Path) -> Path:
    """A fresh venv with reconet_lib installed the way ``pip install git+URL`` installs it; returns its python."""
    source = tmp_path / "source"  # what pip's git clone would hold: the package and its build files
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "reconet_lib", source / "reconet_lib", ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", str(venv), timeout=60)
    python = venv / "bin" / "python"
    site = Path(_run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", timeout=60).stdout.strip())
    # This environment's packages come after the venv's own; their .pth files (this checkout's editable finder)
    # are not run, so the only reconet_lib the venv can import is the one installed below.
    (site / "zz_borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    _run(sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--disable-pip-version-check",
         "--no-index", "--no-build-isolation", str(source), env=env, timeout=INSTALL_TIMEOUT_S)
    # The kernel the notebook runs in must be this venv's python, whatever kernels the machine has registered.
    _run(str(python), "-m", "ipykernel", "install", "--sys-prefix", env={**env, "JUPYTER_DATA_DIR": str(tmp_path / "jd")},
         timeout=120)
    return python


@pytest.mark.slow
def test_notebook_06_runs_from_an_empty_folder_on_a_non_editable_install(tmp_path):
    python = _colab_like_environment(tmp_path)
    work = tmp_path / "content"  # Colab's working folder: empty, no repository anywhere near
    work.mkdir()
    shutil.copy(NOTEBOOK, work / NOTEBOOK.name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RECONET_DATA")}
    env.update(RECONET_QUICK="1", RECONET_OFFLINE="1", JUPYTER_DATA_DIR=str(tmp_path / "jd"),
               JUPYTER_CONFIG_DIR=str(tmp_path / "jc"), IPYTHONDIR=str(tmp_path / "ipython"))
    where = _run(str(python), "-c", "import reconet_lib; print(reconet_lib.__file__)", cwd=work, env=env, timeout=120)
    assert Path(where.stdout.strip()).is_relative_to(python.parent.parent), where.stdout  # the installed copy

    start = time.monotonic()
    _run(str(python), "-m", "nbconvert", "--to", "notebook", "--execute", "--log-level=WARN",
         "--ExecutePreprocessor.timeout=900", "--output", "executed.ipynb", NOTEBOOK.name,
         cwd=work, env=env, timeout=NOTEBOOK_TIMEOUT_S)
    elapsed = time.monotonic() - start
    executed = json.loads((work / "executed.ipynb").read_text())
    stderr = [o.get("text", "") for c in executed["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "stream" and o.get("name") == "stderr"]
    assert not stderr, f"notebook 06 wrote to stderr: {stderr}"
    outputs = "".join(str(o.get("text", "")) for c in executed["cells"] if c["cell_type"] == "code"
                      for o in c.get("outputs", []))
    assert f"data folder: {(work / 'data').resolve()}" in outputs  # ./data of the working folder, as on Colab
    assert (work / "data" / "nb06" / "stylised.mp4").is_file()
    trained = {p.name.split("-")[0] for p in (work / "data" / "checkpoints" / "quick").iterdir() if (p / "last.pt").is_file()}
    assert trained == {"baseline", "reconet"}, trained  # both tutorial models, trained because nothing was cached
    assert not list(python.parent.parent.rglob("lib/python*/site-packages/data")), "data written into site-packages"
    print(f"notebook 06 from an empty folder: {elapsed:.0f} s")


def test_notebooks_link_the_repository_files_they_mention():
    """An installed package has no docs/ or benchmarks/ folder: every mention in a notebook's text is a link."""
    import re

    from reconet_lib.config import REPOSITORY_URL

    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] != "markdown":
                continue
            text = "".join(cell["source"])
            for mention in set(re.findall(r"(?:docs|benchmarks)/\w+\.(?:md|py)", text)):
                assert f"{REPOSITORY_URL}/blob/main/{mention}" in text, f"{path.name}: {mention} named without a link"


def test_every_exercise_has_a_difficulty_and_a_hint():
    import re

    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        exercises = text.split("## Exercises", 1)[1]
        items = re.findall(r"^\d+\. (.*)$", exercises, re.M)
        assert items, f"{path.name}: no exercises"
        for item in items:
            assert re.match(r"★{1,3} ", item), f"{path.name}: exercise without a difficulty: {item[:60]}"
        assert exercises.count("<summary>Hint</summary>") >= len(items), f"{path.name}: an exercise has no hint"
        assert "<details><summary>Solution" in text, f"{path.name}: no solutions"


@pytest.mark.parametrize("download_sintel", [False, True, None])
def test_tutorial_models_start_the_sintel_download_only_when_asked(monkeypatch, tmp_path, download_sintel):
    """Full mode: the notebooks' DOWNLOAD_SINTEL flag reaches the resource policy (None: $RECONET_OFFLINE decides)."""
    from reconet_lib.train import recipe
    from reconet_lib.train import tutorial

    allowed = []
    monkeypatch.setattr(recipe, "prepare_sintel", lambda **kwargs: allowed.append(kwargs.get("allow_download")) or tmp_path)
    monkeypatch.setattr(tutorial, "train", lambda config, **kwargs: None)
    tutorial.ensure_tutorial_checkpoints(False, "cpu", output_dir=tmp_path / "runs", download_sintel=download_sintel)
    assert allowed == [download_sintel]
