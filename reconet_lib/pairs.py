"""Pair samples and the transforms that keep frames, flow and mask consistent.

A **pair sample** is a dict (no batch dimension):

- ``current``  ``(3, H, W)`` float32 RGB in [0, 1]: frame t;
- ``previous`` ``(3, H, W)`` float32 RGB in [0, 1]: frame t-1 (or, time-reversed, frame k+1);
- ``flow``     ``(2, H, W)`` float32, flow **current -> previous** in pixels, on the current frame's grid,
  so ``warp(previous, flow)`` lines up with ``current``;
- ``valid``    ``(1, H, W)`` float32, 1 = this pixel of the current frame is visible in the previous one
  (not occluded, flow known, target inside the frame);
- ``name``     a string ``"<source>/<...>/<current>-><previous>"`` naming the two frames.

:func:`make_sample` builds one and applies the rules every source shares: unknown flow (NaN, or beyond 1e9 in
``.flo`` files) becomes flow 0 with valid 0, and a pixel whose flow points outside the previous frame is invalid.

Augmentation (:class:`PairAugment`: resize, random scale, random crop, horizontal flip) acts on the whole pair
so that the warp relation survives: see :func:`resize_pair`, :func:`random_crop_pair`, :func:`hflip_pair`. Its
randomness comes from a ``torch.Generator`` that the caller passes in (:func:`sample_generator` makes the one a
dataset uses for sample ``index`` when none is given); torch's global RNG is never used.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from . import flow as flowio
from . import images
from .errors import UserInputError
from .sizes import size_pair
from .warp import inside_mask

#: The keys of a pair sample, in documentation order.
PAIR_KEYS = ("current", "previous", "flow", "valid", "name")


def make_sample(current, previous, flow, valid, name: str) -> dict:
    """Assemble a pair sample and apply the rules every dataset shares.

    Unknown flow (NaN / infinite / beyond 1e9) becomes 0 with valid 0; pixels whose target ``x + flow(x)``
    falls outside the previous frame become invalid; ``valid`` is binarised (1 only where it is >= 1).

    Args:
        current, previous: ``(3, H, W)`` float tensors in [0, 1] or uint8 ``(H, W, 3)`` arrays.
        flow: ``(2, H, W)`` tensor or ``(H, W, 2)`` numpy flow current -> previous, pixels.
        valid: ``(1, H, W)`` / ``(H, W)`` tensor or array, 1 (True) = visible in the previous frame.
        name: names the source frames.
    Returns:
        the sample dict described in the module docstring.
    """
    current = _as_image(current, "current")
    previous = _as_image(previous, "previous")
    if isinstance(flow, np.ndarray):
        flow = torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32)).permute(2, 0, 1)
    flow = flow.float()
    valid = torch.as_tensor(np.asarray(valid) if not isinstance(valid, torch.Tensor) else valid).float()
    if valid.dim() == 2:
        valid = valid[None]
    h, w = current.shape[-2:]
    if previous.shape != current.shape or flow.shape != (2, h, w) or valid.shape != (1, h, w):
        raise UserInputError(
            f"{name}: pair parts differ in size: current {tuple(current.shape)}, previous {tuple(previous.shape)}, "
            f"flow {tuple(flow.shape)}, valid {tuple(valid.shape)}; all must share the current frame's H, W"
        )
    known = ~flowio.unknown_mask(flow)  # (H, W)
    flow = torch.where(known[None], flow, torch.zeros((), dtype=flow.dtype))
    valid = (valid >= 1) & known[None]
    valid = valid.float() * inside_mask(flow[None])[0]
    return {"current": current, "previous": previous, "flow": flow.contiguous(), "valid": valid, "name": str(name)}


def _as_image(image, what: str) -> torch.Tensor:
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
            raise UserInputError(f"{what}: numpy frames must be uint8 (H, W, 3); got {image.dtype} {image.shape}")
        return images.to_float(image)
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3:
        shape = tuple(image.shape) if hasattr(image, "shape") else type(image).__name__
        raise UserInputError(f"{what}: frames must be (3, H, W) tensors in [0, 1]; got {shape}")
    return image.float()


def check_sample(sample: dict) -> None:
    """Raise ``UserInputError`` unless ``sample`` is a pair sample (keys, shapes, dtypes)."""
    missing = [k for k in PAIR_KEYS if k not in sample]
    if missing:
        raise UserInputError(f"a pair sample needs the keys {PAIR_KEYS}; missing {missing}")
    current = sample["current"]
    if not isinstance(current, torch.Tensor) or current.dim() != 3 or current.shape[0] != 3:
        raise UserInputError(f"sample['current'] must be (3, H, W); got {getattr(current, 'shape', current)!r}")
    h, w = current.shape[-2:]
    expected = {"previous": (3, h, w), "flow": (2, h, w), "valid": (1, h, w)}
    for key, shape in expected.items():
        value = sample[key]
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
            raise UserInputError(f"sample[{key!r}] must have shape {shape}; got {tuple(getattr(value, 'shape', ()))}")


# ==============================================================================================================
# Pair transforms
# ==============================================================================================================


def resize_pair(sample: dict, size: tuple[int, int]) -> dict:
    """Resize a pair to ``size = (h, w)``.

    - Images: :func:`reconet_lib.images.resize` (bilinear with antialiasing, ``align_corners=False``), so
      shrinking averages instead of aliasing.
    - Flow: :func:`reconet_lib.flow.resize_flow` (bilinear, ``u *= w / W``, ``v *= h / H``).
    - Valid, conservatively: a new pixel is valid only if **every** source pixel that the (antialiased)
      bilinear filter draws on with a non-zero weight is valid. This is the invalid mask ``valid < 1``
      resized with the same filter, then "any invalid contribution makes it invalid" (max-pooling semantics
      over the filter's support). Flow interpolated across an occlusion edge is thus never trusted.
      Finally pixels whose resized flow leaves the frame are invalid.

    Args:
        sample: a pair sample (see the module docstring).
        size: target ``(h, w)``.
    Returns:
        a new sample of size ``(h, w)`` (same ``name``).
    """
    h, w = size_pair(size, "resize_pair")
    if tuple(sample["current"].shape[-2:]) == (h, w):
        return dict(sample)
    frames = images.resize(torch.stack([sample["current"], sample["previous"]]), (h, w)).clamp_(0, 1)
    flow = flowio.resize_flow(sample["flow"][None].float(), (h, w))
    invalid = images.resize((sample["valid"][None] < 1).float(), (h, w))  # the same filter, so the same support
    valid = (invalid <= 0).float() * inside_mask(flow)
    return {**sample, "current": frames[0], "previous": frames[1], "flow": flow[0], "valid": valid[0]}


def random_crop_pair(sample: dict, size: tuple[int, int], generator: torch.Generator | None = None) -> dict:
    """Cut the same random window ``(h, w)`` out of both frames, the flow and the mask.

    Both frames move by the same offset, so flow vectors (displacements) are unchanged. Pixels whose
    correspondence now falls outside the cropped previous frame become invalid.

    Args:
        sample: a pair sample of size ``(H, W)`` with ``h <= H`` and ``w <= W``.
        size: crop ``(h, w)``. A crop larger than the sample raises ``UserInputError``
            (:class:`PairAugment` instead enlarges the sample first).
        generator: source of the random offset (``None``: torch's global RNG).
    Returns:
        a new sample of size ``(h, w)``.
    """
    h, w = size_pair(size, "random_crop_pair")
    height, width = sample["current"].shape[-2:]
    if h > height or w > width:
        raise UserInputError(
            f"random_crop_pair: crop {(h, w)} is larger than the sample {(height, width)} ({sample.get('name')}); "
            "resize the pair first (resize_pair), or use PairAugment, which enlarges small samples to fit"
        )
    top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
    window = (..., slice(top, top + h), slice(left, left + w))
    flow = sample["flow"][window]
    valid = sample["valid"][window] * inside_mask(flow[None])[0]
    return {
        **sample,
        "current": sample["current"][window],
        "previous": sample["previous"][window],
        "flow": flow,
        "valid": valid,
    }


def hflip_pair(sample: dict) -> dict:
    """Mirror a pair left-right: both frames and the mask are flipped, the flow by ``hflip_flow`` (flip, -u).

    The flow keeps its direction in time (current -> previous); this is a change of coordinates. Applying it
    twice returns the original sample exactly.
    """
    return {
        **sample,
        "current": sample["current"].flip(-1),
        "previous": sample["previous"].flip(-1),
        "flow": flowio.hflip_flow(sample["flow"][None])[0],
        "valid": sample["valid"].flip(-1),
    }


@dataclass
class PairAugment:
    """Augmentation of pair samples, applied in this order:

    1. ``size``: resize to ``(h, w)`` (:func:`resize_pair`), if given;
    2. ``scale_range``: resize by a random factor drawn uniformly from ``(low, high)`` (aspect kept);
    3. ``crop``: random crop ``(h, w)`` (:func:`random_crop_pair`). A sample smaller than the crop is first
       enlarged (aspect kept) by the smallest factor that makes it fit (:meth:`enlargement`; training says so in
       a one-line notice, :func:`reconet_lib.train.sampling.build_dataset`);
    4. ``flip_probability``: horizontal flip (:func:`hflip_pair`) with this probability.

    Call it as ``augment(sample, generator)``. Use a fixed ``size`` or ``crop`` whenever samples of different
    sizes end up in one batch.
    """

    size: tuple[int, int] | None = None
    crop: tuple[int, int] | None = None
    flip_probability: float = 0.5
    scale_range: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self) -> None:
        if self.size is not None:
            self.size = size_pair(self.size, "PairAugment.size")
        if self.crop is not None:
            self.crop = size_pair(self.crop, "PairAugment.crop")
        if not 0.0 <= float(self.flip_probability) <= 1.0:
            raise UserInputError(f"PairAugment.flip_probability must be in [0, 1]; got {self.flip_probability!r}")
        low, high = (float(s) for s in self.scale_range)
        if not (0 < low <= high and math.isfinite(high)):
            raise UserInputError(
                f"PairAugment.scale_range must be (low, high) with 0 < low <= high; got {self.scale_range!r}"
            )
        self.scale_range = (low, high)

    def enlargement(self, height: int, width: int) -> float:
        """The factor (>= 1) by which the crop step enlarges a sample of ``height x width`` pixels (after ``size``,
        before any random scale): 1.0 when the crop fits the data, more when the data is smaller than the crop."""
        if self.size is not None:
            height, width = self.size
        if self.crop is None:
            return 1.0
        return max(1.0, self.crop[0] / height, self.crop[1] / width)

    def __call__(self, sample: dict, generator: torch.Generator | None = None) -> dict:
        if self.size is not None:
            sample = resize_pair(sample, self.size)
        low, high = self.scale_range
        if high > low or low != 1.0:
            factor = low + (high - low) * float(torch.rand((), generator=generator))
            height, width = sample["current"].shape[-2:]
            sample = resize_pair(sample, (max(1, round(height * factor)), max(1, round(width * factor))))
        if self.crop is not None:
            height, width = sample["current"].shape[-2:]
            ch, cw = self.crop
            if ch > height or cw > width:
                factor = max(ch / height, cw / width)
                sample = resize_pair(sample, (max(ch, math.ceil(height * factor)), max(cw, math.ceil(width * factor))))
            sample = random_crop_pair(sample, self.crop, generator)
        if self.flip_probability > 0 and float(torch.rand((), generator=generator)) < self.flip_probability:
            sample = hflip_pair(sample)
        return sample


def sample_generator(seed: int, index: int) -> torch.Generator:
    """The ``torch.Generator`` a dataset augments sample ``index`` with when the caller passes none: seeded by
    ``(seed, index)`` alone, so ``dataset[i]`` is the same sample every time. A training stream passes its own
    generator per sample number instead (:class:`reconet_lib.train.SampleStream`), so epochs differ."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(index)]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
