"""The install files agree with each other, and the torch pin this project is tested with satisfies them."""
import re
from pathlib import Path

import pytest
import yaml

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11 or newer")

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower()


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_environment_yml_lists_the_same_requirements_as_pyproject():
    project = _pyproject()["project"]
    wanted = set(project["dependencies"]) | set(project["optional-dependencies"]["test"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_block = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = {r for r in pip_block if not r.startswith("-")}
    assert listed == wanted, f"only in pyproject: {wanted - listed}; only in environment.yml: {listed - wanted}"


def test_dependencies_are_ranges_that_the_tested_torch_satisfies():
    from packaging.specifiers import SpecifierSet

    deps = {_name(r): r for r in _pyproject()["project"]["dependencies"]}
    for name, version in (("torch", "2.14.1"), ("torchvision", "0.29.1")):
        spec = SpecifierSet(deps[name][len(name):])
        assert version in spec, f"{deps[name]} excludes the tested {name} {version}"
        assert "==" not in deps[name], f"{deps[name]} is a pin; use a range"


def test_every_text_that_must_spell_out_the_repository_address_agrees_with_config():
    """Colab setup cells and README badges run before the library is installed, so they name the repository
    literally; tools/set_repository.py rewrites them all, and this keeps them equal to REPOSITORY_URL."""
    from reconet_lib.config import REPOSITORY_URL

    found = {}
    for path in [ROOT / "README.md", *sorted((ROOT / "notebooks").glob("*.ipynb"))]:
        for url in re.findall(r"https://github\.com/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", path.read_text()):
            if "reconet" in url.lower() and "Real-time-Coherent" not in url:
                found.setdefault(url.removesuffix(".git"), []).append(path.name)
    assert set(found) == {REPOSITORY_URL}, found
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    for path in notebooks:
        assert f'REPO = \\"{REPOSITORY_URL}\\"' in path.read_text(), f"{path.name}: no REPO line in its setup cell"


def test_set_repository_rewrites_every_copy_of_the_address(tmp_path):
    import shutil
    import subprocess
    import sys

    copy = tmp_path / "repo"
    for part in ("reconet_lib/config.py", "README.md", "tools/set_repository.py"):
        (copy / part).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / part, copy / part)
    shutil.copytree(ROOT / "notebooks", copy / "notebooks")
    done = subprocess.run([sys.executable, str(copy / "tools" / "set_repository.py"), "https://github.com/someone/fork"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    from reconet_lib.config import REPOSITORY_URL

    for path in [copy / "reconet_lib/config.py", copy / "README.md", *(copy / "notebooks").glob("*.ipynb")]:
        text = path.read_text()
        assert REPOSITORY_URL not in text and "someone/fork" in text, path.name
    assert "colab.research.google.com/github/someone/fork/blob/main/notebooks" in (copy / "README.md").read_text()


def test_the_test_command_installs_every_extra_whose_tests_skip_without_it():
    """run.sh test (and so CI) installs the extras the suite needs: without one its tests only skip, and a green
    run would hide that the feature went untested (the openvino backend did, once)."""
    line = next(l for l in (ROOT / "run.sh").read_text().splitlines() if l.strip().startswith("local extras="))
    installed = set(re.search(r'extras="([^"]+)"', line).group(1).split(","))
    optional = set(re.findall(r"^(\w+) = \[", (ROOT / "pyproject.toml").read_text().split("[project.optional-dependencies]")[1]
                              .split("\n[")[0], flags=re.M))
    assert {"test", "export", "openvino"} <= installed <= optional, (installed, optional)
