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
