"""The style catalog: verified loading through a mirror, procedural styles, user images."""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reconet_lib import download, styles
from reconet_lib.download import DownloadError
from reconet_lib.errors import UserInputError

#: The shared real style images, beside the repository (never committed); tests skip without them.
SHARED_STYLES = Path(__file__).resolve().parents[1].parent / "shared" / "styles"
needs_fixtures = pytest.mark.skipif(not SHARED_STYLES.is_dir(), reason="shared style fixtures not on this machine")


@pytest.fixture(autouse=True)
def _fresh_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("RECONET_DATA", str(tmp_path / "data"))
    monkeypatch.delenv(download.MIRROR_ENV, raising=False)


@needs_fixtures
@pytest.mark.parametrize("name", [n for n in styles.list_styles() if not styles.get_style(n).procedural])
def test_every_downloaded_style_loads_verified_from_the_mirror(name, tmp_path):
    path = styles.style_path(name, mirror=SHARED_STYLES)
    assert path.parent == tmp_path / "data" / "styles"
    assert download.sha256_file(path) == styles.style_sha256(name)
    img = styles.load_style(name, size=64, mirror=SHARED_STYLES)
    assert img.dtype == torch.float32 and img.dim() == 4 and img.shape[:2] == (1, 3)
    assert max(img.shape[-2:]) == 64
    assert 0.0 <= img.min().item() and img.max().item() <= 1.0
    assert img.std().item() > 0.05  # a real picture, not a blank


@pytest.mark.parametrize("name", [n for n in styles.list_styles() if styles.get_style(n).procedural])
def test_procedural_style_loads_and_matches_its_catalog_hash(name):
    img = styles.load_style(name)
    assert img.shape == (1, 3, styles.PROCEDURAL_SIZE, styles.PROCEDURAL_SIZE)
    assert 0.0 <= img.min().item() and img.max().item() <= 1.0
    assert img.std().item() > 0.2  # high contrast: strong texture for style transfer
    assert download.sha256_file(styles.style_path(name)) == styles.style_sha256(name)


@pytest.mark.parametrize("name", ["mosaic", "stripes"])
def test_procedural_style_is_byte_identical_across_fresh_data_dirs(name, tmp_path, monkeypatch):
    first = styles.style_path(name).read_bytes()
    monkeypatch.setenv("RECONET_DATA", str(tmp_path / "other"))
    second_path = styles.style_path(name)
    assert second_path.is_relative_to(tmp_path / "other")
    assert second_path.read_bytes() == first
    assert hashlib.sha256(first).hexdigest() == styles.style_sha256(name)


def test_generated_png_decodes_to_the_drawn_pixels():
    data = styles.procedural_png("stripes")
    decoded = np.array(Image.open(io.BytesIO(data)))
    assert np.array_equal(decoded, styles.procedural_image("stripes"))


def test_png_writer_round_trips_odd_sizes():
    rng = np.random.default_rng(0)
    for h, w in [(1, 1), (3, 5), (200, 111)]:  # 200x111x3 rows span several stored deflate blocks
        rgb = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        assert np.array_equal(np.array(Image.open(io.BytesIO(styles.png_bytes(rgb)))), rgb)


def test_a_damaged_procedural_file_is_regenerated():
    path = styles.style_path("mosaic")
    path.write_bytes(b"damaged")
    assert download.sha256_file(styles.style_path("mosaic")) == styles.style_sha256("mosaic")


@needs_fixtures
def test_a_corrupted_mirror_file_is_rejected(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    data = bytearray((SHARED_STYLES / "udnie.jpg").read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same size
    (mirror / "udnie.jpg").write_bytes(bytes(data))
    with pytest.raises(DownloadError, match="sha256"):
        styles.style_path("udnie", mirror=mirror)
    assert not (tmp_path / "data" / "styles" / "udnie.jpg").exists()


def test_unknown_style_lists_the_choices():
    with pytest.raises(UserInputError, match="candy.*mosaic"):
        styles.load_style("van-gogh")
    with pytest.raises(UserInputError, match="candy"):
        styles.style_path("van-gogh")


def test_load_style_accepts_a_user_image_path(tmp_path):
    rgba = np.zeros((30, 20, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "mine.png")
    img = styles.load_style(tmp_path / "mine.png")
    assert img.shape == (1, 3, 30, 20)
    assert torch.equal(img[0, :, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert styles.load_style(str(tmp_path / "mine.png"), size=(7, 9)).shape == (1, 3, 7, 9)
    with pytest.raises(UserInputError, match="no image file"):
        styles.load_style(str(tmp_path / "missing.jpg"))


def test_load_image_sizes_device_and_dtype(tmp_path):
    Image.fromarray(np.full((40, 100, 3), 200, dtype=np.uint8)).convert("L").save(tmp_path / "grey.png")
    img = styles.load_image(tmp_path / "grey.png", size=50, dtype=torch.float64, device="cpu")
    assert img.shape == (1, 3, 20, 50) and img.dtype == torch.float64
    assert torch.allclose(img, torch.full_like(img, 200 / 255))
    for bad in (0, -3, (10,), (0, 5), 2.5, True):
        with pytest.raises(UserInputError, match="size"):
            styles.load_image(tmp_path / "grey.png", size=bad)


def test_load_image_rejects_a_non_image(tmp_path):
    (tmp_path / "notes.png").write_text("not a picture")
    with pytest.raises(UserInputError, match="not an image"):
        styles.load_image(tmp_path / "notes.png")


def test_catalog_records_provenance_honestly():
    auto = styles.get_style("autoportrait")
    assert auto.artist == "Pablo Picasso" and auto.year == 1907 and "NOT public domain" in auto.licence_note
    assert "unknown" in styles.get_style("candy").artist.lower()
    assert styles.get_style("composition").artist == "Wassily Kandinsky"
    assert {styles.get_style(n).artist for n in ("udnie", "edtaonisl")} == {"Francis Picabia"}
    for name in styles.list_styles():
        style = styles.get_style(name)
        assert len(style.sha256) == 64 and style.licence_note
        if not style.procedural:
            res = download.resource(style.resource_name)
            assert (res.sha256, res.url) == (style.sha256, style.source_url)


def test_only_images_whose_licence_allows_are_free_to_show():
    """A protected painting (autoportrait, until 2043) and one of unknown rights (candy) are never shown."""
    hidden = {name for name in styles.list_styles() if not styles.get_style(name).free_to_show}
    assert hidden == {"autoportrait", "candy"}
    for name in hidden:
        note = styles.get_style(name).licence_note
        assert "NOT public domain" in note or "unknown" in note

def test_style_path_offline_without_mirror_raises_a_download_error(monkeypatch, tmp_path):
    # Point the registry entry at a closed local port so the test never touches the internet.
    import socket

    monkeypatch.delenv(download.OFFLINE_ENV, raising=False)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = download.resource("style_candy")
    monkeypatch.setitem(download.REGISTRY, res.name,
                        download.Resource(res.name, f"http://127.0.0.1:{port}/candy.jpg", res.filename,
                                          res.size, res.sha256, res.note))
    with pytest.raises(DownloadError, match="could not be had.*candy.jpg"):
        styles.style_path("candy")
