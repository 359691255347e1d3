"""The OpenMP wait policy (reconet_lib.cpu_threads): asked for before torch loads, a user's choice kept."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from reconet_lib import cpu_threads

ROOT = Path(__file__).resolve().parents[1]

# Records the wait policy in the environment at the moment `torch` is first imported, then runs CODE.
_PROBE = textwrap.dedent('''
    import importlib.abc, os, sys
    seen = {}
    class Probe(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" and "at_torch_import" not in seen:
                seen["at_torch_import"] = os.environ.get("OMP_WAIT_POLICY")
            return None
    sys.meta_path.insert(0, Probe())
    CODE
    print("policy when torch loaded:", seen.get("at_torch_import"))
''')


def _run_probe(code: str, **env) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    environ.update(env)
    environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), environ.get("PYTHONPATH", "")])
    result = subprocess.run([sys.executable, "-c", _PROBE.replace("CODE", code)], capture_output=True, text=True,
                            env=environ, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_wait_passively_sets_the_policy_and_keeps_a_users_choice(monkeypatch):
    import torch  # noqa: F401 - loaded, as in a notebook kernel that imported it already

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    cpu_threads.wait_passively()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE" and cpu_threads.waits_passively()
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert cpu_threads.wait_passively() is False  # torch is loaded here with the user's policy
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE" and not cpu_threads.waits_passively()


def test_the_module_does_not_import_torch():
    out = _run_probe("import reconet_lib.cpu_threads; print('torch' in sys.modules)")
    assert out.splitlines()[0] == "False"


def test_the_command_line_asks_for_passive_waiting_before_torch_loads():
    out = _run_probe("import reconet_lib.cli as cli; cli.build_parser()")
    assert "policy when torch loaded: PASSIVE" in out


def test_python_m_reconet_lib_asks_for_it_before_torch_loads():
    out = _run_probe("import runpy; sys.argv = ['reconet', '--help']\n"
                     "try:\n    runpy.run_module('reconet_lib', run_name='__main__')\nexcept SystemExit:\n    pass")
    assert "policy when torch loaded: PASSIVE" in out


def test_a_policy_the_user_chose_is_kept_by_the_command_line():
    out = _run_probe("import reconet_lib.cli as cli; cli.build_parser()", OMP_WAIT_POLICY="ACTIVE")
    assert "policy when torch loaded: ACTIVE" in out


@pytest.mark.parametrize("preset", [None, "ACTIVE"])
def test_run_sh_exports_the_policy_unless_the_user_chose_one(preset):
    script = ROOT / "run.sh"
    text = script.read_text()
    function = text[text.index("passive_wait() {"):]
    function = function[: function.index("\n}\n") + 3]
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    env["PYTHONPATH"] = str(ROOT)
    venv_python = Path(sys.executable)
    # run.sh calls "$VENV/bin/python": point VENV at this interpreter's environment
    venv = venv_python.parent.parent
    result = subprocess.run(["bash", "-c", f"set -eu; VENV={venv}\n{function}\npassive_wait; echo $OMP_WAIT_POLICY"],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (preset or "PASSIVE")
