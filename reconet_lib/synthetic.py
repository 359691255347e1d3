"""Synthetic video sequences with exact optical flow and occlusion masks.

Real flow datasets (MPI Sintel, FlyingChairs2, ...) may not be reachable, yet the tests, the CI and the
quick mode of the notebooks need videos whose flow is known *exactly*. This module draws them.

The model is a stack of flat layers. Layer 0 is an endless textured background seen through a camera that
pans, zooms and rotates a little from frame to frame; layers 1..N are textured objects (ellipses, rounded
rectangles, blobs) that translate, rotate and scale on top of it, in depth order (a larger index is nearer).
Two kinds of scene (``SyntheticConfig.scene``): ``"procedural"`` draws every texture from noise, stripes,
checks and rings; ``"photo"`` paints the background with a photograph that ships inside scikit-image and
the objects with cut-outs of photographed objects (a cup, a cat's face, ...; licences in
:mod:`reconet_lib.photos`), and may change the lighting of the whole scene over time
(``lighting_change``: a brightness ramp, which the flow does not explain and the luminance term allows).
Each layer L has a texture and a shape defined in its own coordinates ``p`` and, per frame k, an affine map
``A_{L,k}`` that carries them into the image: ``x = A_{L,k} p``. Frame k shows at pixel ``x`` the topmost
layer whose shape contains ``A_{L,k}^{-1} x``, with its texture there. Because everything is analytic:

* the flow of a pixel ``x`` owned by layer L from frame k to frame j is ``A_{L,j} A_{L,k}^{-1} x - x``,
  exactly (no estimation);
* that pixel is occluded in frame j when the topmost layer at its target ``y`` in frame j is not L, or
  when ``y`` lies outside the frame (judged by :func:`reconet_lib.warp.inside_mask` on the stored flow:
  ``0 <= y_x <= W - 1`` and ``0 <= y_y <= H - 1``, up to its round-off tolerance). Layer membership has
  hard edges (no anti-aliasing), so the masks are exact at pixel centres.

Textures are smooth (value noise over several octaves, stripes, checks, rings, colour gradients) and only
the colour is sampled at pixel centres, so warping a frame with the exact flow reproduces its neighbour up
to bilinear interpolation and uint8 rounding. The same config gives bit-identical arrays.

Arrays follow ``docs/conventions.md``: flows ``(H, W, 2)`` float32 in pixels, channel 0 = u (right),
channel 1 = v (down); ``flow_a_to_b`` lives on frame a's grid. Occlusion arrays are True where *occluded*
(Sintel's polarity); the library's *valid* masks are their negation (:attr:`SyntheticSequence.valid_forward`).
"""
from __future__ import annotations

import colorsys
import dataclasses
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from . import sintel
from .config import data_dir, quick_mode
from . import images, photos
from .errors import UserInputError
from .files import atomic_write_text, partial_path, swap_in, sweep_stale
from .flow import write_flo
from .warp import inside_mask

#: Pass folders :func:`write_sintel_layout` can write (the generator has no render effects: both get the same frames).
PASSES = sintel.PASSES
#: Folder (under the layout root) with one JSON record per complete scene; it is written last.
RECORD_DIR = "synthetic_records"
_RECORD_FORMAT = "reconet-synthetic-scene"
_RECORD_VERSION = 1

#: Kinds of scene (SyntheticConfig.scene).
SCENES = ("procedural", "photo")
# Shapes of the foreground objects, in the object's own coordinates (centred at the origin).
_SHAPES = ("ellipse", "rounded_rectangle", "blob")
# Side of the random lattices behind the value noise (the noise repeats every _LATTICE periods).
_LATTICE = 64


