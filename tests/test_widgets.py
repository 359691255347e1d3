"""TemporalExplorer, driven headless: panels follow the slider and the version buttons and agree with the metrics."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from reconet_lib.errors import UserInputError
from reconet_lib.metrics import TemporalFlows, error_maps, stability_error, warped_previous
from reconet_lib.synthetic import SyntheticConfig, make_sequence
from reconet_lib.widgets import INVALID_GREY, HEAT_CMAP, TemporalExplorer, heat_map


@pytest.fixture(scope="module")
def clip():
    seq = make_sequence(SyntheticConfig(height=32, width=48, frames=4, seed=5))
    frames = seq.frames_tensor()
    g = torch.Generator().manual_seed(0)
    flicker = (frames + 0.15 * torch.randn(frames.shape, generator=g)).clamp(0, 1)
    return frames, {"steady": frames, "flicker": flicker}, TemporalFlows.from_synthetic(seq)


@pytest.fixture()
def explorer(clip):
    frames, versions, flows = clip
    return TemporalExplorer(frames, versions, flows.backward, flows.valid_backward)


def test_moving_the_slider_changes_the_panels(explorer):
    import ipywidgets as widgets

    widget = explorer.widget
    assert isinstance(widget, widgets.VBox)
    before = explorer.panel_images()
    png_before = bytes(explorer._images["output"].value)
    explorer._slider.value = 3  # what a user (or the Play button) does
    assert explorer.frame == 3
    after = explorer.panel_images()
    for key in ("input", "output", "warped_previous", "valid", "error"):
        assert after[key].shape == (32, 48, 3) and after[key].dtype == np.uint8
        assert not np.array_equal(before[key], after[key]), key
    assert bytes(explorer._images["output"].value) != png_before


def test_version_buttons_switch_the_output_panels(explorer):
    explorer.widget
    steady = explorer.panel_images()
    explorer._toggle.value = "flicker"
    assert explorer.version == "flicker"
    flicker = explorer.panel_images()
    assert np.array_equal(steady["input"], flicker["input"]) and np.array_equal(steady["valid"], flicker["valid"])
    assert not np.array_equal(steady["output"], flicker["output"])
    assert explorer.error_map().sum() > 10 * explorer.error_map(version="steady").sum()


def test_panels_match_the_metrics(clip, explorer):
    frames, versions, flows = clip
    explorer.set_version("flicker")
    explorer.set_frame(2)
    maps = error_maps(versions["flicker"], flows.backward, flows.valid_backward)
    assert np.array_equal(explorer.error_map(), maps[1, 0].numpy())
    e_stab = stability_error(versions["flicker"], flows.backward, flows.valid_backward)
    assert explorer.error_map().sum() / flows.valid_backward[1].sum().item() == pytest.approx(e_stab.per_pair[1].item())
    images = explorer.panel_images()
    warped = warped_previous(versions["flicker"], flows.backward)[1]
    assert np.array_equal(images["warped_previous"], (warped.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())
    valid = flows.valid_backward[1, 0].numpy() > 0
    assert np.array_equal(images["valid"][..., 0] == 255, valid)
    assert np.all(images["error"][~valid] == INVALID_GREY)
    assert np.array_equal(images["error"], heat_map(maps[1, 0].numpy(), valid, explorer.vmax))


def test_heat_map_colours_zero_error_with_the_bottom_of_the_colour_map():
    from matplotlib import colormaps

    error = np.array([[0.0, 0.5, 2.0]])
    rgb = heat_map(error, np.array([[True, True, False]]), vmax=1.0)
    bottom = (np.array(colormaps[HEAT_CMAP](0.0)[:3]) * 255).round()
    top = (np.array(colormaps[HEAT_CMAP](1.0)[:3]) * 255).round()
    assert np.array_equal(rgb[0, 0], bottom) and tuple(rgb[0, 2]) == INVALID_GREY
    assert not np.array_equal(rgb[0, 1], bottom) and not np.array_equal(rgb[0, 1], top)


def test_static_figure_has_a_row_per_version_and_the_error_plot(explorer):
    from matplotlib.figure import Figure

    fig = explorer.static_figure(2)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2 * 4 + 1 + 1  # panels, the error plot, the heat maps' colour bar
    plot = fig.axes[-1]
    assert len(plot.lines) == 1 + 2 + 1  # input, two versions, the frame marker
    assert plot.lines[-1].get_xdata()[0] == 2


def test_explorer_accepts_temporal_flows_and_uint8_frames(clip):
    frames, versions, flows = clip
    uint8 = (frames * 255).round().byte().permute(0, 2, 3, 1).numpy()
    explorer = TemporalExplorer(uint8, {"steady": uint8}, flows)
    assert explorer.num_frames == 4 and explorer.panel_images()["output"].shape == (32, 48, 3)


def test_bad_frame_or_version_is_a_user_error(explorer, clip):
    frames, versions, flows = clip
    with pytest.raises(UserInputError, match="frame"):
        explorer.set_frame(0)
    with pytest.raises(UserInputError, match="frame"):
        explorer.set_frame(4)
    with pytest.raises(UserInputError, match="unknown version"):
        explorer.set_version("nope")
    with pytest.raises(UserInputError, match="same frames"):
        TemporalExplorer(frames, {"short": frames[:, :, :16]}, flows)


def _texts(fig):
    from matplotlib.text import Text

    return [t for t in fig.findobj(Text) if t.get_text().strip() and t.get_visible()]


def test_static_figure_is_legible_and_its_heat_maps_have_a_colour_bar(explorer):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = explorer.static_figure(2)
    FigureCanvasAgg(fig).draw()
    assert fig.dpi >= 100
    assert min(t.get_fontsize() for t in _texts(fig)) >= 9
    bars = [ax for ax in fig.axes if ax.get_ylabel() == "squared error"]
    assert len(bars) == 1
    low, high = bars[0].get_ylim()
    assert low == 0.0 and high == pytest.approx(explorer.vmax)


def test_error_plot_legend_never_hides_a_point(explorer):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = explorer.static_figure(3)
    FigureCanvasAgg(fig).draw()
    plot = fig.axes[-1]
    box = plot.get_legend().get_window_extent()
    points = [line.get_xydata() for line in plot.lines[:-1]]  # every curve, not the frame marker
    assert sum(len(p) for p in points) == 3 * (explorer.num_frames - 1)
    for xy in points:
        for x, y in plot.transData.transform(xy):
            assert not box.contains(x, y), (x, y)


def test_error_plot_image_is_rendered_at_100_dpi_or_more(explorer):
    image = explorer.plot_image(2)
    assert image.dtype == np.uint8 and image.shape[1] >= 7.5 * 100 - 1


def test_widget_panels_share_the_page_width_and_wrap(explorer):
    """No fixed pixel widths beyond a panel's maximum: five panels fit a 1400 px page, and wrap on a narrow one."""
    import ipywidgets as widgets

    widget = explorer.widget
    assert explorer._panels.layout.flex_flow == "row wrap"
    columns = explorer._panels.children
    assert len(columns) == 5
    for column in columns:
        assert column.layout.max_width == f"{explorer.panel_width}px"
        assert int(column.layout.min_width.removesuffix("px")) * 5 < 1000

    def fixed_widths(w):
        width = w.layout.width
        yield from ([width] if width and width.endswith("px") else [])
        for child in getattr(w, "children", ()):
            yield from fixed_widths(child)

    assert list(fixed_widths(widget)) == []
    assert all(image.layout.width == "100%" for image in explorer._images.values())
    assert isinstance(widget, widgets.VBox)


