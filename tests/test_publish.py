"""tools/publish_styles.py: the one command that trains, measures and publishes styles, run small on a CPU."""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("publish_styles", REPO / "tools" / "publish_styles.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_two_step_run_writes_a_loadable_folder_whose_card_holds_the_measured_errors(tmp_path, monkeypatch, capsys):
    from reconet_lib.metrics import TemporalFlows, stability_error
    from reconet_lib.network import ReCoNet
    from reconet_lib.synthetic import SyntheticConfig, make_sequence

    monkeypatch.setenv("RECONET_OFFLINE", "1")
    monkeypatch.setenv("RECONET_DATA", str(tmp_path / "data"))
    status = _tool().main(["--out", str(tmp_path / "pub"), "--styles", "mosaic", "--steps", "2", "--preset", "tiny",
                           "--crop", "64x64", "--data", "synthetic", "--vgg", "random", "--device", "cpu"])
    assert status == 0
    model = ReCoNet.from_pretrained(tmp_path / "pub" / "mosaic")
    card = model.card
    assert (card.style, card.steps) == ("mosaic", 2) and "tiny preset" in card.recipe
    meta = json.loads((tmp_path / "pub" / "mosaic" / "config.json").read_text())
    assert meta["card"]["train_config"]["steps"] == 2
    # The card's e_stab is the one of the published network on the stated clip.
    seq = make_sequence(SyntheticConfig(height=96, width=128, frames=8, objects=3, seed=7, scene="photo"))
    flows = TemporalFlows.from_synthetic(seq)
    with torch.no_grad():
        out = model(seq.frames_tensor())
    assert card.e_stab == pytest.approx(stability_error(out, flows.backward, flows.valid_backward).mean, rel=1e-4)
    assert "e_stab" in capsys.readouterr().out


def test_unknown_style_is_a_one_line_error_before_training(tmp_path, capsys):
    status = _tool().main(["--out", str(tmp_path / "pub"), "--styles", "no-such-style", "--data", "synthetic"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "no-such-style" in err[0]
    assert not (tmp_path / "pub").exists()


def test_dry_run_checks_the_five_styles_and_prints_the_plan_without_downloading_or_writing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RECONET_OFFLINE", "1")
    monkeypatch.setenv("RECONET_DATA", str(tmp_path / "data"))
    status = _tool().main(["--out", str(tmp_path / "pub"), "--dry-run"])
    out = capsys.readouterr().out.splitlines()
    assert status == 0
    plan = [line for line in out if "would train" in line]
    assert [line.split("]")[0][1:] for line in plan] == list(_tool().FIVE_STYLES)
    assert all("20000 steps (paper preset, sintel frames" in line and "push nowhere" in line for line in plan)
    assert any(line.startswith("MPI Sintel: not prepared yet") for line in out)
    assert not (tmp_path / "pub").exists() and not (tmp_path / "data").exists()


def test_push_is_refused_in_one_line_before_any_training_when_offline_or_without_a_token(tmp_path, monkeypatch, capsys):
    args = ["--out", str(tmp_path / "pub"), "--styles", "mosaic", "--data", "synthetic", "--push-to", "someone"]
    monkeypatch.setenv("RECONET_OFFLINE", "1")
    assert _tool().main(args) == 2
    assert "RECONET_OFFLINE" in capsys.readouterr().err
    monkeypatch.delenv("RECONET_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # no stored token
    assert _tool().main(args + ["--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "huggingface-cli login" in err[0]
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    assert _tool().main(args + ["--dry-run"]) == 0
    assert "push someone/reconet-mosaic" in capsys.readouterr().out
    assert not (tmp_path / "pub").exists()


def test_export_takes_style_steps_and_train_config_from_the_checkpoint(tmp_path):
    from reconet_lib.checkpoint import model_checkpoint, save_checkpoint
    from reconet_lib.network import ReCoNet

    model = ReCoNet.from_preset("tiny")
    payload = model_checkpoint(model, "mosaic", "cd" * 32, train_config={"steps": 7})
    payload["step"] = 7
    ckpt = save_checkpoint(tmp_path / "last.pt", payload)
    folder = _tool().export(ckpt, tmp_path / "out", recipe="test", e_stab=0.5)
    loaded = ReCoNet.from_pretrained(folder)
    card = loaded.card
    assert (card.steps, card.style, card.recipe, card.e_stab, card.train_config) == (7, "mosaic", "test", 0.5, {"steps": 7})
    assert loaded.style_sha256 == "cd" * 32
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


def test_the_readme_documents_the_one_command_and_no_hub_repository_address_is_registered():
    from reconet_lib.download import REGISTRY

    readme = (REPO / "README.md").read_text()
    assert "python tools/publish_styles.py --out published --push-to YOUR_HF_USER --device cuda" in readme
    assert "--dry-run" in readme
    assert not [r for r in REGISTRY.values() if "huggingface.co" in r.url or "hf.co" in r.url]
    # No file of the project names a Hub repository (an address that would point at nothing until someone pushes).
    texts = [REPO / "README.md", *(REPO / "docs").glob("*.md"), *(REPO / "notebooks").glob("*.ipynb"),
             *(REPO / "reconet_lib").rglob("*.py"), *(REPO / "tools").glob("*.py")]
    named = [str(p.relative_to(REPO)) for p in texts if re.search(r"huggingface\.co/(?!docs/)[\w.-]+/[\w.-]+", p.read_text())]
    assert named == []