# --------------------------------------------------------------------------------------------------------
# Configuration and result
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticConfig:
    """What to draw. Sizes in pixels, motions per frame; every random choice comes from ``seed``.

    Attributes:
        height, width: frame size in pixels (at least 8 each).
        frames: number of frames T (at least 2); a sequence has T - 1 consecutive pairs.
        objects: number of foreground objects (0 gives a background-only sequence).
        seed: seed of the ``numpy.random.Generator`` that draws textures, shapes and motions.
        camera_pan: largest camera pan in pixels per frame (actual speed is drawn in [0.5, 1] x this).
        camera_zoom: largest relative camera zoom per frame (0.01 = 1 % per frame, in or out).
        camera_rotation: largest camera roll in degrees per frame.
        object_speed: (min, max) object speed in pixels per frame, relative to the scene.
        object_acceleration: largest change of object velocity in pixels per frame per frame.
        object_rotation: largest object spin in degrees per frame.
        object_zoom: largest relative object growth or shrinkage per frame.
        object_size: (min, max) object radius as a fraction of ``min(height, width)``.
        texture_scale: multiplies every texture feature size (1 = finest details about 4 pixels;
            procedural scenes only).
        scene: ``"procedural"`` (noise textures) or ``"photo"`` (scikit-image photographs, see the module).
        lighting_change: largest relative brightness change over the sequence (0 = none). Each sequence
            draws a change in ``[-x, x]`` with probability 1/2 and none otherwise, and applies it as a ramp
            from the first frame to the last (the flow and the masks do not change).
        photos: photo scenes only: the photographs (names of :data:`reconet_lib.photos.PHOTOS`) to draw the
            background and the cut-outs from (cut-outs come from the other photographs, or from the background
            itself when only one is named); None = all of them. A study can hold photographs
            out of training this way and test on footage the model never saw.
    """

    height: int = 96
    width: int = 128
    frames: int = 8
    objects: int = 3
    seed: int = 0
    camera_pan: float = 2.5
    camera_zoom: float = 0.015
    camera_rotation: float = 0.3
    object_speed: tuple[float, float] = (1.5, 4.5)
    object_acceleration: float = 0.3
    object_rotation: float = 3.0
    object_zoom: float = 0.02
    object_size: tuple[float, float] = (0.15, 0.32)
    texture_scale: float = 1.0
    scene: str = "procedural"
    lighting_change: float = 0.0
    photos: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        def integer(name: str, low: int, high: int | None = None) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise UserInputError(f"SyntheticConfig.{name} must be an integer; got {value!r}")
            if value < low or (high is not None and value > high):
                bound = f"between {low} and {high}" if high is not None else f"at least {low}"
                raise UserInputError(f"SyntheticConfig.{name} must be {bound}; got {value}")

        def number(name: str, value, low: float, high: float, what: str) -> float:
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
                raise UserInputError(f"SyntheticConfig.{name} must be a number ({what}); got {value!r}")
            if not (math.isfinite(value) and low <= value <= high):
                raise UserInputError(f"SyntheticConfig.{name} must lie in [{low}, {high}] ({what}); got {value}")
            return float(value)

        integer("height", 8, 4096)
        integer("width", 8, 4096)
        integer("frames", 2, 1000)
        integer("objects", 0, 64)
        integer("seed", 0)
        number("camera_pan", self.camera_pan, 0.0, 50.0, "pixels per frame")
        number("camera_zoom", self.camera_zoom, 0.0, 0.2, "relative change per frame")
        number("camera_rotation", self.camera_rotation, 0.0, 20.0, "degrees per frame")
        number("object_acceleration", self.object_acceleration, 0.0, 20.0, "pixels per frame per frame")
        number("object_rotation", self.object_rotation, 0.0, 45.0, "degrees per frame")
        number("object_zoom", self.object_zoom, 0.0, 0.2, "relative change per frame")
        number("texture_scale", self.texture_scale, 0.25, 16.0, "multiplier of texture feature sizes")
        number("lighting_change", self.lighting_change, 0.0, 0.5, "relative brightness change over the sequence")
        if self.scene not in SCENES:
            raise UserInputError(f"SyntheticConfig.scene must be one of {SCENES}; got {self.scene!r}")
        if self.photos is not None:
            chosen = (self.photos,) if isinstance(self.photos, str) else tuple(self.photos)
            unknown = [name for name in chosen if name not in photos.PHOTOS]
            if unknown or not chosen:
                raise UserInputError(f"SyntheticConfig.photos must name at least one of {sorted(photos.PHOTOS)}; "
                                     f"got {list(chosen)}")
            object.__setattr__(self, "photos", tuple(sorted(set(chosen))))
        for name, low, high, what in (
            ("object_speed", 0.0, 100.0, "pixels per frame"),
            ("object_size", 0.01, 1.0, "fraction of min(height, width)"),
        ):
            pair = getattr(self, name)
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise UserInputError(f"SyntheticConfig.{name} must be a (min, max) pair ({what}); got {pair!r}")
            lo = number(name, pair[0], low, high, what)
            hi = number(name, pair[1], low, high, what)
            if lo > hi:
                raise UserInputError(f"SyntheticConfig.{name} must be (min, max) with min <= max; got {pair!r}")
            object.__setattr__(self, name, (lo, hi))

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


