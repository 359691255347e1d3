"""The notebooks' display helpers: frames to tensors, and a grid of pictures with titles.

Each is derived in plain code in one notebook and imported everywhere else (the notebook that derives it checks
that its own few lines and the function here agree):

- :func:`to_tensor` (derived in notebook 02): uint8 ``(H, W, 3)`` or ``(T, H, W, 3)`` frames -> a float
  batch ``(B, 3, H, W)`` in [0, 1]. The way back is :func:`reconet_lib.images.to_uint8`.
- :func:`image_grid` and :func:`show` (derived in notebook 02): images in a grid, a title each; a one-channel
  image that is not a mask gets a colour bar, so a heat map always carries its scale.

The figures are :class:`matplotlib.figure.Figure` objects made without pyplot, so drawing one changes no global
state and needs no display; :func:`show` renders it once (PNG, or JPEG for photographs) into the notebook.
"""
from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import torch
from IPython.display import Image, display
from matplotlib.figure import Figure

from . import images
from .errors import UserInputError


def to_tensor(pixels) -> torch.Tensor:
    """uint8 frames -> a float batch in [0, 1] (derived in notebook 02).

    Args:
        pixels: one frame ``(H, W, 3)`` or a clip ``(T, H, W, 3)``, uint8 0..255 (numpy array or tensor).
    Returns:
        ``(1, 3, H, W)`` for one frame, ``(T, 3, H, W)`` for a clip; float32 in [0, 1] (pixel / 255).
    Raises:
        UserInputError: not uint8, or not 3 or 4 dimensions with 3 colour channels last.
    """
    shape = tuple(pixels.shape) if hasattr(pixels, "shape") else None
    uint8 = getattr(pixels, "dtype", None) in (np.uint8, torch.uint8)
    if shape is None or len(shape) not in (3, 4) or shape[-1] != 3 or not uint8:
        got = f"{pixels.dtype} {shape}" if shape else type(pixels).__name__
        raise UserInputError(f"display.to_tensor expects uint8 frames (H, W, 3) or (T, H, W, 3); got {got}")
    batch = images.to_float(pixels)
    return batch[None] if len(shape) == 3 else batch


def _as_picture(image) -> np.ndarray:
    """One image as a numpy array imshow takes: ``(H, W, 3)`` in [0, 1] (or uint8), or ``(H, W)`` one channel."""
    if isinstance(image, torch.Tensor):
        picture = image.detach().float().cpu()
        if picture.dim() == 4 and picture.shape[0] == 1:
            picture = picture[0]
        if picture.dim() == 3 and picture.shape[0] in (1, 3):
            picture = picture.permute(1, 2, 0)
        picture = picture.numpy()
    else:
        picture = np.asarray(image)
    if picture.ndim == 3 and picture.shape[-1] == 1:
        picture = picture[..., 0]
    if picture.ndim not in (2, 3) or (picture.ndim == 3 and picture.shape[-1] != 3):
        raise UserInputError(
            f"display: an image must be (3, H, W) / (1, 3, H, W) / (1, H, W) tensors or (H, W) / (H, W, 3) arrays; "
            f"got shape {tuple(np.shape(image))}"
        )
    if picture.ndim == 3 and picture.dtype != np.uint8:
        picture = np.clip(picture, 0, 1)  # a network's output may overshoot [0, 1] a little
    return picture


def _is_mask(picture: np.ndarray) -> bool:
    """A one-channel image of only 0 and 1: drawn black and white without a colour bar."""
    return bool(np.isin(picture, (0, 1)).all())


