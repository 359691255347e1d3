"""The resource policy against a local HTTP server: download, checksum, cache, opt-out, fallback, tutorial."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import io
import threading
from pathlib import Path

import pytest
import torch
from PIL import Image

from reconet_lib import download, estimate, losses, resources, styles

#: The shared real style images, beside the repository (never committed); tests skip without them.
SHARED_STYLES = Path(__file__).resolve().parents[1].parent / "shared" / "styles"


class _Server:
    """Serves the files of ``folder`` on 127.0.0.1 and records the requested paths."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.requests = folder, []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):  # keep stderr clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/models"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _vgg_stand_in(seed: int) -> bytes:
    """A small VGG-shaped state dict: torchvision's keys up to relu1_2 (``features.0``, ``features.2``)."""
    state = {f"features.{k}": v for k, v in losses.VGGFeatures(None, seed=seed, layers=["relu1_2"]).features.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _png(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 12), colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def world(tmp_path, monkeypatch):
    """Empty caches, no resource environment variables, and a local server whose files stand in for
    torchvision's VGG-16 weights and the candy style (registered with the stand-ins' sha256)."""
    for name in ("RECONET_VGG_WEIGHTS", "RECONET_RAFT_WEIGHTS", download.MIRROR_ENV, download.OFFLINE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RECONET_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(resources, "_announced", set())  # each test sees the first announcement of its process
    served = tmp_path / "served" / "models"
    served.mkdir(parents=True)
    files = {"vgg16-397923af.pth": _vgg_stand_in(seed=3), "candy.jpg": _png((200, 40, 90))}
    for name, data in files.items():
        (served / name).write_bytes(data)
    for key, filename in (("vgg16_imagenet", "vgg16-397923af.pth"), ("style_candy", "candy.jpg")):
        res = dataclasses.replace(download.resource(key), size=None, sha256=_sha(files[filename]), sha256_prefix=None)
        monkeypatch.setitem(download.REGISTRY, key, res)
    server = _Server(tmp_path / "served")
    monkeypatch.setenv(download.BASE_URL_ENV_PREFIX + "PYTORCH", server.url)
    monkeypatch.setenv(download.BASE_URL_ENV_PREFIX + "STYLES", server.url)
    yield server, served, files
    server.close()


def test_weights_download_from_the_server_verified_into_the_torch_hub_cache(world):
    server, _, files = world
    path = resources.locate("vgg16_imagenet")
    assert path == Path(torch.hub.get_dir()) / "checkpoints" / "vgg16-397923af.pth"
    assert path.read_bytes() == files["vgg16-397923af.pth"]
    assert server.requests == ["/models/vgg16-397923af.pth"]
    # VGGFeatures("imagenet") goes through the same lookup: the served weights, no second request.
    x = torch.rand(1, 3, 8, 8)
    got = losses.VGGFeatures("imagenet", layers=["relu1_2"])(x)["relu1_2"]
    assert torch.equal(got, losses.VGGFeatures(None, seed=3, layers=["relu1_2"])(x)["relu1_2"])
    assert len(server.requests) == 1


def test_a_cached_file_is_used_without_network(world, monkeypatch):
    server, _, _ = world
    first = resources.locate("style_candy")
    server.close()  # nothing answers any more
    assert resources.locate("style_candy") == first
    assert styles.style_path("candy") == first
    assert server.requests == ["/models/candy.jpg"]


def test_a_checksum_mismatch_is_refused_and_nothing_is_kept(world):
    server, served, _ = world
    (served / "candy.jpg").write_bytes(_png((0, 0, 0)))
    with pytest.raises(resources.ResourceUnavailable, match="not the expected file") as info:
        resources.locate("style_candy")
    assert "candy.jpg" in str(info.value) and "\n" not in str(info.value)
    assert not any(resources.cache_dir("style_candy").glob("candy.jpg*"))


def test_sha256_prefix_check_accepts_the_right_file_and_refuses_another(world, monkeypatch):
    _, _, files = world
    data = files["vgg16-397923af.pth"]
    good = dataclasses.replace(download.resource("vgg16_imagenet"), sha256=None, sha256_prefix=_sha(data)[:8])
    monkeypatch.setitem(download.REGISTRY, "vgg16_imagenet", good)
    assert resources.locate("vgg16_imagenet").read_bytes() == data
    bad = dataclasses.replace(good, sha256_prefix="397923af" if not _sha(data).startswith("397923af") else "00000000")
    monkeypatch.setitem(download.REGISTRY, "vgg16_imagenet", bad)
    assert not download.is_verified(bad, resources.cache_dir("vgg16_imagenet") / "vgg16-397923af.pth")
    with pytest.raises(resources.ResourceUnavailable, match="expected one starting with"):
        resources.locate("vgg16_imagenet")


def test_offline_opt_out_makes_no_request_and_says_how_to_provide_the_file(world, monkeypatch):
    server, _, _ = world
    monkeypatch.setenv(download.OFFLINE_ENV, "1")
    with pytest.raises(resources.ResourceUnavailable) as info:
        resources.locate("vgg16_imagenet")
    message = str(info.value)
    assert server.requests == []
    assert "RECONET_OFFLINE" in message and "RECONET_VGG_WEIGHTS=/path/to/vgg16-397923af.pth" in message
    assert str(resources.cache_dir("vgg16_imagenet")) in message and "\n" not in message


def test_a_local_file_from_the_env_var_wins_and_a_missing_one_is_an_error(world, monkeypatch, tmp_path):
    server, _, files = world
    mine = tmp_path / "my_vgg.pth"
    mine.write_bytes(_vgg_stand_in(seed=9))  # not the registered bytes: a user's own file is used as is
    monkeypatch.setenv("RECONET_VGG_WEIGHTS", str(mine))
    assert resources.locate("vgg16_imagenet") == mine
    monkeypatch.setenv("RECONET_VGG_WEIGHTS", str(tmp_path / "nowhere.pth"))
    with pytest.raises(resources.UserInputError, match="RECONET_VGG_WEIGHTS"):
        resources.locate("vgg16_imagenet")
    assert server.requests == []


def test_tutorial_resources_resolve_to_imagenet_weights_and_candy_from_the_server(world, capsys):
    server, _, files = world
    chosen = resources.tutorial_resources()
    assert (chosen.vgg_weights, chosen.style, chosen.fallback, chosen.message) == ("imagenet", "candy", False, "")
    assert capsys.readouterr().out == ""
    assert sorted(server.requests) == ["/models/candy.jpg", "/models/vgg16-397923af.pth"]
    assert losses.VGGFeatures.available("imagenet")
    assert styles.style_path("candy").read_bytes() == files["candy.jpg"]


def test_tutorial_falls_back_with_one_message_when_the_server_has_nothing(world, capsys):
    server, served, _ = world
    for path in served.iterdir():
        path.unlink()  # every request is answered 404
    chosen = resources.tutorial_resources()
    assert (chosen.loss_network, chosen.vgg_weights, chosen.style, chosen.fallback) == (
        "vgg16_random", None, "mosaic", True)
    out = capsys.readouterr()
    assert out.out.count("\n") == 1 and out.out.strip() == chosen.message and out.err == ""
    # one short sentence: what stands in, and how to get the real ones
    assert len(chosen.message) < 300
    for needle in ("random-weight VGG-16", "ImageNet", "RECONET_VGG_WEIGHTS", "mosaic", "candy", "RECONET_MIRROR"):
        assert needle in chosen.message
    # the policy's full explanation is kept for whoever asks
    assert any("HTTP 404" in d and "vgg16-397923af.pth" in d for d in chosen.details)
    assert any("candy.jpg" in d for d in chosen.details)
    assert not losses.VGGFeatures.available("imagenet")


def test_the_fallback_is_announced_once_per_process(world, capsys):
    _, served, _ = world
    for path in served.iterdir():
        path.unlink()
    first = resources.tutorial_resources()
    second = resources.tutorial_resources()
    assert first.message == second.message != ""
    assert capsys.readouterr().out.count(first.message) == 1


def test_raft_weights_come_through_the_same_lookup(world, monkeypatch):
    from torchvision.models.optical_flow import raft_small

    server, served, _ = world
    torch.manual_seed(0)
    buffer = io.BytesIO()
    torch.save(raft_small(weights=None).state_dict(), buffer)
    (served / "raft_small_C_T_V2-01064c6d.pth").write_bytes(buffer.getvalue())
    res = dataclasses.replace(download.resource("raft_small"), sha256=_sha(buffer.getvalue()), sha256_prefix=None)
    monkeypatch.setitem(download.REGISTRY, "raft_small", res)
    estimate._load_raft_cached.cache_clear()
    try:
        model = estimate.load_raft("small")
        assert not model.training
        assert server.requests == ["/models/raft_small_C_T_V2-01064c6d.pth"]
    finally:
        estimate._load_raft_cached.cache_clear()


@pytest.mark.skipif(not SHARED_STYLES.is_dir(), reason="the shared style images are not beside the repository")
def test_a_mirror_folder_works_offline_with_the_real_candy(tmp_path, monkeypatch):
    monkeypatch.setenv("RECONET_DATA", str(tmp_path / "data"))
    monkeypatch.setenv(download.OFFLINE_ENV, "1")
    monkeypatch.setenv(download.MIRROR_ENV, str(SHARED_STYLES))
    path = resources.locate("style_candy")
    assert download.sha256_file(path) == download.resource("style_candy").sha256


def test_registered_weights_verify_by_torchvisions_sha256_prefix():
    for name in resources.WEIGHTS:
        res = download.resource(name)
        assert res.sha256_prefix and res.filename.endswith(f"-{res.sha256_prefix}.pth")
        assert res.url == "https://download.pytorch.org/models/" + res.filename


@pytest.mark.slow  # two 1-step training runs; most of the time is the first import of the training stack
def test_tutorial_models_train_with_the_served_imagenet_weights_and_candy(world, monkeypatch, tmp_path, capsys):
    # The full stand-in (every VGG-16 layer the losses use) replaces the small one; the tutorial run is shrunk.
    import dataclasses as dc

    from reconet_lib import synthetic
    from reconet_lib.checkpoint import load_checkpoint
    from reconet_lib.train import tutorial

    server, served, _ = world
    buffer = io.BytesIO()
    features = losses.VGGFeatures(None, seed=5).features.state_dict()
    torch.save({f"features.{k}": v for k, v in features.items()}, buffer)
    (served / "vgg16-397923af.pth").write_bytes(buffer.getvalue())
    res = dc.replace(download.resource("vgg16_imagenet"), sha256=_sha(buffer.getvalue()))
    monkeypatch.setitem(download.REGISTRY, "vgg16_imagenet", res)
    root = synthetic.generate_dataset(tmp_path / "pairs", scenes=1,
                                      config=synthetic.SyntheticConfig(height=32, width=32, frames=3, scene="photo"))
    real_config = tutorial.tutorial_config

    def small(quick, device, **kwargs):
        config = real_config(quick, device, **kwargs)
        return dc.replace(config, data=[{"kind": "synthetic", "path": str(root)}], crop=(32, 32), steps=1,
                          style_size=32, checkpoint_every=0)

    monkeypatch.setattr(tutorial, "tutorial_config", small)
    paths = tutorial.ensure_tutorial_checkpoints(True, "cpu", output_dir=tmp_path / "runs")
    for path in paths.values():
        stored = load_checkpoint(path)
        assert stored["train_config"]["vgg_weights"] == "imagenet" and stored["style_name"] == "candy"
    assert "Offline fallback" not in capsys.readouterr().out
    assert sorted(set(server.requests)) == ["/models/candy.jpg", "/models/vgg16-397923af.pth"]