@dataclass(eq=False)
class SyntheticSequence:
    """A generated sequence and its exact ground truth (numpy, I/O layout).

    Attributes:
        frames: ``(T, H, W, 3)`` uint8 RGB.
        flow_forward: ``(T-1, H, W, 2)`` float32; index k = flow frame k -> k+1 on frame k's grid, pixels.
        flow_backward: ``(T-1, H, W, 2)`` float32; index k = flow frame k+1 -> k on frame k+1's grid.
        occlusion_forward: ``(T-1, H, W)`` bool; index k = True where a pixel of frame k is not visible in
            frame k+1 (covered by a nearer layer, or its target leaves the frame).
        occlusion_backward: ``(T-1, H, W)`` bool; index k = True where a pixel of frame k+1 is not visible in
            frame k.
        layer_index: ``(T, H, W)`` uint8, which layer each pixel shows: 0 = background, i = object i
            (a larger index is nearer the camera).
        config: the :class:`SyntheticConfig` that produced it.
    """

    frames: np.ndarray
    flow_forward: np.ndarray
    flow_backward: np.ndarray
    occlusion_forward: np.ndarray
    occlusion_backward: np.ndarray
    layer_index: np.ndarray
    config: SyntheticConfig

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def num_pairs(self) -> int:
        return self.num_frames - 1

    @property
    def valid_forward(self) -> np.ndarray:
        """``(T-1, H, W)`` bool, True where a pixel of frame k is visible in frame k+1."""
        return ~self.occlusion_forward

    @property
    def valid_backward(self) -> np.ndarray:
        """``(T-1, H, W)`` bool, True where a pixel of frame k+1 is visible in frame k."""
        return ~self.occlusion_backward

    def frames_tensor(self, device=None):
        """All frames as a ``(T, 3, H, W)`` float32 torch tensor in [0, 1]."""
        return images.to_float(torch.from_numpy(self.frames).to(device))

    def pair(self, k: int, *, time_reversed: bool = False, device=None) -> dict:
        """Consecutive pair ``k`` as a pair sample (``docs/design.md``), tensors without batch dimension.

        By default time runs forwards: ``current`` = frame k+1, ``previous`` = frame k, ``flow`` = flow
        k+1 -> k (``flow_backward[k]``) and ``valid`` = pixels of frame k+1 visible in frame k. With
        ``time_reversed=True`` the pair is read as a Sintel loader reads it: ``current`` = frame k,
        ``previous`` = frame k+1, ``flow`` = ``flow_forward[k]``, ``valid`` = ``~occlusion_forward[k]``.
        Either way ``warp(previous, flow)`` lines up with ``current`` where ``valid`` is 1.

        Returns:
            dict with ``current``, ``previous`` ``(3, H, W)`` float32 in [0, 1], ``flow`` ``(2, H, W)``
            float32 pixels, ``valid`` ``(1, H, W)`` float32 in {0, 1}, and ``name``.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < self.num_pairs:
            raise UserInputError(f"pair index must be an integer in [0, {self.num_pairs - 1}]; got {k!r}")
        if time_reversed:
            cur, prev, flow, occ = k, k + 1, self.flow_forward[k], self.occlusion_forward[k]
        else:
            cur, prev, flow, occ = k + 1, k, self.flow_backward[k], self.occlusion_backward[k]

        def image(index: int):
            return images.to_float(torch.from_numpy(self.frames[index]).to(device))

        return {
            "current": image(cur),
            "previous": image(prev),
            "flow": torch.from_numpy(np.ascontiguousarray(flow)).to(device).permute(2, 0, 1).contiguous(),
            "valid": torch.from_numpy(~occ).to(device)[None].float(),
            "name": f"synthetic seed={self.config.seed} frame {cur} (previous {prev})",
        }

    def pairs(self, *, time_reversed: bool = False, device=None) -> dict:
        """All T-1 pairs of :meth:`pair`, batched: ``(T-1, C, H, W)`` tensors and a list of names."""
        samples = [self.pair(k, time_reversed=time_reversed, device=device) for k in range(self.num_pairs)]
        batch = {key: torch.stack([s[key] for s in samples]) for key in ("current", "previous", "flow", "valid")}
        batch["name"] = [s["name"] for s in samples]
        return batch


# --------------------------------------------------------------------------------------------------------
# Layers: shape, texture and motion
# --------------------------------------------------------------------------------------------------------


@dataclass
class _Texture:
    """A continuous colour field over the plane, built from random draws (see :func:`_draw_texture`)."""

    noise_tables: list[np.ndarray]  # per octave, (_LATTICE, _LATTICE, 3) values in [-1.3, 1.3]
    noise_periods: list[float]
    noise_amplitudes: list[float]
    warp_table: np.ndarray  # (_LATTICE, _LATTICE, 1), low-frequency phase noise for the pattern
    warp_period: float
    colours: np.ndarray  # (3, 3) RGB in [0, 1]: gradient ends and pattern colour
    gradient_direction: np.ndarray  # (2,) unit vector
    gradient_period: float
    gradient_phase: float
    pattern: str  # "stripes", "checks" or "rings"
    pattern_direction: np.ndarray  # (2,) unit vector
    pattern_period: float
    pattern_strength: float
    pattern_centre: np.ndarray  # (2,)
    offset: np.ndarray  # (2,), moves the texture's origin so layers differ


@dataclass
class _PhotoTexture:
    """A photo painted on a layer: layer point ``p`` shows ``pixels`` at ``p + origin`` (see photos.sample)."""

    pixels: np.ndarray  # (h, w, 3) float64 in [0, 1], already scaled to the layer's size
    origin: np.ndarray  # (2,) position in ``pixels`` of the layer's origin


@dataclass
class _Layer:
    shape: str  # "plane" (the background) or one of _SHAPES
    radii: tuple[float, float]
    blob_terms: np.ndarray  # (n, 3): harmonic, amplitude, phase (blob only)
    texture: _Texture | _PhotoTexture
    maps: np.ndarray  # (T, 3, 3) float64, layer coordinates -> image coordinates per frame
    inverses: np.ndarray  # (T, 3, 3)


def _value_noise(table: np.ndarray, p: np.ndarray, period: float) -> np.ndarray:
    """Smooth (C2, quintic fade) value noise of ``table`` at points ``p`` ``(N, 2)``; ``(N, C)`` in [-1, 1]."""
    q = p / period
    cell = np.floor(q)
    f = q - cell
    fade = f * f * f * (f * (f * 6.0 - 15.0) + 10.0)
    i0 = cell.astype(np.int64) % _LATTICE
    i1 = (i0 + 1) % _LATTICE
    fx, fy = fade[:, :1], fade[:, 1:]
    top = table[i0[:, 1], i0[:, 0]] * (1 - fx) + table[i0[:, 1], i1[:, 0]] * fx
    bottom = table[i1[:, 1], i0[:, 0]] * (1 - fx) + table[i1[:, 1], i1[:, 0]] * fx
    return top * (1 - fy) + bottom * fy


def _unit(rng: np.random.Generator) -> np.ndarray:
    angle = rng.uniform(0.0, 2.0 * math.pi)
    return np.array([math.cos(angle), math.sin(angle)])


def _palette(rng: np.random.Generator) -> np.ndarray:
    """Three RGB colours in [0, 1]: two for the slow gradient, one for the pattern (hues well apart)."""
    hue = rng.uniform(0.0, 1.0)
    hues = (hue, hue + rng.uniform(0.08, 0.25), hue + rng.uniform(0.35, 0.65))
    return np.array(
        [
            colorsys.hsv_to_rgb(h % 1.0, rng.uniform(0.35, 0.9), rng.uniform(0.35, 0.95))
            for h in hues
        ]
    )


def _draw_texture(rng: np.random.Generator, size: float, scale: float) -> _Texture:
    """Random rich texture; ``size`` is the layer's extent in pixels (sets the slow colour gradient)."""
    base_period = rng.uniform(24.0, 40.0) * scale
    periods = [base_period / 2**i for i in range(4)]  # down to ~3-5 px
    amplitudes = [0.14, 0.10, 0.08, 0.06]
    # Mostly luminance noise (the same in R, G and B) with a little colour noise.
    grid = (_LATTICE, _LATTICE)
    tables = [rng.uniform(-1.0, 1.0, size=(*grid, 1)) + 0.3 * rng.uniform(-1.0, 1.0, size=(*grid, 3)) for _ in periods]
    return _Texture(
        noise_tables=tables,
        noise_periods=periods,
        noise_amplitudes=amplitudes,
        warp_table=rng.uniform(-1.0, 1.0, size=(_LATTICE, _LATTICE, 1)),
        warp_period=rng.uniform(20.0, 40.0) * scale,
        colours=_palette(rng),
        gradient_direction=_unit(rng),
        gradient_period=rng.uniform(1.5, 3.0) * size,
        gradient_phase=rng.uniform(0.0, 2.0 * math.pi),
        pattern=("stripes", "checks", "rings")[int(rng.integers(3))],
        pattern_direction=_unit(rng),
        pattern_period=rng.uniform(7.0, 16.0) * scale,
        pattern_strength=rng.uniform(0.5, 0.85),
        pattern_centre=rng.uniform(-0.3, 0.3, size=2) * size,
        offset=rng.uniform(0.0, 4096.0, size=2),
    )


