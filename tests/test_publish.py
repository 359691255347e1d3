"""tools/publish_styles.py: the one command that trains, measures and publishes styles, run small on a CPU."""
from __future__ import annotations

import importlib.util
import json
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
    from reconet_lib.hub import from_pretrained
    from reconet_lib.metrics import TemporalFlows, stability_error
    from reconet_lib.synthetic import SyntheticConfig, make_sequence

    monkeypatch.setenv("RECONET_OFFLINE", "1")
    monkeypatch.setenv("RECONET_DATA", str(tmp_path / "data"))
    status = _tool().main(["--out", str(tmp_path / "pub"), "--styles", "mosaic", "--steps", "2", "--preset", "tiny",
                           "--crop", "64x64", "--data", "synthetic", "--vgg", "random", "--device", "cpu"])
    assert status == 0
    model = from_pretrained(tmp_path / "pub" / "mosaic")
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