def test_consistency_slider_blends_every_version_and_updates_panels_and_table(clip):
    from reconet_lib.blend import blend_clip

    frames, versions, flows = clip
    explorer = TemporalExplorer(frames, versions, flows)
    explorer.widget
    explorer.set_version("flicker")
    before_png, before_table = bytes(explorer._images["output"].value), explorer._table.value
    explorer._alpha.value = 0.5  # what a user dragging the slider does
    assert explorer.alpha == 0.5
    expected = blend_clip(versions["flicker"], flows.backward, flows.valid_backward, 0.5)
    assert torch.equal(explorer.outputs["flicker"], expected)
    assert np.array_equal(explorer.panel_images()["output"], (expected[1].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())
    assert bytes(explorer._images["output"].value) != before_png and explorer._table.value != before_table
    assert "α = 0.50" in explorer._table.value and "sharpness kept" in explorer._table.value
    explorer._alpha.value = 0.0
    assert torch.equal(explorer.outputs["flicker"], versions["flicker"])


def test_consistency_summary_reports_lower_flicker_and_the_sharpness_cost(clip):
    frames, versions, flows = clip
    explorer = TemporalExplorer(frames, versions, flows)
    off, on = explorer.consistency_summary(0.0), explorer.consistency_summary(0.8)
    assert set(on["flicker"]) == {"e_stab", "E_warp", "sharpness_kept"}
    assert on["flicker"]["e_stab"] < 0.5 * off["flicker"]["e_stab"]
    assert on["flicker"]["E_warp"] < off["flicker"]["E_warp"]
    assert off["flicker"]["sharpness_kept"] == 1.0 and on["flicker"]["sharpness_kept"] < 1.0
    assert explorer.alpha == 0.0  # asking for a summary does not move the explorer
    e_stab = stability_error(versions["flicker"], flows.backward, flows.valid_backward).mean
    assert off["flicker"]["e_stab"] == pytest.approx(e_stab)


def test_explorer_without_forward_flows_reports_no_e_warp_and_can_hide_the_slider(clip):
    frames, versions, flows = clip
    explorer = TemporalExplorer(frames, versions, flows.backward, flows.valid_backward, consistency=False)
    assert "E_warp" not in explorer.consistency_summary(0.5)["flicker"]
    children = explorer.widget.children
    assert explorer._alpha not in children and explorer._table not in children
    explorer.set_consistency(0.5)
    assert explorer.alpha == 0.5
    with pytest.raises(UserInputError, match="alpha"):
        explorer.set_consistency(2)
