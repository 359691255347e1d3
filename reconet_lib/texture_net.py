"""A candidate offline loss network: random multi-scale texture features.

When the ImageNet VGG-16 weights cannot be had (no network, ``RECONET_OFFLINE=1``), the tutorial still has to
train a model that visibly paints. One stand-in is VGG-16 with *random* weights, whose deep layers mix
everything into noise and whose feature scale has nothing to do with the ImageNet network's. Ustyuzhaninov,Ustyuzhaninov,
Brendel, Gatys and Bethge (*What does it take to generate natural textures?*, ICLR 2017) showed that a single
layer of random convolution filters at several spatial scales, followed by a ReLU, already gives Gram
statistics good enough to synthesise natural textures. This module builds such a network, with one change for
speed: instead of ever larger filters (their 3 to 23 pixels) every scale uses the same small filter on an
image pyramid (average pooling by 1, 2, 4, 8: receptive fields of 5, 10, 20 and 40 pixels), which costs about
a hundredth of the large filters.

:class:`RandomTextureFeatures` has the interface of :class:`reconet_lib.losses.VGGFeatures`: ``forward(x,
layers)`` returns ``{layer: (B, C, H', W')}``, ``layers`` and ``weights_source`` name what it holds. Its layers
are ``"scale1"``, ``"scale2"``, ``"scale4"`` and ``"scale8"`` (:data:`TEXTURE_LAYERS`). Because its feature
scales are arbitrary, the losses compare them *relatively* (``LossWeights.normalise="relative"``): each Gram
term is divided by the mean square of the style's Gram, each content term by the mean square of the target
features (:mod:`reconet_lib.losses`).

The filters are drawn from a seeded generator (the global RNG is not touched), each made zero-mean over its
taps *per input channel* (so that a flat image gives a response that depends only on its colour, through the
bias-free sum over channels; see :func:`_random_filters`) and scaled to unit norm.

``benchmarks/quick_recipe.py`` measured this network against the seeded random VGG-16 with relative terms
(:meth:`reconet_lib.losses.LossWeights.offline`) for the tutorial's quick recipe; the random VGG-16 kept more of
the picture's structure for the same pull towards the painting's colours, so the tutorial uses it offline
(table in ``docs/results.md``) and this module stays as the measured alternative. Either way it is a teaching
stand-in: the real loss network of ReCoNet is ImageNet VGG-16.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import UserInputError

#: Layer names and their pyramid factor (the image is average-pooled by this factor before the filters).
#: ``"colour"`` is a bank of 1 x 1 filters: random projections of each pixel's colour, whose Gram statistics
#: describe the painting's palette (the other layers use ``kernel x kernel`` filters).
TEXTURE_LAYERS = {"colour": 1, "scale1": 1, "scale2": 2, "scale4": 4, "scale8": 8}

#: What :attr:`RandomTextureFeatures.weights_source` reports (and what checkpoints and logs record).
SOURCE_NAME = "random multi-scale texture network"


def _random_filters(generator: torch.Generator, maps: int, kernel: int) -> torch.Tensor:
    """``(maps, 3, kernel, kernel)`` float32 filters: Gaussian, half of each filter's taps spatially zero-mean.

    A filter whose taps sum to zero in every input channel answers only to edges and texture; one that does not
    also answers to colour. The first half of the maps are edge/texture detectors (zero-mean per channel), the
    second half keep their mean, so the Gram statistics hold both the painting's strokes and its palette. Every
    filter has unit L2 norm.
    """
    weight = torch.randn(maps, 3, kernel, kernel, generator=generator)
    if kernel > 1:  # a 1 x 1 filter has no spatial taps to balance: all of it answers to colour
        half = maps // 2
        weight[:half] -= weight[:half].mean(dim=(2, 3), keepdim=True)
    return weight / weight.flatten(1).norm(dim=1).view(-1, 1, 1, 1)


class RandomTextureFeatures(nn.Module):
    """Random multi-scale texture features (a frozen, offline loss network; see the module docstring).

    ``forward(x)`` takes ``(B, 3, H, W)`` RGB images in [0, 1] (centred by subtracting 0.5 inside), and returns
    ``{layer: (B, maps, H // f, W // f)}`` for the requested layers, where ``f`` is the layer's pyramid factor
    (:data:`TEXTURE_LAYERS`): ``ReLU(conv(avgpool_f(x - 0.5), W_f))`` with a ``kernel x kernel`` random filter
    bank ``W_f`` per scale, reflection-padded so that sizes are kept. Parameters are frozen; gradients flow to
    the input.

    Args:
        layers: names from :data:`TEXTURE_LAYERS` to build (default: all four).
        maps: filters per scale (default 128).
        kernel: filter size in pixels at every scale (odd, default 5).
        seed: seed of the filters (same seed, same network, on every machine).
        device, dtype: where and in which dtype to keep the filters.
    """

    def __init__(self, *, layers: Iterable[str] = tuple(TEXTURE_LAYERS), maps: int = 128, kernel: int = 5,
                 seed: int = 0, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.layers = check_texture_layers(layers)
        if not isinstance(maps, int) or maps < 2:
            raise UserInputError(f"RandomTextureFeatures: maps must be an integer >= 2; got {maps!r}")
        if not isinstance(kernel, int) or kernel < 1 or kernel % 2 == 0:
            raise UserInputError(f"RandomTextureFeatures: kernel must be an odd integer >= 1; got {kernel!r}")
        self.kernel = kernel
        self.weights_source = SOURCE_NAME
        generator = torch.Generator().manual_seed(int(seed))
        # Draw every scale's filters in a fixed order, so that a layer's filters do not depend on which
        # other layers were asked for.
        banks = {name: _random_filters(generator, maps, 1 if name == "colour" else kernel) for name in TEXTURE_LAYERS}
        for name in self.layers:
            self.register_buffer(f"filters_{name}", banks[name])
        self.to(device=device, dtype=dtype)

    def train(self, mode: bool = True) -> "RandomTextureFeatures":
        """The loss network is frozen; ``train()`` is a no-op."""
        return super().train(False)

    def forward(self, x: torch.Tensor, layers: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        """Features of ``x`` ``(B, 3, H, W)`` in [0, 1] at ``layers`` (default: all built layers)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise UserInputError(
                f"RandomTextureFeatures expects RGB images (B, 3, H, W) in [0, 1]; got {tuple(x.shape)}")
        wanted = self.layers if layers is None else check_texture_layers(layers)
        missing = [name for name in wanted if name not in self.layers]
        if missing:
            raise UserInputError(f"layers {missing} were not built; construct RandomTextureFeatures(layers=...)")
        weight_dtype = getattr(self, f"filters_{self.layers[0]}").dtype
        centred = x.to(weight_dtype) - 0.5
        out = {}
        for name in wanted:
            factor = TEXTURE_LAYERS[name]
            pad = 0 if name == "colour" else self.kernel // 2
            image = centred if factor == 1 else F.avg_pool2d(centred, factor, ceil_mode=True)
            if pad and min(image.shape[-2:]) > pad:
                image = F.pad(image, (pad,) * 4, mode="reflect")
            elif pad:
                image = F.pad(image, (pad,) * 4, mode="replicate")
            out[name] = F.relu(F.conv2d(image, getattr(self, f"filters_{name}")))
        return out

    def extra_repr(self) -> str:
        return f"layers={list(self.layers)}, kernel={self.kernel}"


def check_texture_layers(layers: Iterable[str]) -> tuple[str, ...]:
    """``layers`` as a tuple of known texture-layer names (one clear error otherwise)."""
    if isinstance(layers, str):
        layers = (layers,)
    names = tuple(dict.fromkeys(layers))
    unknown = [name for name in names if name not in TEXTURE_LAYERS]
    if unknown or not names:
        raise UserInputError(
            f"texture layers must be a non-empty selection of {list(TEXTURE_LAYERS)}; got {list(names)}")
    return names
