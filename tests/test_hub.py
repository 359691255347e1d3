"""Shareable models: ReCoNet.save_pretrained / from_pretrained / push_to_hub (reconet_lib.pretrained, reconet_lib.hub).

Exact round trip, model card, offline loading from folders, a mirror and a local Hugging Face cache, one-line errors.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reconet_lib import hub, pretrained
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
    return pretrained.ModelCard(style="mosaic", recipe="tutorial quick mode (tiny preset, generated scenes)", steps=100,
                         e_stab=0.012345, e_warp=0.011111, evaluated_on="generated clip, exact flow")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in ("RECONET_OFFLINE", "HF_HUB_OFFLINE", "HF_HUB_CACHE", "RECONET_MIRROR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # never the user's cache


def _frames():
    return torch.rand(2, 3, 21, 30, generator=torch.Generator().manual_seed(0))


def test_save_then_load_gives_bit_identical_outputs_and_keeps_config_and_style(tmp_path, model, card):
    folder = model.save_pretrained(tmp_path / "shared", card=card)
    assert sorted(p.name for p in folder.iterdir()) == sorted(pretrained.FILES)
    loaded = ReCoNet.from_pretrained(folder)
    assert type(loaded) is ReCoNet and not loaded.training
    assert loaded.config == model.config
    assert (loaded.style_name, loaded.style_sha256) == ("mosaic", "ab" * 32)
    assert loaded.card == card
    with torch.no_grad():
        assert torch.equal(loaded(_frames()), model(_frames()))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_model_card_states_style_recipe_steps_and_the_measured_errors(tmp_path, model, card):
    folder = model.save_pretrained(tmp_path / "shared", card=card)
    text = (folder / "README.md").read_text()
    assert text.startswith("---\nlibrary_name: reconet_lib")
    for needle in ("mosaic", "tutorial quick mode", "| training steps | 100 |", "0.012345", "0.011111",
                   "generated clip, exact flow"):
        assert needle in text
    meta = json.loads((folder / "config.json").read_text())
    assert meta["format"] == "reconet-pretrained" and meta["model_config"] == model.config.to_dict()
    assert meta["card"]["steps"] == 100


def test_the_methods_live_on_reconet_and_a_subclass_loads_as_itself(tmp_path, model):
    assert all(callable(getattr(ReCoNet, name)) for name in ("save_pretrained", "from_pretrained", "push_to_hub"))

    class SharedReCoNet(ReCoNet):
        pass

    shared = SharedReCoNet(model.config)
    shared.load_state_dict(model.state_dict())
    shared.save_pretrained(tmp_path / "m")
    loaded = SharedReCoNet.from_pretrained(tmp_path / "m")
    assert type(loaded) is SharedReCoNet
    with torch.no_grad():
        assert torch.equal(loaded(_frames()), model.eval()(_frames()))


def test_a_loaded_model_saved_again_keeps_its_card_and_style_without_passing_them(tmp_path, model, card):
    first = ReCoNet.from_pretrained(model.save_pretrained(tmp_path / "a", card=card))
    again = ReCoNet.from_pretrained(first.save_pretrained(tmp_path / "b"))
    assert again.card == card and again.card.train_config == card.train_config
    assert (again.style_name, again.style_sha256) == ("mosaic", "ab" * 32)
    assert json.loads((tmp_path / "a" / "config.json").read_text()) == json.loads((tmp_path / "b" / "config.json").read_text())
    assert (tmp_path / "a" / "README.md").read_text() == (tmp_path / "b" / "README.md").read_text()


def test_every_tensor_comes_back_equal_for_each_preset_and_on_the_device_asked_for(tmp_path):
    for preset in ("tiny", "demo"):
        torch.manual_seed(0)
        net = ReCoNet.from_preset(preset)
        for module in net.modules():  # non-default affine parameters, so a lost tensor would show
            if isinstance(module, torch.nn.InstanceNorm2d):
                torch.nn.init.normal_(module.weight)
                torch.nn.init.normal_(module.bias)
        loaded = ReCoNet.from_pretrained(net.save_pretrained(tmp_path / preset), device="cpu")
        assert loaded.config == net.config
        assert loaded.state_dict().keys() == net.state_dict().keys()
        assert all(torch.equal(loaded.state_dict()[k], v) and loaded.state_dict()[k].dtype == v.dtype
                   for k, v in net.state_dict().items())
        assert all(p.device.type == "cpu" for p in loaded.parameters())
    half = ReCoNet.from_pretrained(ReCoNet.from_preset("tiny").half().save_pretrained(tmp_path / "half"))
    assert {p.dtype for p in half.parameters()} == {torch.float16}


def _put_in_hf_cache(cache: Path, repo_id: str, folder: Path, commit: str = "0" * 39 + "1") -> None:
    """The Hugging Face cache layout: models--owner--name/refs/main and snapshots/<commit>/<files>."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in pretrained.FILES:
        shutil.copy(folder / name, snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def test_offline_load_by_repository_id_from_a_local_hugging_face_cache(tmp_path, model, monkeypatch):
    model.save_pretrained(tmp_path / "m")
    _put_in_hf_cache(tmp_path / "hf_home" / "hub", "someone/reconet-mosaic", tmp_path / "m")
    monkeypatch.setenv("RECONET_OFFLINE", "1")
    loaded = ReCoNet.from_pretrained("someone/reconet-mosaic")
    assert loaded.config == model.config and loaded.style_name == "mosaic"
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    with torch.no_grad():
        assert torch.equal(loaded(_frames()), model(_frames()))


def test_offline_load_in_a_fresh_process_with_hf_hub_offline_and_hf_home(tmp_path, model):
    model.save_pretrained(tmp_path / "m")
    _put_in_hf_cache(tmp_path / "home" / "hub", "someone/reconet-mosaic", tmp_path / "m")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "RECONET_"))}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "home"), PYTHONPATH=str(REPO))
    code = ("import torch; from reconet_lib.network import ReCoNet; m = ReCoNet.from_pretrained('someone/reconet-mosaic'); "
            "x = torch.rand(1, 3, 9, 9, generator=torch.Generator().manual_seed(1)); "
            "torch.save(m(x), 'out.pt')")
    subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, check=True, timeout=120)
    x = torch.rand(1, 3, 9, 9, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(torch.load(tmp_path / "out.pt", weights_only=True), model(x))


def test_offline_without_the_files_is_one_line_naming_the_cache_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("RECONET_OFFLINE", "1")
    with pytest.raises(ResourceUnavailable) as info:
        ReCoNet.from_pretrained("someone/not-cached")
    message = str(info.value)
    assert len(message.splitlines()) == 1
    for needle in ("'someone/not-cached'", "downloads are off", str(tmp_path / "hf_home" / "hub"),
                   "huggingface-cli download someone/not-cached", "unset RECONET_OFFLINE"):
        assert needle in message


def test_hf_hub_offline_alone_also_keeps_the_load_off_the_network(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not hub.hub_downloads_allowed()
    with pytest.raises(ResourceUnavailable, match="downloads are off"):
        ReCoNet.from_pretrained("someone/not-cached")


def test_a_mirror_folder_serves_a_repository_offline(tmp_path, model, monkeypatch):
    model.save_pretrained(tmp_path / "mirror" / "someone" / "reconet-mosaic")
    monkeypatch.setenv("RECONET_MIRROR", str(tmp_path / "mirror"))
    monkeypatch.setenv("RECONET_OFFLINE", "1")
    assert pretrained.locate("someone/reconet-mosaic") == tmp_path / "mirror" / "someone" / "reconet-mosaic"
    loaded = ReCoNet.from_pretrained("someone/reconet-mosaic")
    with torch.no_grad():
        assert torch.equal(loaded(_frames()), model(_frames()))


def test_names_that_are_neither_folder_nor_repository_are_user_errors(tmp_path, model):
    with pytest.raises(UserInputError, match="neither a folder nor a Hugging Face repository id"):
        ReCoNet.from_pretrained(str(tmp_path / "missing" / "folder"))
    model.save_pretrained(tmp_path / "partial")
    (tmp_path / "partial" / "model.safetensors").unlink()
    with pytest.raises(UserInputError, match="model.safetensors missing") as info:
        ReCoNet.from_pretrained(tmp_path / "partial")
    assert len(str(info.value).splitlines()) == 1 and "save_pretrained" in str(info.value)


@pytest.mark.parametrize("damage, needle", [
    (lambda f: (f / "model.safetensors").write_bytes(b"not safetensors at all"), "model.safetensors is not a readable"),
    (lambda f: (f / "config.json").write_text("{}"), "not a ReCoNet config"),
    (lambda f: (f / "config.json").write_text("{not json"), "config.json is not readable JSON"),
    (lambda f: (f / "config.json").write_text(
        (f / "config.json").read_text().replace('"format_version": 1', '"format_version": 99')), "upgrade reconet_lib"),
    (lambda f: (f / "config.json").write_text(
        (f / "config.json").read_text().replace('"residual_blocks": 1', '"residual_blocks": 2')), "do not match its config"),
])
def test_a_damaged_folder_is_one_line_naming_the_file_and_the_fix(tmp_path, model, damage, needle):
    folder = model.save_pretrained(tmp_path / "m")
    damage(folder)
    with pytest.raises(UserInputError) as info:
        ReCoNet.from_pretrained(folder)
    message = str(info.value)
    assert needle in message and str(folder) in message and len(message.splitlines()) == 1


def test_an_interrupted_save_leaves_the_previous_folder_loadable(tmp_path, model, monkeypatch):
    folder = model.save_pretrained(tmp_path / "m")
    other = ReCoNet.from_preset("tiny")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save", fail)
    with pytest.raises(OSError, match="disk full"):
        other.save_pretrained(folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted(pretrained.FILES)  # no temporary left behind
    loaded = ReCoNet.from_pretrained(folder)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


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
    url = model.push_to_hub("someone/reconet-mosaic", card=card, api=api)
    assert url.endswith("/commit/abc")
    assert api.calls == [("create", "someone/reconet-mosaic", False, True),
                         ("upload", "someone/reconet-mosaic", sorted(pretrained.FILES))]


def test_push_to_hub_refuses_when_offline_or_with_a_bad_repository_id(model, monkeypatch):
    with pytest.raises(UserInputError, match="owner/name"):
        model.push_to_hub("no-owner", api=_FakeApi())
    monkeypatch.setenv("RECONET_OFFLINE", "1")
    api = _FakeApi()
    with pytest.raises(UserInputError, match="network access is off"):
        model.push_to_hub("someone/reconet-mosaic", api=api)
    assert api.calls == []


def test_the_hub_cache_follows_hf_hub_cache_then_hf_home(tmp_path, monkeypatch):
    assert hub.hf_cache_dir() == tmp_path / "hf_home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert hub.hf_cache_dir() == tmp_path / "elsewhere"


def test_importing_the_model_loads_neither_the_hub_code_nor_huggingface_hub():
    code = ("import sys, reconet_lib.network; "
            "print(sorted(m for m in ('huggingface_hub', 'safetensors', 'reconet_lib.hub', 'reconet_lib.pretrained') "
            "if m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"