def image_grid(
    pictures: Sequence,
    titles: Sequence[str] | None = None,
    *,
    cols: int | None = None,
    size: float = 2.6,
    cmap: str = "gray",
    vmax: float | None = 1.0,
    label: str | None = None,
    row_labels: Sequence[str] | None = None,
) -> Figure:
    """A figure with the images in a grid, a title each (derived in notebook 02).

    Args:
        pictures: images: ``(3, H, W)``, ``(1, 3, H, W)`` or ``(1, H, W)`` tensors in [0, 1], or ``(H, W)``,
            ``(H, W, 3)`` arrays (float in [0, 1] or uint8). Colour images are clamped to [0, 1].
        titles: one per image (or None).
        cols: columns (default: all in one row); rows follow.
        size: width of one panel in inches (height 0.8 times that, plus the titles).
        cmap, vmax: how one-channel images are drawn: ``cmap`` over ``[0, vmax]`` (``vmax=None``: the image's
            maximum). A one-channel image with values other than 0 and 1 gets a colour bar labelled ``label``;
            a mask (only 0 and 1) gets none.
        row_labels: a label at the left of each row (or None).
    Returns:
        The :class:`matplotlib.figure.Figure` (no pyplot state involved); one axes per panel, blanks hidden,
        plus one per colour bar.
    Raises:
        UserInputError: no images, a title count or row-label count that does not match, or a shape that is not
            an image.
    """
    pictures = [_as_picture(p) for p in pictures]
    if not pictures:
        raise UserInputError("display.image_grid needs at least one image")
    if titles is not None and len(titles) != len(pictures):
        raise UserInputError(f"display.image_grid: {len(titles)} titles for {len(pictures)} images")
    cols = min(cols or len(pictures), len(pictures))
    rows = (len(pictures) + cols - 1) // cols
    if row_labels is not None and len(row_labels) != rows:
        raise UserInputError(f"display.image_grid: {len(row_labels)} row labels for {rows} rows")
    fig = Figure(figsize=(size * cols, size * 0.8 * rows + 0.3), dpi=100)
    axes = fig.subplots(rows, cols, squeeze=False)
    for k, (ax, picture) in enumerate(zip(axes.flat, pictures)):
        if picture.ndim == 2:
            shown = ax.imshow(picture, cmap=cmap, vmin=0, vmax=vmax, interpolation="nearest")
            if not _is_mask(picture):
                fig.colorbar(shown, ax=ax, shrink=0.8, label=label)
        else:
            ax.imshow(picture, interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[k])
        ax.set_xticks([])
        ax.set_yticks([])  # a thin frame stays, so white masks keep their edges
    for ax in list(axes.flat)[len(pictures):]:
        ax.axis("off")
    for r, text in enumerate(row_labels or []):
        axes[r, 0].set_ylabel(text)
    fig.tight_layout()
    return fig


def show(pictures: Sequence, titles: Sequence[str] | None = None, *, jpeg: bool = False, **grid) -> None:
    """Draw :func:`image_grid` and display it in the notebook once (derived in notebook 02).

    Args:
        pictures, titles, grid: as :func:`image_grid` (``cols``, ``size``, ``cmap``, ``vmax``, ``label``,
            ``row_labels``).
        jpeg: store the figure as a JPEG (photographs: several times smaller in a saved notebook than a PNG).
    """
    show_figure(image_grid(pictures, titles, **grid), jpeg=jpeg)


def show_figure(fig: Figure, *, jpeg: bool = False) -> None:
    """Display a matplotlib ``Figure`` in the notebook once, as a PNG (or JPEG) image.

    The library draws its figures without pyplot (``plot_losses``, the explorer's ``static_figure``, ``image_grid``),
    so a notebook that never imports pyplot has no inline backend to turn a returned figure into a picture: it would
    store only ``<Figure size ...>``. This writes the image itself.
    """
    if not isinstance(fig, Figure):
        raise UserInputError(f"show_figure expects a matplotlib Figure; got {type(fig).__name__}")
    buffer = io.BytesIO()
    if jpeg:
        fig.savefig(buffer, format="jpeg", bbox_inches="tight", pil_kwargs={"quality": 88})
    else:
        fig.savefig(buffer, format="png", bbox_inches="tight")
    display(Image(buffer.getvalue(), format="jpeg" if jpeg else "png"))
