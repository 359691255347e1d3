"""A consistency control for any stylised video: blend each frame with the previous *output* warped into it.

A per-frame network paints every frame anew, so its texture flickers; ReCoNet learns to flicker less. After
the fact, a viewer can trade some of the remaining flicker for a little blur with one number ``alpha`` in [0, 1]
(the idea of Lai et al. 2018's post-hoc blending, made interactive as in Shekhar et al. 2023):

    out_t = valid_t * (alpha * warp(out_{t-1}, flow_t_to_tm1) + (1 - alpha) * s_t) + (1 - valid_t) * s_t,
    out_0 = s_0,

where ``s_t`` is the stylised frame t, ``flow_t_to_tm1`` the flow t -> t-1 on frame t's grid (pixels),
``warp`` the library's backward warp (so ``warp(out_{t-1}, flow_t_to_tm1)`` lines up with frame t) and
``valid_t`` the valid mask of frame t (1 = seen in frame t-1 with trusted flow), ANDed with the in-frame mask of
the flow (a sample outside frame t-1 is never blended in). Conventions: ``docs/conventions.md``.

What the blend does, derived (``notebooks/07_temporal_consistency.ipynb`` shows it numerically):

* On a valid pixel, ``out_t - W(out_{t-1}) = (1 - alpha) (s_t - W(out_{t-1}))``: the stability error ``e_stab``
  measured with the same flows and masks is exactly ``(1 - alpha)^2`` times the mean squared difference between
  the new stylised frame and the warped previous output. ``alpha = 0`` returns the stylised clip unchanged.
* Along a motion path that stays valid, ``out_t = (1 - alpha) sum_k alpha^k s_{t-k} (+ alpha^t s_0)``: an
  exponential moving average with a memory of about ``1 / (1 - alpha)`` frames. Flicker that is independent
  from frame to frame keeps ``(1 - alpha) / (1 + alpha)`` of its variance.
* The cost: every bilinear warp smooths a little, and a recursive blend accumulates it, and content that
  changes without motion (lighting, new brush strokes) follows late. :func:`sharpness` measures the first.
  ``alpha = 1`` freezes every valid pixel on the first frame's paint.

The same blend runs frame by frame on a stream (:class:`StreamBlender`, used by ``reconet stylize
--consistency ALPHA`` with OpenCV DIS flow estimated on the *input* frames) and on a whole clip with known
flows (:func:`blend_clip`, used by :class:`reconet_lib.widgets.TemporalExplorer`).
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from . import images
from .errors import UserInputError
from .estimate import estimate_flows_and_valid
from .warp import inside_mask, luminance, warp


def check_alpha(alpha) -> float:
    """``alpha`` as a float in [0, 1], or a one-line :class:`UserInputError`."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating, np.integer)) \
            or not math.isfinite(float(alpha)) or not 0.0 <= float(alpha) <= 1.0:
        raise UserInputError(f"consistency alpha must be a number in [0, 1] (0 = off, 1 = freeze); got {alpha!r}")
    return float(alpha)


def blend_step(stylised: torch.Tensor, previous_output: torch.Tensor, flow_t_to_tm1: torch.Tensor,
               valid: torch.Tensor, alpha: float) -> torch.Tensor:
    """One step of the blend: ``out_t`` from the stylised frame t and the previous output.

    Args:
        stylised: ``(B, 3, H, W)`` stylised frame t, float in [0, 1].
        previous_output: ``(B, 3, H, W)`` the blend's output for frame t-1, in [0, 1].
        flow_t_to_tm1: ``(B, 2, H, W)`` flow t -> t-1 on frame t's grid, pixels.
        valid: ``(B, 1, H, W)`` valid mask of frame t (1 = trust; fractional values weigh the blend).
        alpha: weight of the warped previous output, in [0, 1].
    Returns:
        ``(B, 3, H, W)`` float32 ``out_t`` in [0, 1].
    """
    alpha = check_alpha(alpha)
    if stylised.shape != previous_output.shape or stylised.dim() != 4 or stylised.shape[1] != 3:
        raise UserInputError(f"stylised {tuple(stylised.shape)} and previous output {tuple(previous_output.shape)} "
                             "must both be (B, 3, H, W)")
    if valid.dim() == 3:
        valid = valid[:, None]
    stylised = stylised.float()
    if alpha == 0.0:
        return stylised.clone()
    flow = flow_t_to_tm1.float().to(stylised.device)
    weight = alpha * valid.float().to(stylised.device) * inside_mask(flow)
    warped = warp(previous_output.float(), flow)
    return stylised + weight * (warped - stylised)