def _texture_colour(t: _Texture | _PhotoTexture, p: np.ndarray) -> np.ndarray:
    """Colour ``(N, 3)`` in [0, 1] of texture ``t`` at layer points ``p`` ``(N, 2)``."""
    if isinstance(t, _PhotoTexture):
        return photos.sample(t.pixels, p + t.origin)
    g = 0.5 + 0.5 * np.sin(2 * math.pi * (p @ t.gradient_direction) / t.gradient_period + t.gradient_phase)
    colour = t.colours[0] + (t.colours[1] - t.colours[0]) * g[:, None]

    phase = 2.5 * _value_noise(t.warp_table, p + t.offset, t.warp_period)[:, 0]
    if t.pattern == "stripes":
        s = 0.5 + 0.5 * np.sin(2 * math.pi * (p @ t.pattern_direction) / t.pattern_period + phase)
    elif t.pattern == "checks":
        d = t.pattern_direction
        a = p @ d
        b = p @ np.array([-d[1], d[0]])
        wave = np.sin(math.pi * a / t.pattern_period + 0.3 * phase) * np.sin(math.pi * b / t.pattern_period)
        s = 0.5 + 0.5 * np.tanh(3.0 * wave) / math.tanh(3.0)
    else:  # rings
        r = np.hypot(p[:, 0] - t.pattern_centre[0], p[:, 1] - t.pattern_centre[1])
        s = 0.5 + 0.5 * np.sin(2 * math.pi * r / t.pattern_period + phase)
    colour = colour + (t.colours[2] - colour) * (t.pattern_strength * s)[:, None]

    shifted = p + t.offset
    for table, period, amplitude in zip(t.noise_tables, t.noise_periods, t.noise_amplitudes):
        colour = colour + amplitude * _value_noise(table, shifted, period)
    return np.clip(colour, 0.0, 1.0)


def _contains(layer: _Layer, p: np.ndarray) -> np.ndarray:
    """Whether layer points ``p`` ``(N, 2)`` lie inside the layer's shape; ``(N,)`` bool."""
    if layer.shape == "plane":
        return np.ones(len(p), dtype=bool)
    a, b = layer.radii
    x, y = p[:, 0] / a, p[:, 1] / b
    if layer.shape == "ellipse":
        return x * x + y * y <= 1.0
    if layer.shape == "rounded_rectangle":
        return x**4 + y**4 <= 1.0
    # blob: star-shaped region r <= 1 + sum amp cos(n theta + phase) in normalised coordinates
    theta = np.arctan2(y, x)
    bound = np.ones_like(theta)
    for n, amplitude, phase in layer.blob_terms:
        bound += amplitude * np.cos(n * theta + phase)
    return x * x + y * y <= bound * bound


