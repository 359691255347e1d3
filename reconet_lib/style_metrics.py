"""How much of the picture a stylisation keeps, and how much of the painting it takes on.

Two numbers that say whether a result "looks like style transfer", as opposed to a copy of the input (keeps
everything, takes on nothing) or a smear (takes on the palette, keeps nothing):

* :func:`edge_correlation`: Pearson correlation between the Sobel gradient magnitudes of the input's and the
  output's luminance (BT.709). 1 = every edge where it was, in proportion; about 0 = the structure is gone.
* :func:`colour_distance` / :func:`relative_colour_distance`: the sliced Wasserstein-1 distance between two
  sets of RGB colours (Rabin, Peyre, Delon, Bernot 2011): the average, over random directions in RGB space, of
  the distance between the two sorted 1-D projections. Relative to the style: ``SW(output, style) /
  SW(input, style)``; 1 = no closer to the painting's palette than the photograph was, 0 = the painting's
  colours exactly.

Images are ``(B, 3, H, W)`` float tensors in [0, 1]; the results are Python floats. Randomness (the projection
directions) comes from a seeded generator, so the numbers are reproducible.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import UserInputError
from .warp import luminance


def _check(images: torch.Tensor, name: str) -> torch.Tensor:
    if images.dim() != 4 or images.shape[1] != 3:
        raise UserInputError(f"{name} must be RGB images (B, 3, H, W) in [0, 1]; got {tuple(images.shape)}")
    return images.detach().float().cpu()


def sobel_magnitude(images: torch.Tensor) -> torch.Tensor:
    """Gradient magnitude of the luminance, ``(B, 1, H - 2, W - 2)`` (Sobel 3 x 3, valid part only)."""
    y = luminance(_check(images, "images"))
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]).view(1, 1, 3, 3)
    gx = F.conv2d(y, kx)
    gy = F.conv2d(y, kx.transpose(2, 3))
    return torch.sqrt(gx * gx + gy * gy)


def edge_correlation(inputs: torch.Tensor, outputs: torch.Tensor) -> float:
    """Pearson correlation of the Sobel magnitudes of ``inputs`` and ``outputs`` (same shape), over all pixels.

    Returns a float in [-1, 1]; NaN-free: an input or output without any edge gives 0.
    """
    if inputs.shape != outputs.shape:
        raise UserInputError(f"edge_correlation: shapes differ, {tuple(inputs.shape)} vs {tuple(outputs.shape)}")
    if min(inputs.shape[-2:]) < 3:
        raise UserInputError(f"edge_correlation needs images of at least 3 x 3 pixels; got {tuple(inputs.shape)}")
    a = sobel_magnitude(inputs).flatten().double()
    b = sobel_magnitude(outputs).flatten().double()
    a, b = a - a.mean(), b - b.mean()
    denominator = a.norm() * b.norm()
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


def colour_distance(a: torch.Tensor, b: torch.Tensor, *, directions: int = 64, quantiles: int = 512,
                    seed: int = 0) -> float:
    """Sliced Wasserstein-1 distance between the colours of ``a`` and ``b`` (any sizes), in [0, 1] units.

    Args:
        a, b: ``(B, 3, H, W)`` images in [0, 1]; all their pixels form one colour set each.
        directions: random unit directions in RGB space.
        quantiles: each sorted projection is compared at this many evenly spaced quantiles (so sets of
            different sizes compare).
        seed: seed of the directions.
    """
    pa = _check(a, "a").permute(0, 2, 3, 1).reshape(-1, 3).double()
    pb = _check(b, "b").permute(0, 2, 3, 1).reshape(-1, 3).double()
    generator = torch.Generator().manual_seed(seed)
    d = torch.randn(3, directions, generator=generator, dtype=torch.float64)
    d = d / d.norm(dim=0, keepdim=True)
    q = torch.linspace(0.0, 1.0, quantiles, dtype=torch.float64)
    sa = torch.quantile((pa @ d)[:: max(1, pa.shape[0] // 200_000)], q, dim=0)
    sb = torch.quantile((pb @ d)[:: max(1, pb.shape[0] // 200_000)], q, dim=0)
    return float((sa - sb).abs().mean())


def relative_colour_distance(inputs: torch.Tensor, outputs: torch.Tensor, style: torch.Tensor) -> float:
    """``colour_distance(outputs, style) / colour_distance(inputs, style)``: below 1 = closer to the painting."""
    before = colour_distance(inputs, style)
    if before == 0:
        raise UserInputError("relative_colour_distance: the input already has the style's colours (distance 0)")
    return colour_distance(outputs, style) / before
