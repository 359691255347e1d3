"""``TemporalExplorer``: step through a video and see where, and how much, each stylisation flickers.

For frame t of each version it shows the output ``O_t``, the previous output warped into frame t
(``W(O_{t-1}) = warp(O_{t-1}, flow_t_to_tm1)``), the valid mask of frame t, and the per-pixel temporal
error ``valid_t * mean_c (O_t - W(O_{t-1}))^2`` as a heat map (grey = not valid), plus a plot of the
per-frame ``e_stab`` of every version (and of the input itself) with frame t marked.

A **consistency slider** (``alpha`` in [0, 1]) applies :func:`reconet_lib.blend.blend_clip` to every version:
each stylised frame is blended with the previous *output* warped into it, on the valid mask. The panels, the
plot and a small table (``e_stab``, ``E_warp`` when forward flows are given, and the sharpness kept relative to
``alpha = 0``) follow the slider, so the trade between flicker and blur can be seen as it is made.

Built only from core ipywidgets (``Play`` linked to an ``IntSlider``, ``ToggleButtons``, ``FloatSlider``,
``Image``, ``HTML``). The
panels share the page width (each a fifth, wrapping onto a second row on narrow pages), so the widget never
needs a horizontal scroll bar. Everything it shows is also available without a browser:
:meth:`TemporalExplorer.panel_images` returns the panels as uint8 arrays and
:meth:`TemporalExplorer.static_figure` draws them with matplotlib (for static exports, a saved notebook
opened without a kernel, and tests).
"""
from __future__ import annotations

import io
from collections.abc import Mapping

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from PIL import Image

from . import images
from .blend import blend_clip, check_alpha, sharpness_kept
from .errors import UserInputError
from .metrics import TemporalFlows, error_maps, load_frames, stability_error, warped_previous, warping_error

#: Colour of pixels that are not valid in the error heat map (uint8 RGB).
INVALID_GREY = (128, 128, 128)
#: Matplotlib colour map of the error heat map (0 = dark).
HEAT_CMAP = "magma"
#: Panel names, in display order.
PANELS = ("input", "output", "warped_previous", "valid", "error")
_TITLES = {
    "input": "input I_t",
    "output": "output O_t",
    "warped_previous": "W(O_t-1) warped into t",
    "valid": "valid_t (white = compared)",
    "error": "error (O_t - W(O_t-1))^2",
}
#: Resolution of the figures (dots per inch) and the smallest text size used in them (points).
FIGURE_DPI = 100
TEXT_PT = 9


