"""Photographs that ship inside scikit-image, for offline real-photo scenes (:mod:`reconet_lib.synthetic`).

Only images whose scikit-image documentation (the docstrings of ``skimage.data``) states a permissive
status are used; the licence is recorded with each entry of :data:`PHOTOS`:

========= ================================================================ ===================================
name      what                                                             licence (as skimage.data states it)
========= ================================================================ ===================================
coffee    espresso cup on a saucer, wooden table (Pikolo Espresso Bar)     CC0, photographer Rachel Michetti
chelsea   Chelsea the cat, close-up                                        CC0, photographer Stefan van der Walt
astronaut Eileen Collins in her suit, flag and shuttle model (NASA)        public domain (NASA Great Images)
rocket    Falcon 9 carrying DSCOVR on the launch pad at dusk (SpaceX)      public domain (released by SpaceX)
========= ================================================================ ===================================

Each photo has *cut-outs*: boxes around an object (the cup, the cat's face, the astronaut's face, ...) in
the original pixel coordinates, with the shape that outlines it. Arrays are ``(H, W, 3)``; points are
``(x, y)`` pixel coordinates with pixel centres at integers, as everywhere in the library.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import skimage.data
from PIL import Image, ImageFilter

from . import images
from .errors import UserInputError


@dataclass(frozen=True)
class Cutout:
    """An object in a photo: ``box = (x0, y0, x1, y1)`` in original pixels and the shape that outlines it."""

    what: str
    box: tuple[int, int, int, int]
    shape: str  # "ellipse" or "rounded_rectangle" (see reconet_lib.synthetic)


@dataclass(frozen=True)
class Photo:
    """One photograph: the ``skimage.data`` function that returns it, its licence and its cut-outs."""

    name: str
    licence: str
    cutouts: tuple[Cutout, ...]


PHOTOS: dict[str, Photo] = {
    p.name: p
    for p in (
        Photo("coffee", "CC0 by the photographer (Rachel Michetti), courtesy of Pikolo Espresso Bar; "
              "per skimage.data.coffee", (
                  Cutout("cup and saucer", (78, 20, 480, 392), "ellipse"),
                  Cutout("cup", (170, 15, 420, 300), "rounded_rectangle"),
              )),
        Photo("chelsea", "CC0 by the photographer (Stefan van der Walt); per skimage.data.chelsea", (
            Cutout("cat's face", (95, 35, 375, 285), "ellipse"),
        )),
        Photo("astronaut", "public domain (NASA Great Images database, no known copyright restrictions); "
              "per skimage.data.astronaut", (
                  Cutout("astronaut's face", (145, 8, 310, 182), "ellipse"),
                  Cutout("shuttle model", (352, 0, 468, 272), "rounded_rectangle"),
                  Cutout("helmet", (276, 338, 508, 512), "ellipse"),
              )),
        Photo("rocket", "public domain (released by SpaceX); per skimage.data.rocket", (
            Cutout("rocket on its pad", (290, 120, 354, 410), "rounded_rectangle"),
        )),
    )
}


@functools.lru_cache(maxsize=None)
def photo_pixels(name: str) -> np.ndarray:
    """The photo ``name`` as a read-only ``(H, W, 3)`` uint8 RGB array (loaded once per process).

    Raises:
        UserInputError: unknown name.
    """
    if name not in PHOTOS:
        raise UserInputError(f"unknown photo {name!r}; choose one of {', '.join(PHOTOS)}")
    array = np.ascontiguousarray(getattr(skimage.data, name)(), dtype=np.uint8)
    array.setflags(write=False)
    return array


def resized(name: str, scale: float) -> np.ndarray:
    """Photo ``name`` scaled by ``scale`` (Lanczos, then a 0.5 px Gaussian blur): ``(h, w, 3)`` float64 in [0, 1].

    Pixel ``(x, y)`` of the result shows original point ``((x + 0.5) / scale - 0.5, (y + 0.5) / scale - 0.5)``.
    """
    original = photo_pixels(name)
    h, w = original.shape[:2]
    size = (max(2, round(w * scale)), max(2, round(h * scale)))
    image = Image.fromarray(original).resize(size, Image.Resampling.LANCZOS)
    # A light blur (sigma 0.5 px) keeps bilinear resampling between frames close to the scene's own colours.
    image = image.filter(ImageFilter.GaussianBlur(0.5))
    return images.unit_array(np.asarray(image))


def sample(pixels: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Bilinear colours ``(N, 3)`` of ``pixels`` ``(h, w, 3)`` at ``points`` ``(N, 2)`` (x, y).

    Points outside the image read its mirror image (reflection about the border pixels' centres), so a
    camera that drifts past the edge sees a continuous picture.
    """
    h, w = pixels.shape[:2]
    x = _reflect(points[:, 0], w)
    y = _reflect(points[:, 1], h)
    x0 = np.clip(np.floor(x).astype(np.int64), 0, w - 2)
    y0 = np.clip(np.floor(y).astype(np.int64), 0, h - 2)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = pixels[y0, x0] * (1 - fx) + pixels[y0, x0 + 1] * fx
    bottom = pixels[y0 + 1, x0] * (1 - fx) + pixels[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _reflect(t: np.ndarray, n: int) -> np.ndarray:
    period = 2.0 * (n - 1)
    r = np.mod(t, period)
    return (n - 1) - np.abs(r - (n - 1))