def blend_clip(stylised: torch.Tensor, flows: torch.Tensor, valids: torch.Tensor, alpha: float) -> torch.Tensor:
    """The blend over a whole clip: ``out_0 = s_0``, then :func:`blend_step` for t = 1 .. T-1.

    Args:
        stylised: ``(T, 3, H, W)`` stylised frames in [0, 1].
        flows: ``(T-1, 2, H, W)``; ``flows[t-1]`` = flow t -> t-1 on frame t's grid, pixels.
        valids: ``(T-1, 1, H, W)``; ``valids[t-1]`` = valid mask of frame t (1 = seen in t-1).
        alpha: in [0, 1]; 0 returns a float32 copy of ``stylised``.
    Returns:
        ``(T, 3, H, W)`` float32 blended clip in [0, 1].
    """
    alpha = check_alpha(alpha)
    if stylised.dim() != 4 or stylised.shape[1] != 3:
        raise UserInputError(f"stylised must be a (T, 3, H, W) clip; got {tuple(stylised.shape)}")
    t, _, h, w = stylised.shape
    if valids.dim() == 3:
        valids = valids[:, None]
    if tuple(flows.shape) != (t - 1, 2, h, w) or tuple(valids.shape) != (t - 1, 1, h, w):
        raise UserInputError(f"flows {tuple(flows.shape)} and valids {tuple(valids.shape)} must be "
                             f"(T-1, 2, H, W) and (T-1, 1, H, W) = {(t - 1, 2, h, w)}, {(t - 1, 1, h, w)}")
    out = [stylised[0:1].float().clone()]
    for k in range(1, t):
        out.append(blend_step(stylised[k : k + 1], out[-1], flows[k - 1 : k], valids[k - 1 : k], alpha))
    return torch.cat(out)


def sharpness(frames: torch.Tensor) -> float:
    """Mean gradient magnitude of the luminance: ``mean sqrt(dY/dx^2 + dY/dy^2)`` over pixels and frames.

    Forward differences on the pixels that have both a right and a lower neighbour; images in [0, 1], so the
    unit is "luminance per pixel". Blur lowers it; compare a blended clip with the unblended one
    (:func:`sharpness_kept`), never across different clips.

    Args:
        frames: ``(T, 3, H, W)`` float in [0, 1] (H, W >= 2).
    """
    y = luminance(frames.float())
    dx = y[..., :-1, 1:] - y[..., :-1, :-1]
    dy = y[..., 1:, :-1] - y[..., :-1, :-1]
    return float(torch.sqrt(dx * dx + dy * dy).mean())


def sharpness_kept(blended: torch.Tensor, stylised: torch.Tensor) -> float:
    """The sharpness cost as a share: ``sharpness(blended) / sharpness(stylised)`` (1 = nothing lost)."""
    reference = sharpness(stylised)
    return sharpness(blended) / reference if reference > 0 else 1.0


class StreamBlender:
    """The blend on a stream of ``uint8`` frames, with flow estimated on the input frames (OpenCV DIS).

    Feed it each batch of input frames and their stylised frames in order; it keeps the last input and the last
    output across batches. The flow t -> t-1 and the valid mask (forward-backward check) are estimated on the
    **input** frames t and t-1 (:func:`reconet_lib.estimate.estimate_flows_and_valid`), never on the stylised ones.

    Args:
        alpha: in [0, 1] (0: frames pass through unchanged and no flow is estimated).
        dis_preset: OpenCV DIS preset (``"ultrafast"``, ``"fast"``, ``"medium"``).
    """

    def __init__(self, alpha: float, *, dis_preset: str = "fast"):
        self.alpha = check_alpha(alpha)
        self.dis_preset = dis_preset
        self.seconds = 0.0
        self._previous_input: torch.Tensor | None = None
        self._previous_output: torch.Tensor | None = None

    def reset(self) -> None:
        """Forget the previous frame (a cut: the next frame starts a new blend)."""
        self._previous_input = self._previous_output = None

    def __call__(self, inputs: np.ndarray, stylised: np.ndarray) -> np.ndarray:
        """Blend a batch.

        Args:
            inputs: ``(B, H, W, 3)`` uint8 input frames (RGB).
            stylised: ``(B, H, W, 3)`` uint8 stylised frames of the same size.
        Returns:
            ``(B, H, W, 3)`` uint8 blended frames.
        """
        if self.alpha == 0.0:
            return stylised
        start = time.perf_counter()
        if inputs.shape != stylised.shape:
            raise UserInputError(f"inputs {inputs.shape} and stylised frames {stylised.shape} differ in shape")
        ins, outs = images.to_float(inputs), images.to_float(stylised)
        result = []
        for k in range(ins.shape[0]):
            current, painted = ins[k : k + 1], outs[k : k + 1]
            if self._previous_input is None or self._previous_input.shape != current.shape:
                out = painted
            else:
                flow, _, valid = estimate_flows_and_valid(current, self._previous_input, method="dis",
                                                          dis_preset=self.dis_preset)
                out = blend_step(painted, self._previous_output, flow, valid, self.alpha)
            self._previous_input, self._previous_output = current, out
            result.append(out)
        frames = images.to_uint8(torch.cat(result))
        self.seconds += time.perf_counter() - start
        return frames