def _translation(t: np.ndarray) -> np.ndarray:
    m = np.eye(3)
    m[:2, 2] = t
    return m


def _similarity(angle_deg: float, scale: float) -> np.ndarray:
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    m = np.eye(3)
    m[:2, :2] = scale * np.array([[c, -s], [s, c]])
    return m


def _camera_maps(config: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """``(T, 3, 3)``: scene coordinates (frame 0's image coordinates) -> image coordinates of frame k."""
    pan = _unit(rng) * config.camera_pan * rng.uniform(0.5, 1.0)
    zoom = 1.0 + rng.uniform(-config.camera_zoom, config.camera_zoom)
    roll = rng.uniform(-config.camera_rotation, config.camera_rotation)
    centre = np.array([(config.width - 1) / 2.0, (config.height - 1) / 2.0])
    return np.stack(
        [
            _translation(centre + pan * k) @ _similarity(roll * k, zoom**k) @ _translation(-centre)
            for k in range(config.frames)
        ]
    )


def _object_maps(
    rng: np.random.Generator, config: SyntheticConfig, camera: np.ndarray, angle_range: tuple[float, float]
) -> np.ndarray:
    """``(T, 3, 3)`` maps of one object: a random start, velocity, acceleration, spin and growth, seen by the camera."""
    h, w, t = config.height, config.width, config.frames
    middle = (t - 1) / 2.0
    centre = np.array([rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h])
    velocity = _unit(rng) * rng.uniform(*config.object_speed)
    acceleration = _unit(rng) * rng.uniform(0.0, config.object_acceleration)
    angle0 = rng.uniform(*angle_range)
    spin = rng.uniform(-config.object_rotation, config.object_rotation)
    growth = 1.0 + rng.uniform(-config.object_zoom, config.object_zoom)
    return np.stack(
        [
            camera[k]
            @ _translation(centre + velocity * (k - middle) + 0.5 * acceleration * (k - middle) ** 2)
            @ _similarity(angle0 + spin * k, growth ** (k - middle))
            for k in range(t)
        ]
    )


def _layer(shape: str, radii, texture, maps: np.ndarray, terms: np.ndarray | None = None) -> _Layer:
    terms = np.zeros((0, 3)) if terms is None else terms
    return _Layer(shape=shape, radii=radii, blob_terms=terms, texture=texture, maps=maps, inverses=np.linalg.inv(maps))


def _draw_layers(config: SyntheticConfig) -> list[_Layer]:
    """Background and objects (bottom to top), all random draws in a fixed order from ``config.seed``."""
    if config.scene == "photo":
        return _draw_photo_layers(config)
    rng = np.random.default_rng(config.seed)
    h, w = config.height, config.width
    camera = _camera_maps(config, rng)
    layers = [_layer("plane", (1.0, 1.0), _draw_texture(rng, float(max(h, w)), config.texture_scale), camera)]
    for _ in range(config.objects):
        radius = rng.uniform(*config.object_size) * min(h, w)
        aspect = rng.uniform(0.55, 1.0)
        radii = (radius, radius * aspect) if rng.random() < 0.5 else (radius * aspect, radius)
        shape = _SHAPES[int(rng.integers(len(_SHAPES)))]
        terms = np.stack(
            [np.array([n, rng.uniform(0.05, 0.15), rng.uniform(0, 2 * math.pi)]) for n in (2, 3, 5)]
        )
        texture = _draw_texture(rng, 2.0 * radius, config.texture_scale)
        maps = _object_maps(rng, config, camera, (0.0, 360.0))
        layers.append(_layer(shape, radii, texture, maps, terms))
    return layers


def _draw_photo_layers(config: SyntheticConfig) -> list[_Layer]:
    """A photo background under the moving camera and photo cut-outs on top (see :mod:`reconet_lib.photos`).

    The background photo is scaled so that it covers the frame plus the camera's travel; its layer
    coordinates are the scene coordinates (frame 0's pixels). A cut-out of radius r (drawn like a procedural
    object's) shows its photo's object box scaled to fit the shape's radii, which follow the box's aspect.
    Layer membership keeps hard edges, so flows and occlusions stay exact at pixel centres.
    """
    rng = np.random.default_rng(config.seed)
    h, w, t = config.height, config.width, config.frames
    camera = _camera_maps(config, rng)
    names = sorted(photos.PHOTOS) if config.photos is None else list(config.photos)
    background = names[int(rng.integers(len(names)))]
    original = photos.photo_pixels(background)
    travel = config.camera_pan * (t - 1) + config.camera_zoom * (t - 1) * max(h, w)
    scale = max((w + 2 * travel + 8) / original.shape[1], (h + 2 * travel + 8) / original.shape[0])
    pixels = photos.resized(background, scale)
    slack = np.array([pixels.shape[1] - w, pixels.shape[0] - h], dtype=np.float64) / 2.0
    origin = slack + rng.uniform(-0.5, 0.5, size=2) * np.maximum(slack - travel - 4.0, 0.0)
    layers = [_layer("plane", (1.0, 1.0), _PhotoTexture(pixels, origin), camera)]

    # Cut-outs of the other photos, each used once before any repeats.
    cutouts = [(name, c) for name in names if name != background for c in photos.PHOTOS[name].cutouts]
    if not cutouts:  # a single photograph: its own objects move over it
        cutouts = [(background, c) for c in photos.PHOTOS[background].cutouts]
    order = []
    for _ in range(config.objects):
        if not order:
            order = list(rng.permutation(len(cutouts)))
        name, cutout = cutouts[int(order.pop())]
        x0, y0, x1, y1 = cutout.box
        radius = rng.uniform(*config.object_size) * min(h, w)
        fit = 2.0 * radius / max(x1 - x0, y1 - y0)  # the box's longer side spans the diameter
        radii = ((x1 - x0) * fit / 2.0, (y1 - y0) * fit / 2.0)
        pixels = photos.resized(name, fit)
        centre = np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0])
        origin = (centre + 0.5) * fit - 0.5  # the box centre in the scaled photo (see photos.resized)
        maps = _object_maps(rng, config, camera, (-15.0, 15.0))  # photos stay nearly upright
        layers.append(_layer(cutout.shape, radii, _PhotoTexture(pixels, origin), maps))
    return layers


