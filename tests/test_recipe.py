"""The full-mode recipe: real data sources only, every value sourced, Sintel prepared from a verified zip."""
from __future__ import annotations

import dataclasses
import zipfile

import pytest

from reconet_lib import download, sintel
from reconet_lib.train import recipe
from reconet_lib.errors import UserInputError
from reconet_lib.synthetic import SyntheticConfig, make_sequence, write_sintel_layout


def test_full_recipe_refuses_to_fall_back_to_generated_scenes():
    with pytest.raises(UserInputError, match="real frames"):
        recipe.full_recipe()


def test_full_recipe_trains_the_paper_model_on_sintel_and_own_clips_with_raft(tmp_path):
    config = recipe.full_recipe(sintel=tmp_path / "training", clips=tmp_path / "clips", device="cpu")
    kinds = [(s["kind"], s["options"]) for s in config.data]
    assert kinds == [("sintel", {"passes": ["clean", "final"]}), ("videos", {"method": "raft", "size": 640})]
    assert all(s["kind"] != "synthetic" for s in config.data)
    for value in recipe.RECIPE:
        assert value.source in ("paper", "fast_neural_style", "ours") and value.why
        if value.field != "loss":
            assert getattr(config, value.field) == value.value, value.field
    assert (config.model, config.vgg_weights, config.style) == ("paper", "imagenet", "candy")


def test_colab_time_is_labelled_an_estimate():
    text = recipe.colab_time_estimate(20000)
    assert text.startswith("estimate, not measured") and "67-100 minutes" in text


def test_prepare_sintel_extracts_the_verified_zip_into_a_readable_training_folder(tmp_path, monkeypatch):
    from reconet_lib.data import SintelPairs

    monkeypatch.setenv("RECONET_DATA", str(tmp_path / "data"))
    layout = tmp_path / "layout"
    write_sintel_layout(make_sequence(SyntheticConfig(height=16, width=20, frames=3, objects=1)), layout, scene="alley_1")
    archive = tmp_path / "data" / "downloads" / "MPI-Sintel-complete.zip"
    archive.parent.mkdir(parents=True)
    with zipfile.ZipFile(archive, "w") as zf:
        for folder in ("clean", "flow", "occlusions"):
            for path in sorted((layout / folder / "alley_1").iterdir()):
                zf.write(path, f"training/{folder}/alley_1/{path.name}")
    stand_in = dataclasses.replace(download.resource("mpi_sintel"), sha256=download.sha256_file(archive))
    monkeypatch.setitem(download.REGISTRY, "mpi_sintel", stand_in)
    root = recipe.prepare_sintel(progress=False)  # offline (tests): the verified cached zip is enough
    assert root == tmp_path / "data" / "sintel" / "training"
    assert sintel.frame_numbers(root / "clean" / "alley_1") == [1, 2, 3]
    assert len(SintelPairs(root)) == 2
    assert recipe.prepare_sintel(progress=False) == root  # the second call reuses the extraction