def to_uint8_image(image: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` float in [0, 1] -> ``(H, W, 3)`` uint8 (rounded, clipped)."""
    return images.to_uint8(image)


def heat_map(error: np.ndarray, valid: np.ndarray, vmax: float) -> np.ndarray:
    """Colour a per-pixel error map: ``HEAT_CMAP`` over [0, vmax], invalid pixels grey.

    Args:
        error: ``(H, W)`` float error values (>= 0).
        valid: ``(H, W)`` bool, True = valid.
        vmax: the error shown at the top of the colour map (larger values saturate).
    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    scaled = np.clip(np.asarray(error, dtype=np.float64) / max(float(vmax), 1e-12), 0.0, 1.0)
    rgb = images.uint8_array(colormaps[HEAT_CMAP](scaled)[..., :3])
    rgb[~np.asarray(valid, dtype=bool)] = INVALID_GREY
    return rgb


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="png")
    return buffer.getvalue()


class TemporalExplorer:
    """Interactive comparison of the temporal stability of stylised versions of one clip.

    Args:
        frames: the input clip: ``(T, 3, H, W)`` float in [0, 1] or ``(T, H, W, 3)`` uint8 (anything
            :func:`reconet_lib.metrics.load_frames` takes).
        versions: ``{name: clip}`` stylised versions of the same T frames and size.
        flows: ``(T-1, 2, H, W)`` with ``flows[t-1]`` = flow t -> t-1 on frame t's grid (pixels), or a
            :class:`reconet_lib.metrics.TemporalFlows` holding backward flows (then ``valids`` is None; its
            forward flows, when present, add ``E_warp`` to the consistency table).
        valids: ``(T-1, 1, H, W)`` with ``valids[t-1]`` = valid mask of frame t (1 = seen in t-1).
        vmax: top of the heat map's scale; default: the 99th percentile of valid errors of all versions
            (at ``alpha = 0``; the scale stays fixed as the consistency slider moves, so colours compare).
        panel_width: the widest a panel is shown, in CSS pixels (the images keep their own resolution;
            panels shrink below this to share the page width).
        consistency: show the consistency slider (the blend is available through :meth:`set_consistency`
            either way).
    """

    def __init__(
        self,
        frames,
        versions: Mapping[str, object],
        flows,
        valids: torch.Tensor | None = None,
        *,
        vmax: float | None = None,
        panel_width: int = 240,
        consistency: bool = True,
    ):
        self.forward = self.valid_forward = None
        if isinstance(flows, TemporalFlows):
            self.forward, self.valid_forward = flows.forward, flows.valid_forward
            if flows.backward is None:
                raise UserInputError("TemporalExplorer needs backward flows (t -> t-1); these TemporalFlows hold none")
            flows, valids = flows.backward, flows.valid_backward
        if valids is None:
            raise UserInputError("give valids (T-1, 1, H, W) together with the flows")
        if not versions:
            raise UserInputError("give at least one version to explore, e.g. {'reconet': frames}")
        self.inputs = load_frames(frames).cpu()
        size = tuple(self.inputs.shape[-2:])
        self.flows = flows.detach().float().cpu()
        self.valids = (valids[:, None] if valids.dim() == 3 else valids).detach().float().cpu()
        self.names = list(versions)
        self.stylised = {}
        for name, clip in versions.items():
            out = load_frames(clip).cpu()
            if out.shape != self.inputs.shape:
                raise UserInputError(
                    f"version {name!r} is {tuple(out.shape)} but the input is {tuple(self.inputs.shape)}; "
                    f"give the same frames at the same size {size}"
                )
            self.stylised[name] = out
        self.input_error = stability_error(self.inputs, self.flows, self.valids)  # shapes are checked here too
        self._summaries: dict[float, dict[str, dict[str, float]]] = {}
        self._apply(0.0)
        if vmax is None:
            valid = self.valids[:, 0] > 0
            values = torch.cat([m[valid] for m in self.maps.values()])
            vmax = float(torch.quantile(values.double(), 0.99)) if values.numel() else 1.0
        self.vmax = vmax if vmax > 0 else 1.0
        self.num_frames = self.inputs.shape[0]
        self.frame = 1
        self.version = self.names[0]
        self.panel_width = panel_width
        self.show_consistency = consistency
        self._widget = None

    def _apply(self, alpha: float) -> None:
        """Blend every version with ``alpha`` and compute everything the panels, plot and table show."""
        self.alpha = alpha
        self.outputs = {n: blend_clip(s, self.flows, self.valids, alpha) if alpha > 0 else s
                        for n, s in self.stylised.items()}
        self.errors = {n: stability_error(o, self.flows, self.valids) for n, o in self.outputs.items()}
        self.maps = {n: error_maps(o, self.flows, self.valids)[:, 0] for n, o in self.outputs.items()}
        self.warped = {n: warped_previous(o, self.flows) for n, o in self.outputs.items()}
        if alpha not in self._summaries:
            self._summaries[alpha] = {n: self._summary(n) for n in self.names}

    def _summary(self, name: str) -> dict[str, float]:
        row = {"e_stab": self.errors[name].mean, "sharpness_kept": sharpness_kept(self.outputs[name], self.stylised[name])}
        if self.forward is not None:
            row["E_warp"] = warping_error(self.outputs[name], self.forward, self.valid_forward).mean
        return row

    def set_consistency(self, alpha: float) -> None:
        """Blend every version with the previous output warped into each frame (:func:`reconet_lib.blend.blend_clip`).

        Args:
            alpha: weight of the warped previous output, in [0, 1] (0: the versions as given).
        """
        alpha = check_alpha(alpha)
        if self._widget is not None and self.show_consistency and self._alpha.value != alpha:
            self._alpha.value = alpha  # the observer blends and refreshes
            return
        self._apply(alpha)
        self._refresh()

    def consistency_summary(self, alpha: float | None = None) -> dict[str, dict[str, float]]:
        """Per version ``{"e_stab", "E_warp" (with forward flows), "sharpness_kept"}`` at ``alpha``.

        ``sharpness_kept`` is :func:`reconet_lib.blend.sharpness_kept`: mean luminance gradient of the blended
        clip over that of the unblended one (1 = no blur). Default: the current ``alpha``.
        """
        alpha = self.alpha if alpha is None else check_alpha(alpha)
        if alpha not in self._summaries:
            current = self.alpha
            self._apply(alpha)
            self._apply(current)
        return self._summaries[alpha]

    def consistency_html(self) -> str:
        """The consistency table as HTML: each version at the current ``alpha`` against ``alpha = 0``."""
        now, off = self.consistency_summary(), self.consistency_summary(0.0)
        metrics = [m for m in ("e_stab", "E_warp") if m in now[self.names[0]]]
        head = "".join(f"<th>{m} (α=0)</th>" for m in metrics)
        rows = []
        for name in self.names:
            cells = "".join(f"<td>{now[name][m]:.5f} ({off[name][m]:.5f})</td>" for m in metrics)
            rows.append(f"<tr><td>{name}</td>{cells}<td>{100 * now[name]['sharpness_kept']:.1f}%</td></tr>")
        return (f"<table class='reconet-consistency-table'><tr><th>α = {self.alpha:.2f}</th>{head}"
                f"<th>sharpness kept</th></tr>{''.join(rows)}</table>")

    # ------------------------------------------------------------------------------- state

    def set_frame(self, t: int) -> None:
        """Show frame ``t`` (1 .. T-1: frame 0 has no previous frame)."""
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 1 <= t < self.num_frames:
            raise UserInputError(f"frame must be an integer in [1, {self.num_frames - 1}]; got {t!r}")
        self.frame = int(t)
        if self._widget is not None and self._slider.value != self.frame:
            self._slider.value = self.frame  # the observer refreshes the panels
        else:
            self._refresh()

    def set_version(self, name: str) -> None:
        """Show the version called ``name``."""
        if name not in self.outputs:
            raise UserInputError(f"unknown version {name!r}; choose one of {self.names}")
        self.version = name
        if self._widget is not None and self._toggle.value != name:
            self._toggle.value = name
        else:
            self._refresh()

    def error_map(self, t: int | None = None, version: str | None = None) -> np.ndarray:
        """``(H, W)`` float32 per-pixel error ``valid_t * mean_c (O_t - W(O_{t-1}))^2`` (0 where invalid)."""
        t = self.frame if t is None else t
        return self.maps[version or self.version][t - 1].numpy()

    # ------------------------------------------------------------------------------ images

    def panel_images(self, t: int | None = None, version: str | None = None) -> dict[str, np.ndarray]:
        """The panels as ``(H, W, 3)`` uint8 arrays: ``input``, ``output``, ``warped_previous``, ``valid``, ``error``.

        Defaults to the frame and version currently shown.
        """
        t = self.frame if t is None else t
        name = version or self.version
        valid = self.valids[t - 1, 0].numpy() > 0
        return {
            "input": to_uint8_image(self.inputs[t]),
            "output": to_uint8_image(self.outputs[name][t]),
            "warped_previous": to_uint8_image(self.warped[name][t - 1]),
            "valid": np.repeat(images.uint8_array(valid.astype(np.float32))[..., None], 3, axis=2),
            "error": heat_map(self.error_map(t, name), valid, self.vmax),
        }

    def _plot_errors(self, ax, t: int) -> None:
        frames = np.arange(1, self.num_frames)
        ax.plot(frames, self.input_error.per_pair.numpy(), "k--", lw=1, label="input")
        for name in self.names:
            ax.plot(frames, self.errors[name].per_pair.numpy(), marker=".", lw=1.2, label=name)
        ax.axvline(t, color="tab:red", lw=1)
        ax.set_xlim(0.5, self.num_frames - 0.5)
        ax.set_xlabel("frame t", fontsize=TEXT_PT)
        ax.set_ylabel("e_stab of pair\n(t-1, t)", fontsize=TEXT_PT)
        ax.tick_params(labelsize=TEXT_PT)
        # Outside the axes, so it can never hide a point.
        ax.legend(fontsize=TEXT_PT, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
        ax.grid(alpha=0.3)

    def plot_image(self, t: int | None = None, dpi: int = FIGURE_DPI) -> np.ndarray:
        """The per-frame error plot (all versions, frame t marked) as an ``(h, w, 3)`` uint8 array.

        At the default ``dpi`` it is about 750 x 220 pixels, shown at that size (or smaller) in the widget.
        """
        fig = Figure(figsize=(7.5, 2.2), dpi=dpi, layout="constrained")
        canvas = FigureCanvasAgg(fig)
        self._plot_errors(fig.add_subplot(), self.frame if t is None else t)
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()

    def static_figure(self, t: int | None = None, *, dpi: int = FIGURE_DPI):
        """A matplotlib ``Figure`` of frame t: one row of panels per version, and the error plot below.

        The heat maps share one colour bar (squared error, 0 .. ``vmax``). For places where widgets cannot
        render (static exports, a notebook opened without a kernel, nbval). Not attached to pyplot; show it
        with ``display(fig)`` in a notebook or save it with ``fig.savefig``.
        """
        t = self.frame if t is None else t
        if not 1 <= t < self.num_frames:
            raise UserInputError(f"frame must be in [1, {self.num_frames - 1}]; got {t}")
        columns = PANELS[1:]
        rows = len(self.names)
        h, w = self.inputs.shape[-2:]
        panel = 2.3
        fig = Figure(figsize=(panel * len(columns) + 0.9, panel * h / w * rows + 2.6), dpi=dpi, layout="constrained")
        grid = fig.add_gridspec(rows + 1, len(columns), height_ratios=[panel * h / w] * rows + [2.0])
        heat_axes = []
        for r, name in enumerate(self.names):
            panels = self.panel_images(t, name)
            for c, key in enumerate(columns):
                ax = fig.add_subplot(grid[r, c])
                ax.imshow(panels[key], interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(_TITLES[key].replace(" (", "\n("), fontsize=TEXT_PT)
                if c == 0:
                    ax.set_ylabel(name, fontsize=TEXT_PT + 1)
                if key == "error":
                    heat_axes.append(ax)
        scale = ScalarMappable(Normalize(0.0, self.vmax), colormaps[HEAT_CMAP])
        bar = fig.colorbar(scale, ax=heat_axes, shrink=0.9, extend="max")
        bar.set_label("squared error", fontsize=TEXT_PT)
        bar.ax.tick_params(labelsize=TEXT_PT)
        self._plot_errors(fig.add_subplot(grid[rows, :]), t)
        fig.suptitle(f"frame t = {t} (grey in the heat map = not valid, not compared)", fontsize=TEXT_PT + 1)
        return fig

    # ----------------------------------------------------------------------------- widget

    @property
    def widget(self):
        """The ipywidgets container (built on first use): controls, panels and the error plot."""
        if self._widget is None:
            self._build()
        return self._widget

    def _build(self) -> None:
        last = self.num_frames - 1
        self._play = widgets.Play(value=self.frame, min=1, max=last, step=1, interval=400, description="play")
        self._slider = widgets.IntSlider(value=self.frame, min=1, max=last, step=1, description="frame t")
        widgets.jslink((self._play, "value"), (self._slider, "value"))
        self._toggle = widgets.ToggleButtons(options=self.names, value=self.version, description="version")
        self._toggle.style.button_width = "auto"
        self._alpha = widgets.FloatSlider(value=self.alpha, min=0.0, max=1.0, step=0.05, description="consistency α",
                                          readout_format=".2f", continuous_update=True,
                                          style={"description_width": "auto"},
                                          layout=widgets.Layout(width="auto", flex="1 1 auto", max_width="500px"))
        self._alpha.add_class("reconet-consistency")
        self._table = widgets.HTML(layout=widgets.Layout(width="auto"))
        # Sizes are shares of the page, never fixed pixel widths above the panel width: five panels of at
        # most `panel_width` share a row and wrap to a second row when the page is narrow. (ipywidgets'
        # HTML and slider widgets default to a fixed 300 px width, which is what made the columns overflow.)
        fill = widgets.Layout(width="100%", height="auto", margin="0", object_fit="contain")
        self._images = {key: widgets.Image(format="png", layout=fill) for key in PANELS}
        columns = [
            widgets.VBox(
                [widgets.HTML(f"<b>{_TITLES[k]}</b>", layout=widgets.Layout(width="auto")), self._images[k]],
                # space-between: a title that wraps onto two lines does not push its image out of line
                layout=widgets.Layout(flex="1 1 0%", min_width="120px", max_width=f"{self.panel_width}px",
                                      margin="0 4px 4px 0", justify_content="space-between"),
            )
            for k in PANELS
        ]
        self._panels = widgets.HBox(columns, layout=widgets.Layout(width="100%", flex_flow="row wrap"))
        self._plot = widgets.Image(format="png", layout=widgets.Layout(width="100%", max_width="750px", height="auto"))
        self._caption = widgets.HTML(layout=widgets.Layout(width="auto"))
        self._slider.layout = widgets.Layout(width="auto", flex="1 1 auto", max_width="500px")
        controls = widgets.HBox([self._play, self._slider], layout=widgets.Layout(width="100%", flex_flow="row wrap"))
        rows = [controls, self._toggle]
        if self.show_consistency:
            rows += [self._alpha, self._table]
        self._widget = widgets.VBox(rows + [self._panels, self._caption, self._plot], layout=widgets.Layout(width="100%"))
        self._widget.add_class("reconet-temporal-explorer")
        self._slider.observe(self._on_frame, names="value")
        self._toggle.observe(self._on_version, names="value")
        self._alpha.observe(self._on_alpha, names="value")
        self._refresh()

    def _on_frame(self, change) -> None:
        self.frame = int(change["new"])
        self._refresh()

    def _on_alpha(self, change) -> None:
        self._apply(check_alpha(round(float(change["new"]), 6)))
        self._refresh()

    def _on_version(self, change) -> None:
        self.version = change["new"]
        self._refresh()

    def _refresh(self) -> None:
        if self._widget is None:
            return
        for key, image in self.panel_images().items():
            self._images[key].value = _png(image)
        self._plot.value = _png(self.plot_image())
        if self.show_consistency:
            self._table.value = self.consistency_html()
        err = self.errors[self.version]
        fraction = float(err.valid_fraction[self.frame - 1])
        self._caption.value = (
            f"frame {self.frame}{f', consistency α = {self.alpha:.2f}' if self.alpha else ''}: "
            f"e_stab {self.version} = {float(err.per_pair[self.frame - 1]):.5f}, "
            f"input = {float(self.input_error.per_pair[self.frame - 1]):.5f}; "
            f"{100 * fraction:.0f}% of pixels valid; heat map 0 .. {self.vmax:.3g}"
        )