def _lighting_gains(config: SyntheticConfig) -> np.ndarray:
    """``(T,)`` brightness factor of each frame: a ramp over the sequence, or ones (see ``lighting_change``)."""
    if config.lighting_change == 0.0:
        return np.ones(config.frames)
    rng = np.random.default_rng([config.seed, 1])  # its own stream: the layers' draws do not move
    change = rng.uniform(-config.lighting_change, config.lighting_change) if rng.random() < 0.5 else 0.0
    return 1.0 + change * np.linspace(0.0, 1.0, config.frames)


# --------------------------------------------------------------------------------------------------------
# Rendering and exact ground truth
# --------------------------------------------------------------------------------------------------------


def _apply(m: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Affine ``(3, 3)`` map applied to points ``(N, 2)``."""
    return x @ m[:2, :2].T + m[:2, 2]


def _owner(layers: list[_Layer], k: int, x: np.ndarray) -> np.ndarray:
    """Index ``(N,)`` of the topmost layer that frame k shows at image points ``x`` ``(N, 2)``."""
    owner = np.zeros(len(x), dtype=np.int64)
    for index in range(1, len(layers)):
        layer = layers[index]
        owner[_contains(layer, _apply(layer.inverses[k], x))] = index
    return owner


def _flow_and_cover(
    layers: list[_Layer], owner: np.ndarray, source: int, target: int, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Exact flow ``(N, 2)`` from frame ``source`` to ``target`` at image points ``x`` ``(N, 2)``, and
    ``(N,)`` bool: True where a nearer (or farther) layer than the pixel's own shows at its target."""
    y = np.empty_like(x)
    for index, layer in enumerate(layers):
        mine = owner == index
        if mine.any():
            y[mine] = _apply(layer.maps[target] @ layer.inverses[source], x[mine])
    return y - x, _owner(layers, target, y) != owner


def _outside(flow: np.ndarray) -> np.ndarray:
    """``(P, H, W)`` bool: targets outside the frame, by the very rule of :func:`reconet_lib.warp.inside_mask`."""
    inside = inside_mask(torch.from_numpy(flow).permute(0, 3, 1, 2))
    return inside[:, 0].numpy() < 0.5


def make_sequence(config: SyntheticConfig | None = None) -> SyntheticSequence:
    """Draw a sequence and compute its exact flows (both directions) and occlusion masks.

    The same config gives bit-identical arrays. See the module docstring for the model.

    Args:
        config: what to draw (default: :class:`SyntheticConfig()`, 8 frames of 96 x 128).
    Returns:
        A :class:`SyntheticSequence` (frames ``(T, H, W, 3)`` uint8, flows ``(T-1, H, W, 2)`` float32, ...).
    """
    config = SyntheticConfig() if config is None else config
    if not isinstance(config, SyntheticConfig):
        raise UserInputError(f"make_sequence needs a SyntheticConfig; got {type(config).__name__}")
    h, w, t = config.height, config.width, config.frames
    layers = _draw_layers(config)
    gains = _lighting_gains(config)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    pixels = np.stack([xs.ravel(), ys.ravel()], axis=1)

    frames = np.empty((t, h * w, 3), dtype=np.uint8)
    owners = np.empty((t, h * w), dtype=np.int64)
    for k in range(t):
        owner = _owner(layers, k, pixels)
        colour = np.empty((h * w, 3))
        for index, layer in enumerate(layers):
            mine = owner == index
            if mine.any():
                colour[mine] = _texture_colour(layer.texture, _apply(layer.inverses[k], pixels[mine]))
        frames[k] = images.uint8_array(colour * gains[k])
        owners[k] = owner

    flow_fw = np.empty((t - 1, h * w, 2), dtype=np.float32)
    flow_bw = np.empty_like(flow_fw)
    occ_fw = np.empty((t - 1, h * w), dtype=bool)
    occ_bw = np.empty_like(occ_fw)
    for k in range(t - 1):
        flow_fw[k], occ_fw[k] = _flow_and_cover(layers, owners[k], k, k + 1, pixels)
        flow_bw[k], occ_bw[k] = _flow_and_cover(layers, owners[k + 1], k + 1, k, pixels)
    flow_fw = flow_fw.reshape(t - 1, h, w, 2)
    flow_bw = flow_bw.reshape(t - 1, h, w, 2)
    # Out of frame is judged on the stored float32 flow, so it agrees bit for bit with inside_mask.
    occ_fw = occ_fw.reshape(t - 1, h, w) | _outside(flow_fw)
    occ_bw = occ_bw.reshape(t - 1, h, w) | _outside(flow_bw)

    return SyntheticSequence(
        frames=frames.reshape(t, h, w, 3),
        flow_forward=flow_fw,
        flow_backward=flow_bw,
        occlusion_forward=occ_fw,
        occlusion_backward=occ_bw,
        layer_index=owners.reshape(t, h, w).astype(np.uint8),
        config=config,
    )


# --------------------------------------------------------------------------------------------------------
# MPI Sintel training layout
# --------------------------------------------------------------------------------------------------------


def _check_scene_name(scene: str) -> None:
    if not isinstance(scene, str) or not scene or scene in (".", "..") or scene.startswith(".") or any(
        c in scene for c in "/\\\0"
    ):
        raise UserInputError(f"scene must be a plain folder name such as 'synthetic_000'; got {scene!r}")


def _check_passes(passes: Sequence[str]) -> tuple[str, ...]:
    if isinstance(passes, str):
        passes = (passes,)
    passes = tuple(passes)
    if not passes or any(p not in PASSES for p in passes) or len(set(passes)) != len(passes):
        raise UserInputError(f"passes must be a non-empty selection of {PASSES} without repeats; got {passes!r}")
    return passes


def write_sintel_layout(
    sequence: SyntheticSequence,
    root: str | os.PathLike,
    scene: str = "synthetic_000",
    passes: Sequence[str] = ("clean",),
) -> Path:
    """Write a sequence in the MPI Sintel training layout under ``root`` (which plays Sintel's ``training``).

    The layout's names and polarity come from :mod:`reconet_lib.sintel`. Files (k counts frames from 1, as
    Sintel does): ``<pass>/<scene>/frame_%04d.png`` for k = 1..T; ``flow/<scene>/frame_%04d.flo`` = flow
    k -> k+1 and ``occlusions/<scene>/frame_%04d.png`` (255 where a pixel of frame k is not visible in k+1,
    0 elsewhere) for k = 1..T-1; ``flow_backward/<scene>/`` = flow
    k -> k-1 and ``occlusions_backward/<scene>/`` (255 where a pixel of frame k is not visible in k-1) for
    k = 2..T. Finally ``synthetic_records/<scene>.json`` records the config; it marks the scene complete.

    Everything is first written into a staging folder under ``root`` and then moved into place one folder at
    a time, flows and masks before frames and the record last, so a reader never sees a half-written folder
    and :func:`generate_dataset` never takes an interrupted scene as done. An existing scene is replaced.

    Args:
        sequence: from :func:`make_sequence`.
        root: layout root (created if missing).
        scene: scene folder name.
        passes: pass folders to write, from ``("clean", "final")`` (both get the same frames).
    Returns:
        ``root`` as a :class:`~pathlib.Path`.
    """
    if not isinstance(sequence, SyntheticSequence):
        raise UserInputError(f"write_sintel_layout needs a SyntheticSequence; got {type(sequence).__name__}")
    _check_scene_name(scene)
    passes = _check_passes(passes)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    t = sequence.num_frames
    record_path = root / RECORD_DIR / f"{scene}.json"
    record_path.unlink(missing_ok=True)  # the scene is incomplete from now until the record is back

    sweep_stale(root / f"staging-{scene}")  # left by a killed writer of this scene
    staging = partial_path(root / f"staging-{scene}")
    staging.mkdir()
    try:
        folders = {name: staging / name for name in sintel.scene_files(t, passes)}
        for folder in folders.values():
            folder.mkdir()
        for k in range(1, t):  # Sintel numbering: the pair joins frames k and k+1 (array indices k-1 and k)
            for step, flows, occluded, stored_under in (
                (1, sequence.flow_forward, sequence.occlusion_forward, k),
                (-1, sequence.flow_backward, sequence.occlusion_backward, k + 1),
            ):
                name = sintel.frame_name(stored_under)
                write_flo(folders[sintel.flow_folder(step)] / sintel.frame_name(stored_under, ".flo"), flows[k - 1])
                sintel.write_png(folders[sintel.occlusion_folder(step)] / name, sintel.mask_png(occluded[k - 1]))
        for k in range(1, t + 1):
            sintel.write_png(folders[passes[0]] / sintel.frame_name(k), sequence.frames[k - 1])
        for extra in passes[1:]:
            for name in os.listdir(folders[passes[0]]):
                shutil.copyfile(folders[passes[0]] / name, folders[extra] / name)

        for name in (*(n for n in folders if n not in passes), *passes):  # frames last
            swap_in(folders[name], root / name / scene)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    record = {
        "format": _RECORD_FORMAT,
        "format_version": _RECORD_VERSION,
        "scene": scene,
        "frames": t,
        "passes": list(passes),
        "config": sequence.config.to_dict(),
    }
    atomic_write_text(record_path, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return root


def scene_is_complete(
    root: str | os.PathLike, scene: str, config: SyntheticConfig, passes: Sequence[str] = ("clean",)
) -> bool:
    """Whether ``root`` holds a complete scene written by :func:`write_sintel_layout` from ``config``."""
    root = Path(root)
    passes = _check_passes(passes)
    try:
        record = json.loads((root / RECORD_DIR / f"{scene}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if (
        not isinstance(record, dict)
        or record.get("format") != _RECORD_FORMAT
        or record.get("format_version") != _RECORD_VERSION
        or record.get("config") != config.to_dict()
        or not set(passes) <= set(record.get("passes", ()))
    ):
        return False
    for folder, names in sintel.scene_files(config.frames, passes).items():
        if not all((root / folder / scene / name).is_file() for name in names):
            return False
    return True


def generate_dataset(
    root: str | os.PathLike,
    scenes: int = 3,
    config: SyntheticConfig | None = None,
    overwrite: bool = False,
    passes: Sequence[str] = ("clean",),
) -> Path:
    """Write scenes ``synthetic_000``, ``synthetic_001``, ... (seeds ``config.seed + i``) in the Sintel layout.

    Scenes already complete with the same config are kept (a cache); missing, interrupted or differently
    configured ones are (re)generated. ``overwrite=True`` regenerates every scene. Scenes beyond ``scenes``
    that already exist are left alone.

    Args:
        root: layout root (Sintel's ``training`` folder).
        scenes: number of scenes (at least 1).
        config: per-scene config (default :class:`SyntheticConfig()`); scene i uses ``seed = config.seed + i``.
        overwrite: regenerate complete scenes too.
        passes: pass folders to write (see :func:`write_sintel_layout`).
    Returns:
        ``root`` as a :class:`~pathlib.Path`.
    """
    config = SyntheticConfig() if config is None else config
    if not isinstance(config, SyntheticConfig):
        raise UserInputError(f"generate_dataset needs a SyntheticConfig; got {type(config).__name__}")
    if isinstance(scenes, bool) or not isinstance(scenes, (int, np.integer)) or not 1 <= scenes <= 1000:
        raise UserInputError(f"scenes must be an integer between 1 and 1000; got {scenes!r}")
    passes = _check_passes(passes)
    root = Path(root)
    for i in range(scenes):
        scene_config = dataclasses.replace(config, seed=config.seed + i)
        scene = f"synthetic_{i:03d}"
        if not overwrite and scene_is_complete(root, scene, scene_config, passes):
            continue
        write_sintel_layout(make_sequence(scene_config), root, scene=scene, passes=passes)
    return root


def default_config(quick: bool, scene: str = "photo") -> SyntheticConfig:
    """The per-scene config of :func:`default_dataset`: 192 x 256 x 8 frames (quick) or 192 x 320 x 12 (full).

    ``scene="photo"`` (the default: scikit-image photographs, a lighting ramp in half of the scenes) or
    ``"procedural"`` (noise textures, constant lighting).
    """
    if scene not in SCENES:
        raise UserInputError(f"scene must be one of {SCENES}; got {scene!r}")
    lighting = {"lighting_change": 0.2} if scene == "photo" else {}
    if quick:  # 256 px wide: what the notebooks show is readable without blowing it up
        return SyntheticConfig(height=192, width=256, frames=8, objects=3, camera_pan=4.0, object_speed=(2.5, 7.0),
                               texture_scale=1.5, scene=scene, **lighting)
    return SyntheticConfig(
        height=192, width=320, frames=12, objects=5, camera_pan=4.0, object_speed=(2.5, 7.0), texture_scale=1.5,
        scene=scene, **lighting,
    )


def default_scene_count(quick: bool) -> int:
    """Number of scenes of :func:`default_dataset`: 3 (quick) or 6 (full)."""
    return 3 if quick else 6


def default_dataset(quick: bool | None = None, scene: str = "photo") -> Path:
    """The synthetic dataset used when no real one is at hand, generated on first use and cached.

    Lives at ``data_dir()/synthetic/{quick,full}/training`` (photo scenes) or
    ``data_dir()/synthetic/{quick,full}-procedural/training`` in the Sintel training layout; quick mode
    (default: :func:`reconet_lib.config.quick_mode`) has 3 scenes of 8 frames at 256 x 192 (W x H), full mode
    6 scenes of 12 frames at 320 x 192 (:func:`default_config`).

    Returns:
        The layout root (pass it wherever a Sintel ``training`` folder is expected).
    """
    quick = quick_mode() if quick is None else bool(quick)
    config = default_config(quick, scene)
    folder = ("quick" if quick else "full") + ("" if scene == "photo" else f"-{scene}")
    root = data_dir() / "synthetic" / folder / "training"
    return generate_dataset(root, scenes=default_scene_count(quick), config=config)
