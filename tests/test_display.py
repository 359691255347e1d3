"""The notebooks' display helpers: frames to tensors, and grids of pictures (drawn off screen with Agg)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

from reconet_lib import display
from reconet_lib.errors import UserInputError
from reconet_lib.images import to_uint8


def test_to_tensor_gives_a_batch_in_0_1_for_a_frame_and_for_a_clip():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    clip = rng.integers(0, 256, (4, 5, 7, 3), dtype=np.uint8)
    one, many = display.to_tensor(frame), display.to_tensor(clip)
    assert one.shape == (1, 3, 5, 7) and many.shape == (4, 3, 5, 7)
    assert one.dtype == torch.float32 and 0 <= float(many.min()) and float(many.max()) <= 1
    assert float(one[0, 1, 2, 3]) == pytest.approx(frame[2, 3, 1] / 255)
    assert np.array_equal(to_uint8(many), clip) and np.array_equal(to_uint8(one)[0], frame)


@pytest.mark.parametrize("bad", [np.zeros((5, 7, 3), np.float32), np.zeros((5, 7), np.uint8),
                                 np.zeros((5, 7, 4), np.uint8), [1, 2, 3]])
def test_to_tensor_refuses_what_is_not_uint8_rgb_frames_in_one_line(bad):
    with pytest.raises(UserInputError, match="display.to_tensor") as caught:
        display.to_tensor(bad)
    assert "\n" not in str(caught.value)


def _image_axes(fig):
    return [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]


def test_grid_has_one_panel_per_image_a_colour_bar_per_heat_map_and_hides_blanks():
    colour = torch.rand(3, 6, 8)
    batch = torch.rand(1, 3, 6, 8)
    heat = torch.rand(1, 6, 8) * 0.3
    mask = (torch.rand(6, 8) > 0.5).float().numpy()
    fig = display.image_grid([colour, batch, heat, mask, colour], ["a", "b", "c", "d", "e"], cols=3)
    panels = _image_axes(fig)
    assert len(panels) == 5 and [ax.get_title() for ax in panels] == list("abcde")
    colour_bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(colour_bars) == 1  # the heat map has one; the mask and the colour images none
    assert len(fig.axes) == 6 + 1  # 2 x 3 grid (one blank, hidden) plus the colour bar
    assert not fig.axes[5].axison
    np.testing.assert_allclose(panels[0].images[0].get_array(), colour.permute(1, 2, 0).numpy())


def test_grid_clamps_colour_images_into_0_1_and_keeps_uint8_as_it_is():
    overshoot = torch.full((3, 4, 4), 1.2)
    overshoot[0] = -0.1
    pixels = np.full((4, 4, 3), 200, np.uint8)
    fig = display.image_grid([overshoot, pixels])
    shown = [np.asarray(ax.images[0].get_array()) for ax in _image_axes(fig)]
    assert shown[0].min() == 0 and shown[0].max() == 1
    assert shown[1].dtype == np.uint8 and (shown[1] == 200).all()


def test_grid_labels_rows_and_heat_maps_use_the_given_scale():
    heat = np.linspace(0, 0.5, 12).reshape(3, 4)
    fig = display.image_grid([heat, heat], cols=1, vmax=None, label="error", row_labels=["first", "second"])
    panels = _image_axes(fig)
    assert [ax.get_ylabel() for ax in panels] == ["first", "second"]
    assert panels[0].images[0].get_clim() == pytest.approx((0, 0.5))
    assert {ax.get_ylabel() for ax in fig.axes if ax.get_label() == "<colorbar>"} == {"error"}


@pytest.mark.parametrize("pictures, titles, match", [
    ([], None, "at least one image"),
    ([torch.rand(3, 4, 4)], ["a", "b"], "2 titles for 1 images"),
    ([torch.rand(2, 4, 4)], None, "an image must be"),
    ([np.zeros((4, 4, 5))], None, "an image must be"),
])
def test_grid_refuses_bad_input_with_a_clear_line(pictures, titles, match):
    with pytest.raises(UserInputError, match=match):
        display.image_grid(pictures, titles)


def test_show_displays_one_png_or_jpeg_and_leaves_no_pyplot_figure(monkeypatch):
    import matplotlib.pyplot as plt

    shown = []
    monkeypatch.setattr(display, "display", shown.append)
    before = plt.get_fignums()
    display.show([torch.rand(3, 8, 8)], ["x"])
    display.show([torch.rand(3, 8, 8)], ["x"], jpeg=True)
    assert len(shown) == 2 and plt.get_fignums() == before
    assert shown[0].data[:8] == b"\x89PNG\r\n\x1a\n" and shown[1].data[:2] == b"\xff\xd8"


def test_show_figure_displays_a_pyplot_free_figure_as_an_image_not_its_text(monkeypatch, tmp_path):
    from reconet_lib.train.log import plot_losses

    shown = []
    monkeypatch.setattr(display, "display", shown.append)
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.jsonl").write_text('{"step": 1, "total": 2.0}\n{"step": 2, "total": 1.0}\n')
    fig = plot_losses({"run": run}, terms=["total"])
    display.show_figure(fig)
    assert len(shown) == 1 and shown[0].data[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(UserInputError, match="show_figure expects a matplotlib Figure; got str"):
        display.show_figure("not a figure")
