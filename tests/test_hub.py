"""Shareable models (reconet_lib.hub): exact round trip, model card, offline loading from folders, mirror and HF cache."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reconet_lib import hub
from reconet_lib.errors import UserInputError
from reconet_lib.network import ReCoNet
from reconet_lib.resources import ResourceUnavailable

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def model():
    torch.manual_seed(3)
    net = ReCoNet.from_preset("tiny").eval()
    net.style_name, net.style_sha256 = "mosaic", "ab" * 32
    return net


@pytest.fixture()
def card():
    return hub.ModelCard(style="mosaic", recipe="tutorial quick mode (tiny preset, generated scenes)", steps=100,
                         e_stab=0.012345, e_warp=0.011111, evaluated_on="generated clip, exact flow")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in ("RECONET_OFFLINE", "HF_HUB_OFFLINE", "HF_HUB_CACHE", "RECONET_MIRROR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # never the user's cache


def _frames():
    return torch.rand(2, 3, 21, 30, generator=torch.Generator().manual_seed(0))


def test_save_then_load_gives_bit_identical_outputs_and_keeps_config_and_style(tmp_path, model, card):
    folder = hub.save_pretrained(model, tmp_path / "shared", card=card)
    assert sorted(p.name for p in folder.iterdir()) == sorted(hub.FILES)
    loaded = hub.from_pretrained(folder)
    assert type(loaded) is ReCoNet and not loaded.training
    assert loaded.config == model.config
    assert (loaded.style_name, loaded.style_sha256) == ("mosaic", "ab" * 32)
    assert loaded.card == card
    with torch.no_grad():
        assert torch.equal(loaded(_frames()), model(_frames()))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_model_card_states_style_recipe_steps_and_the_measured_errors(tmp_path, model, card):
    folder = hub.save_pretrained(model, tmp_path / "shared", card=card)
    text = (folder / "README.md").read_text()
    assert text.startswith("---\nlibrary_name: reconet_lib")
    for needle in ("mosaic", "tutorial quick mode", "| training steps | 100 |", "0.012345", "0.011111",
                   "generated clip, exact flow"):
        assert needle in text
    meta = json.loads((folder / "config.json").read_text())
    assert meta["format"] == "reconet-pretrained" and meta["model_config"] == model.config.to_dict()
    assert meta["card"]["steps"] == 100


def test_mixin_gives_the_model_class_the_three_methods(tmp_path, model):
    # Once ReCoNet itself has the mixin among its bases, a subclass gets the methods by inheritance.
    bases = (ReCoNet,) if issubclass(ReCoNet, hub.HubMixin) else (hub.HubMixin, ReCoNet)
    SharedReCoNet = type("SharedReCoNet", bases, {})

    shared = SharedReCoNet(model.config)
    shared.load_state_dict(model.state_dict())
    shared.save_pretrained(tmp_path / "m")
    loaded = SharedReCoNet.from_pretrained(tmp_path / "m")
    assert type(loaded) is SharedReCoNet
    with torch.no_grad():
        assert torch.equal(loaded(_frames()), model.eval()(_frames()))


def _put_in_hf_cache(cache: Path, repo_id: str, folder: Path, commit: str = "0" * 39 + "1") -> None:
    """The Hugging Face cache layout: models--owner--name/refs/main and snapshots/<commit>/<files>."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in hub.FILES:
        shutil.copy(folder / name, snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def test_offline_load_by_repository_id_from_a_local_hugging_face_cache(tmp_path, model, monkeypatch):
    hub.save_pretrained(model, tmp_path / "m")
    _put_in_hf_cache(tmp_path / "hf_home" / "hub", "someone/reconet-mosaic", tmp_path / "m")
    monkeypatch.setenv("RECONET_OFFLINE", "1")
    loaded = hub.from_pretrained("someone/reconet-mosaic")
    with torch.no_grad():
        assert torch.equal(loaded(_frames()), model(_frames()))


def test_offline_load_in_a_fresh_process_with_hf_hub_offline_and_hf_home(tmp_path, model):
    hub.save_pretrained(model, tmp_path / "m")
    _put_in_hf_cache(tmp_path / "home" / "hub", "someone/reconet-mosaic", tmp_path / "m")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "RECONET_"))}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "home"), PYTHONPATH=str(REPO))
    code = ("import torch; from reconet_lib.hub import from_pretrained; m = from_pretrained('someone/reconet-mosaic'); "
            "x = torch.rand(1, 3, 9, 9, generator=torch.Generator().manual_seed(1)); "
            "torch.save(m(x), 'out.pt')")
    subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, check=True, timeout=120)
    x = torch.rand(1, 3, 9, 9, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(torch.load(tmp_path / "out.pt", weights_only=True), model(x))


def test_offline_without_the_files_is_one_line_naming_the_cache_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("RECONET_OFFLINE", "1")
    with pytest.raises(ResourceUnavailable) as info:
        hub.from_pretrained("someone/not-cached")
    message = str(info.value)
    assert len(message.splitlines()) == 1
    for needle in ("'someone/not-cached'", "downloads are off", str(tmp_path / "hf_home" / "hub"),
                   "huggingface-cli download someone/not-cached", "unset RECONET_OFFLINE"):
        assert needle in message


def test_hf_hub_offline_alone_also_keeps_the_load_off_the_network(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not hub.hub_downloads_allowed()
    with pytest.raises(ResourceUnavailable, match="downloads are off"):
        hub.from_pretrained("someone/not-cached")


def test_a_mirror_folder_serves_a_repository_offline(tmp_path, model, monkeypatch):
    hub.save_pretrained(model, tmp_path / "mirror" / "someone" / "reconet-mosaic")
    monkeypatch.setenv("RECONET_MIRROR", str(tmp_path / "mirror"))
    monkeypatch.setenv("RECONET_OFFLINE", "1")
    assert hub.resolve_pretrained("someone/reconet-mosaic") == tmp_path / "mirror" / "someone" / "reconet-mosaic"


def test_names_that_are_neither_folder_nor_repository_are_user_errors(tmp_path, model):
    with pytest.raises(UserInputError, match="neither a folder nor a Hugging Face repository id"):
        hub.from_pretrained(str(tmp_path / "missing" / "folder"))
    hub.save_pretrained(model, tmp_path / "partial")
    (tmp_path / "partial" / "model.safetensors").unlink()
    with pytest.raises(UserInputError, match="model.safetensors missing"):
        hub.from_pretrained(tmp_path / "partial")


def test_damaged_weights_or_config_are_one_line_user_errors(tmp_path, model):
    hub.save_pretrained(model, tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(UserInputError, match="model.safetensors"):
        hub.from_pretrained(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("{}")
    with pytest.raises(UserInputError, match="not a ReCoNet config"):
        hub.from_pretrained(tmp_path / "m")


def test_export_checkpoint_takes_style_steps_and_config_from_the_checkpoint(tmp_path, model):
    from reconet_lib.checkpoint import model_checkpoint, save_checkpoint

    payload = model_checkpoint(model, "mosaic", "cd" * 32, train_config={"steps": 7})
    payload["step"] = 7
    ckpt = save_checkpoint(tmp_path / "last.pt", payload)
    folder = hub.export_checkpoint(ckpt, tmp_path / "out", recipe="test", e_stab=0.5)
    loaded = hub.from_pretrained(folder)
    assert loaded.card.steps == 7 and loaded.card.style == "mosaic" and loaded.card.train_config == {"steps": 7}
    assert loaded.style_sha256 == "cd" * 32


class _FakeApi:
    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, private, exist_ok):
        self.calls.append(("create", repo_id, private, exist_ok))

    def upload_folder(self, repo_id, folder_path, commit_message):
        self.calls.append(("upload", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))
        return "https://huggingface.co/someone/reconet-mosaic/commit/abc"


def test_push_to_hub_uploads_the_three_files(model, card):
    api = _FakeApi()
    url = hub.push_to_hub(model, "someone/reconet-mosaic", card=card, api=api)
    assert url.endswith("/commit/abc")
    assert api.calls == [("create", "someone/reconet-mosaic", False, True),
                         ("upload", "someone/reconet-mosaic", sorted(hub.FILES))]


def test_push_to_hub_refuses_when_offline_or_with_a_bad_repository_id(model, monkeypatch):
    with pytest.raises(UserInputError, match="owner/name"):
        hub.push_to_hub(model, "no-owner", api=_FakeApi())
    monkeypatch.setenv("RECONET_OFFLINE", "1")
    api = _FakeApi()
    with pytest.raises(UserInputError, match="network access is off"):
        hub.push_to_hub(model, "someone/reconet-mosaic", api=api)
    assert api.calls == []
