"""Backward warping, forward-backward consistency masks and luminance.

Conventions (see ``docs/conventions.md``): flows are ``(B, 2, H, W)`` in pixels, channel 0 = u (+x right),
channel 1 = v (+y down). ``flow_a_to_b`` lives on frame a's grid and says where each pixel of frame a is
found in frame b. Masks are *valid* masks: ``(B, 1, H, W)`` float, 1 = trust the pixel.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import UserInputError

#: BT.709 relative-luminance weights for linear R, G, B (ITU-R BT.709).
BT709 = (0.2126, 0.7152, 0.0722)

# A sample counts as inside the image when its position is within this many pixels of the outermost
# pixel centres; it absorbs float round-off (for example 2.9999999 instead of 3).
_INSIDE_TOLERANCE = 1e-3


def _check_pair(image: torch.Tensor, flow: torch.Tensor) -> None:
    if image.dim() != 4:
        raise UserInputError(f"image must have shape (B, C, H, W); got {tuple(image.shape)}")
    if flow.dim() != 4 or flow.shape[1] != 2:
        raise UserInputError(f"flow must have shape (B, 2, H, W) with channels (u, v); got {tuple(flow.shape)}")
    if image.shape[-2:] != flow.shape[-2:]:
        raise UserInputError(
            f"image {tuple(image.shape[-2:])} and flow {tuple(flow.shape[-2:])} differ in size; "
            "resize the flow with reconet_lib.flow.resize_flow, which also rescales its vectors"
        )
    if flow.shape[0] not in (1, image.shape[0]) and image.shape[0] != 1:
        raise UserInputError(f"batch sizes differ: image {image.shape[0]}, flow {flow.shape[0]}")


def sample_positions(flow: torch.Tensor) -> torch.Tensor:
    """Absolute sampling positions ``(x + u, y + v)`` in pixels.

    Args:
        flow: ``(B, 2, H, W)`` flow in pixels.
    Returns:
        ``(B, 2, H, W)`` float32: channel 0 is x + u, channel 1 is y + v (pixel centres at integers).
    """
    _, _, h, w = flow.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, device=flow.device, dtype=torch.float32),
        torch.arange(w, device=flow.device, dtype=torch.float32),
        indexing="ij",
    )
    base = torch.stack((xs, ys))[None]
    return base + flow.float()


def inside_mask(flow: torch.Tensor) -> torch.Tensor:
    """Valid mask of the pixels whose target ``x + flow(x)`` lies inside the frame.

    A target counts as inside when bilinear sampling there reads only real pixels, i.e.
    ``0 <= x + u <= W - 1`` and ``0 <= y + v <= H - 1``. Non-finite flow is outside.

    Args:
        flow: ``(B, 2, H, W)`` in pixels.
    Returns:
        ``(B, 1, H, W)`` float32, 1 = inside.
    """
    _, _, h, w = flow.shape
    pos = sample_positions(flow)
    t = _INSIDE_TOLERANCE
    ok = (
        (pos[:, 0] >= -t) & (pos[:, 0] <= w - 1 + t) & (pos[:, 1] >= -t) & (pos[:, 1] <= h - 1 + t)
        & torch.isfinite(flow).all(dim=1)
    )
    return ok[:, None].float()


def _gather_taps(image: torch.Tensor, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
    """Read ``image[:, :, yi, xi]`` for integer maps ``(B, H, W)``; positions outside the image read 0."""
    b, c, h, w = image.shape
    inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    index = (yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1)).view(b, 1, -1).expand(-1, c, -1)
    values = image.reshape(b, c, h * w).gather(2, index).view(b, c, *xi.shape[1:])
    return values * inside[:, None].to(values.dtype)


def _prepare(image: torch.Tensor, flow: torch.Tensor, mode: str):
    """Checked inputs of a warp: ``(float32 image expanded to batch b, finite positions (b, 2, H, W), b)``."""
    _check_pair(image, flow)
    if mode not in ("bilinear", "nearest"):
        raise UserInputError(f"mode must be 'bilinear' or 'nearest'; got {mode!r}")
    b = max(image.shape[0], flow.shape[0])
    src = image.float().expand(b, -1, -1, -1)
    # Unknown (non-finite) flow samples far outside the image: zeros, and invalid in the mask.
    pos = torch.nan_to_num(sample_positions(flow), nan=-1e6, posinf=-1e6, neginf=-1e6)
    return src, pos.clamp(-1e6, 1e6).expand(b, -1, -1, -1), b


def warp_by_gather(image: torch.Tensor, flow: torch.Tensor, *, mode: str = "bilinear") -> torch.Tensor:
    """:func:`warp` written out: the four bilinear taps gathered by index. The derivation and the test reference.

    ``out[y, x] = sum over the 4 pixels (X, Y) around (x + u, y + v) of image[Y, X] * (1 - |x + u - X|)
    * (1 - |y + v - Y|)``, pixels outside the image reading 0. The weights come from the fractional part of the
    sampling position, so a zero or integer flow copies pixels bit for bit. ``mode="nearest"`` rounds halves up.
    Same arguments and result as :func:`warp` (without the mask); several times slower than ``F.grid_sample``.
    """
    src, pos, _ = _prepare(image, flow, mode)
    px, py = pos[:, 0], pos[:, 1]
    if mode == "nearest":
        return _gather_taps(src, torch.floor(px + 0.5).long(), torch.floor(py + 0.5).long()).to(image.dtype)
    x0, y0 = torch.floor(px), torch.floor(py)
    fx, fy = (px - x0)[:, None], (py - y0)[:, None]
    x0, y0 = x0.long(), y0.long()
    out = (
        _gather_taps(src, x0, y0) * ((1 - fx) * (1 - fy))
        + _gather_taps(src, x0 + 1, y0) * (fx * (1 - fy))
        + _gather_taps(src, x0, y0 + 1) * ((1 - fx) * fy)
        + _gather_taps(src, x0 + 1, y0 + 1) * (fx * fy)
    )
    return out.to(image.dtype)


#: ``align_corners`` of every ``F.grid_sample`` call here; :func:`normalized_grid` matches it.
ALIGN_CORNERS = False


def normalized_grid(pos: torch.Tensor) -> torch.Tensor:
    """Pixel positions to ``F.grid_sample``'s coordinates under ``align_corners=False`` (:data:`ALIGN_CORNERS`).

    With ``align_corners=False`` the grid's -1 and +1 are the outer *edges* of the image, so pixel centre ``x``
    (pixels ``0 .. W - 1``) is at ``(2 x + 1) / W - 1``; this works for every ``W >= 1`` (the ``align_corners=True``
    form, ``2 x / (W - 1) - 1``, divides by zero for a one-pixel side).

    Args:
        pos: ``(B, 2, H, W)`` positions ``(x, y)`` in pixels (:func:`sample_positions`).
    Returns:
        ``(B, H, W, 2)`` float32 grid ``(x, y)`` for ``F.grid_sample``.
    """
    h, w = pos.shape[-2:]
    scale = torch.tensor((2.0 / w, 2.0 / h), device=pos.device).view(1, 2, 1, 1)
    return ((pos + 0.5) * scale - 1.0).permute(0, 2, 3, 1)


def warp(
    image: torch.Tensor,
    flow: torch.Tensor,
    *,
    mode: str = "bilinear",
    return_valid: bool = False,
):
    """Backward-warp ``image`` (frame b) with ``flow`` (a -> b) into frame a.

    ``out[y, x] = image[y + v(x, y), x + u(x, y)]``, sampled bilinearly (or ``mode="nearest"``, see
    :func:`warp_by_gather`). The result is aligned with frame a. Samples outside frame b read zeros (partly outside:
    the outside taps read zeros) and are reported invalid when ``return_valid`` is set.

    Bilinear sampling runs in ``F.grid_sample`` (``align_corners=False``, the grid from :func:`normalized_grid`,
    zeros padding): it agrees with the gather form :func:`warp_by_gather` to float rounding (about 1e-6 for images
    in [0, 1]). Pixels whose flow is exactly zero copy the image, so ``warp(img, zeros) == img`` bit for bit (the
    grid's round trip through normalised coordinates is off by an ulp for most widths); there the gradient reaches
    the image but not the flow. Sampling runs in float32 whatever the image dtype (bf16 cannot address pixel
    positions beyond 256).

    Args:
        image: ``(B, C, H, W)`` image or feature map of frame b (any float dtype).
        flow: ``(B, 2, H, W)`` flow from frame a to frame b, in pixels, on frame a's grid
            (batch 1 broadcasts against the image's batch and vice versa).
        mode: ``"bilinear"`` or ``"nearest"``.
        return_valid: also return the ``(B, 1, H, W)`` in-frame mask of :func:`inside_mask`.
    Returns:
        ``(B, C, H, W)`` warped image in ``image.dtype``, and the float32 mask when ``return_valid``.
    """
    if mode == "nearest":
        out = warp_by_gather(image, flow, mode=mode)
        b = out.shape[0]
    else:
        src, pos, b = _prepare(image, flow, mode)
        sampled = F.grid_sample(src, normalized_grid(pos), mode="bilinear", padding_mode="zeros",
                                align_corners=ALIGN_CORNERS)
        still = (flow == 0).all(dim=1, keepdim=True)
        out = torch.where(still, src, sampled).to(image.dtype)
    if return_valid:
        return out, inside_mask(flow).expand(b, -1, -1, -1)
    return out


def _flow_gradient_sq(flow: torch.Tensor) -> torch.Tensor:
    """``|grad u|^2 + |grad v|^2`` with forward differences (zero at the last row/column)."""
    dx = torch.zeros_like(flow)
    dy = torch.zeros_like(flow)
    dx[..., :, :-1] = flow[..., :, 1:] - flow[..., :, :-1]
    dy[..., :-1, :] = flow[..., 1:, :] - flow[..., :-1, :]
    return (dx**2 + dy**2).sum(dim=1, keepdim=True)


def consistency_mask(
    flow_fw: torch.Tensor,
    flow_bw: torch.Tensor,
    *,
    check_motion_boundaries: bool = True,
) -> torch.Tensor:
    """Valid mask of frame a from the forward-backward check (Sundaram et al. 2010).

    With ``w = flow_fw(x)`` and ``w' = flow_bw(x + w)``, a pixel is invalid when
    ``|w + w'|^2 > 0.01 (|w|^2 + |w'|^2) + 0.5`` (the two flows disagree: occlusion), when
    ``|grad u|^2 + |grad v|^2 > 0.01 |w|^2 + 0.002`` (a motion boundary), when ``x + w`` falls outside
    frame b, or when the flow is not finite (unknown).

    Args:
        flow_fw: ``(B, 2, H, W)`` flow a -> b on frame a's grid, pixels.
        flow_bw: ``(B, 2, H, W)`` flow b -> a on frame b's grid, pixels.
        check_motion_boundaries: also reject motion boundaries (the default, as Ruder et al. 2016).
    Returns:
        ``(B, 1, H, W)`` float32 valid mask of frame a: 1 = visible in both frames and consistent.
    """
    if flow_fw.shape != flow_bw.shape:
        raise UserInputError(f"forward {tuple(flow_fw.shape)} and backward {tuple(flow_bw.shape)} flows differ in shape")
    fw = flow_fw.float()
    bw_at_target, inside = warp(flow_bw.float(), torch.nan_to_num(fw), return_valid=True)
    fw0 = torch.nan_to_num(fw)
    bw0 = torch.nan_to_num(bw_at_target)
    sum_sq = ((fw0 + bw0) ** 2).sum(dim=1, keepdim=True)
    mag_sq = (fw0**2).sum(dim=1, keepdim=True) + (bw0**2).sum(dim=1, keepdim=True)
    ok = sum_sq <= 0.01 * mag_sq + 0.5
    if check_motion_boundaries:
        ok &= _flow_gradient_sq(fw0) <= 0.01 * (fw0**2).sum(dim=1, keepdim=True) + 0.002
    finite = torch.isfinite(fw).all(dim=1, keepdim=True) & torch.isfinite(bw_at_target).all(dim=1, keepdim=True)
    return (ok & finite & (inside > 0.5)).float()


def downsample_valid(valid: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Shrink a valid mask conservatively: a cell is valid only if every pixel under it is valid.

    Args:
        valid: ``(B, 1, H, W)`` mask in {0, 1} (values in between count as invalid).
        size: ``(h, w)`` target size, at most ``(H, W)``.
    Returns:
        ``(B, 1, h, w)`` float32 mask in {0, 1}.
    """
    h, w = size
    if h > valid.shape[-2] or w > valid.shape[-1]:
        raise UserInputError(f"downsample_valid shrinks masks; {tuple(valid.shape[-2:])} -> {size} would enlarge it")
    invalid = (valid < 1).float()
    return 1.0 - F.adaptive_max_pool2d(invalid, (h, w))


def luminance(image: torch.Tensor) -> torch.Tensor:
    """Relative luminance ``Y = 0.2126 R + 0.7152 G + 0.0722 B`` (ITU-R BT.709), same scale as the input.

    Args:
        image: ``(B, 3, H, W)`` RGB, typically in [0, 1].
    Returns:
        ``(B, 1, H, W)`` in the image's dtype.
    """
    if image.dim() != 4 or image.shape[1] != 3:
        raise UserInputError(f"luminance needs an RGB batch (B, 3, H, W); got {tuple(image.shape)}")
    weights = torch.tensor(BT709, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    return (image * weights).sum(dim=1, keepdim=True)
