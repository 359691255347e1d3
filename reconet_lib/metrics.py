"""Temporal error metrics of stylised videos: ``e_stab`` and ``E_warp`` (the ``evaluate`` command: evaluate.py).

Both metrics ask the same question: once the motion of the scene is undone with optical flow, how much
do consecutive frames still differ? Images are in [0, 1]; errors are mean squared differences per valid
pixel and colour channel (the mask counts once per channel, as in Lai et al.'s released evaluation code).

- ``e_stab`` (Huang et al. 2017, Chen et al. 2017, ReCoNet), reported **without** a square root unless
  ``sqrt=True``: for each pair, ``O_t`` against ``W(O_{t-1}) = warp(O_{t-1}, flow_t_to_tm1)`` over the
  pixels of frame t that are valid (seen in frame t-1); averaged over pairs.
- ``E_warp`` (Lai et al. 2018): for each pair, ``O_{t-1}`` against ``warp(O_t, flow_{t-1 to t})`` over
  the valid pixels of frame t-1; averaged over the pairs of a video, then over videos. Pixels whose flow
  leaves the frame are excluded; ``warping_error(..., out_of_frame="keep")`` with :func:`lai_valid_mask`
  follows Lai et al.'s released code, which keeps them (keeping them raises the number on a moving camera);
  ``temporal_errors(..., lai=True)`` and ``reconet evaluate --lai`` apply that rule.

The flows must describe the *scene*, so they come from ground truth (a Sintel-layout folder or the
synthetic generator) or are estimated on the **input** frames, never on the stylised output (a flow fitted
to the output would explain its flicker away). A number alone says little: a model that blurs
everything looks stable. :func:`reconet_lib.evaluate.evaluate_versions` therefore reports the input video's own error beside
each output's, and their ratio.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import estimate, images, sintel
from .errors import UserInputError
from .flow import resize_flow
from .sizes import resolve_size
from .video import read_frames
from .warp import consistency_mask, downsample_valid, inside_mask, sample_positions, warp

#: How many frame pairs are warped at once (bounds memory on long, large videos).
PAIRS_PER_CHUNK = 8


# ------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class TemporalError:
    """A temporal error of one video.

    Attributes:
        per_pair: ``(T-1,)`` float64 on the CPU; entry ``t-1`` belongs to the frame pair ``(t-1, t)``.
            NaN for a pair without a single valid pixel.
        mean: mean over the pairs that have valid pixels (for ``sqrt=True``: the root of the mean
            squared error, i.e. RMS over pairs, not the mean of the per-pair roots).
        name: ``"e_stab"`` or ``"E_warp"``.
        sqrt: whether the square root was taken.
        valid_fraction: ``(T-1,)`` share of valid pixels per pair.
        time_reversed: computed on the time-reversed video because only the other flow direction was
            available (exact: the constraint is symmetric in time, see ``docs/conventions.md``).
    """

    per_pair: torch.Tensor
    mean: float
    name: str
    sqrt: bool = False
    valid_fraction: torch.Tensor | None = None
    time_reversed: bool = False

    def __str__(self) -> str:
        root = ", square root" if self.sqrt else ""
        rev = ", time-reversed pairs" if self.time_reversed else ""
        return f"{self.name} = {self.mean:.6f} (mean over {self.per_pair.numel()} pairs{root}{rev})"


def average_over_videos(errors: Sequence[TemporalError]) -> float:
    """Average one metric over videos (each video's mean counts once, as Lai et al. report ``E_warp``)."""
    if not errors:
        raise UserInputError("average_over_videos needs at least one TemporalError")
    names = {e.name for e in errors}
    if len(names) > 1:
        raise UserInputError(f"cannot average different metrics together: {sorted(names)}")
    return float(np.mean([e.mean for e in errors]))


# ---------------------------------------------------------------------------------- shape checking


def _check_sequence(frames: torch.Tensor, flows: torch.Tensor, valids: torch.Tensor, what: str):
    if not isinstance(frames, torch.Tensor) or frames.dim() != 4 or frames.shape[1] != 3:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise UserInputError(f"{what}: frames must be a (T, 3, H, W) float tensor in [0, 1]; got {shape}")
    if not frames.is_floating_point():
        raise UserInputError(f"{what}: frames must be float in [0, 1]; got {frames.dtype} (use load_frames)")
    t, _, h, w = frames.shape
    if t < 2:
        raise UserInputError(f"{what}: a temporal error needs at least 2 frames; got {t}")
    if not isinstance(flows, torch.Tensor) or tuple(flows.shape) != (t - 1, 2, h, w):
        shape = tuple(flows.shape) if isinstance(flows, torch.Tensor) else type(flows).__name__
        raise UserInputError(f"{what}: flows must have shape (T-1, 2, H, W) = {(t - 1, 2, h, w)}; got {shape}")
    if not isinstance(valids, torch.Tensor):
        raise UserInputError(f"{what}: valids must be a tensor (T-1, 1, H, W); got {type(valids).__name__}")
    if valids.dim() == 3:
        valids = valids[:, None]
    if tuple(valids.shape) != (t - 1, 1, h, w):
        raise UserInputError(f"{what}: valids must have shape (T-1, 1, H, W) = {(t - 1, 1, h, w)}; got {tuple(valids.shape)}")
    return frames, flows, valids.float()


# ----------------------------------------------------------------------------------- the core step


def warped_previous(outputs: torch.Tensor, flows: torch.Tensor) -> torch.Tensor:
    """``W(O_{t-1}) = warp(O_{t-1}, flow_t_to_tm1)`` for every t >= 1.

    Args:
        outputs: ``(T, 3, H, W)`` frames in [0, 1].
        flows: ``(T-1, 2, H, W)``; ``flows[t-1]`` = flow t -> t-1 on frame t's grid, pixels.
    Returns:
        ``(T-1, 3, H, W)``: entry ``t-1`` is frame t-1 brought onto frame t's grid.
    """
    chunks = []
    for s in range(0, outputs.shape[0] - 1, PAIRS_PER_CHUNK):
        e = min(s + PAIRS_PER_CHUNK, outputs.shape[0] - 1)
        chunks.append(warp(outputs[s:e].float(), flows[s:e].to(outputs.device)))
    return torch.cat(chunks)


def error_maps(outputs: torch.Tensor, flows: torch.Tensor, valids: torch.Tensor) -> torch.Tensor:
    """Per-pixel temporal error of ``e_stab``: ``valid_t * mean_c (O_t - W(O_{t-1}))_c^2``.

    Args:
        outputs: ``(T, 3, H, W)`` frames in [0, 1].
        flows: ``(T-1, 2, H, W)``; ``flows[t-1]`` = flow t -> t-1 (frame t's grid).
        valids: ``(T-1, 1, H, W)``; ``valids[t-1]`` = valid mask of frame t (1 = seen in t-1).
    Returns:
        ``(T-1, 1, H, W)`` float32, 0 where invalid. ``e_stab`` of pair t is
        ``error_maps[t-1].sum() / valids[t-1].sum()``.
    """
    outputs, flows, valids = _check_sequence(outputs, flows, valids, "error_maps")
    maps = []
    for s in range(0, outputs.shape[0] - 1, PAIRS_PER_CHUNK):  # chunked here too: bounds the squared maps
        e = min(s + PAIRS_PER_CHUNK, outputs.shape[0] - 1)
        previous = warped_previous(outputs[s : e + 1], flows[s:e])
        squared = (outputs[s + 1 : e + 1].float() - previous).pow(2).mean(dim=1, keepdim=True)
        valid = valids[s:e].to(outputs.device)
        # where() rather than a product: an unknown (NaN) sample never leaks into the sum.
        maps.append(torch.where(valid > 0, valid * squared, torch.zeros_like(squared)))
    return torch.cat(maps)


def _pair_means(maps: torch.Tensor, valids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per pair ``sum(map) / sum(valid)`` (NaN without valid pixels) and the valid fraction."""
    total = maps.double().sum(dim=(1, 2, 3)).cpu()
    count = valids.double().sum(dim=(1, 2, 3)).cpu()
    per_pair = torch.where(count > 0, total / count.clamp_min(1e-12), torch.full_like(total, math.nan))
    return per_pair, (count / valids[0].numel()).float()


def _summarise(per_pair: torch.Tensor, name: str, sqrt: bool, fraction: torch.Tensor, reversed_: bool) -> TemporalError:
    finite = per_pair[torch.isfinite(per_pair)]
    mean = float(finite.mean()) if finite.numel() else math.nan
    if sqrt:
        per_pair, mean = per_pair.sqrt(), math.sqrt(mean) if mean == mean else mean
    return TemporalError(per_pair, mean, name, sqrt, fraction, reversed_)


def stability_error(
    outputs: torch.Tensor,
    flows: torch.Tensor,
    valids: torch.Tensor,
    *,
    sqrt: bool = False,
) -> TemporalError:
    """``e_stab``: how much ``O_t`` differs from the previous output warped into frame t.

    Per pair t: ``sum(valid_t * (O_t - warp(O_{t-1}, flow_t_to_tm1))^2) / sum(valid_t)`` over pixels
    and channels (the mask counted per channel), then the mean over pairs.

    Args:
        outputs: ``(T, 3, H, W)`` frames ``O_0 .. O_{T-1}`` in [0, 1].
        flows: ``(T-1, 2, H, W)``; ``flows[t-1]`` = flow t -> t-1 on frame t's grid, pixels.
        valids: ``(T-1, 1, H, W)``; ``valids[t-1]`` = valid mask of frame t (1 = seen in frame t-1).
        sqrt: take the square root (per pair, and of the mean over pairs).
    Returns:
        :class:`TemporalError` named ``"e_stab"``.
    """
    outputs, flows, valids = _check_sequence(outputs, flows, valids, "stability_error")
    per_pair, fraction = _pair_means(error_maps(outputs, flows, valids), valids)
    return _summarise(per_pair, "e_stab", sqrt, fraction, False)


#: The two rules for pixels of frame t-1 whose flow leads out of frame t (see :func:`warping_error`).
OUT_OF_FRAME_RULES = ("exclude", "keep")


def warping_error(
    outputs: torch.Tensor,
    flows_fw: torch.Tensor,
    valids_fw: torch.Tensor,
    *,
    out_of_frame: str = "exclude",
) -> TemporalError:
    """``E_warp`` (Lai et al. 2018): ``O_{t-1}`` against ``O_t`` warped back into frame t-1.

    Per pair: ``sum(valid_{t-1} * |O_{t-1} - warp(O_t, flow_{t-1 to t})|^2) / sum(valid_{t-1})`` over
    pixels and channels (the mask counted once per channel), then the mean over pairs. (It is ``e_stab`` of
    the time-reversed video.)

    Pixels of frame t-1 whose flow leads **out of frame t** have nothing to be compared with. Two rules:

    - ``"exclude"`` (the library's, the default): they are left out, whatever ``valids_fw`` says (the mask is
      multiplied by :func:`reconet_lib.warp.inside_mask` of the flow; the library's own masks already are).
    - ``"keep"`` (Lai et al.'s released ``evaluate_WarpError.py``): they count, compared with the **nearest
      border pixel** of ``O_t`` (their CUDA ``Resample2d`` clamps the sampling position into the frame). Their
      mask comes from the forward-backward check alone, without a frame test: use :func:`lai_valid_mask`, since
      a mask that already drops out-of-frame pixels gives the ``"exclude"`` number under either rule. On a
      moving camera the border pixels count against a border pixel of the next frame that shows something else,
      so this rule usually gives the larger number; the formula is otherwise the same. (One more detail of theirs: a
      pair without a valid pixel counts as 0 in their mean; here it is NaN and left out.)

    Args:
        outputs: ``(T, 3, H, W)`` frames in [0, 1].
        flows_fw: ``(T-1, 2, H, W)``; ``flows_fw[t-1]`` = flow t-1 -> t on frame t-1's grid, pixels.
        valids_fw: ``(T-1, 1, H, W)``; ``valids_fw[t-1]`` = valid mask of frame t-1 (1 = seen in frame t).
        out_of_frame: ``"exclude"`` or ``"keep"`` (see above). Non-finite flow is invalid under both.
    Returns:
        :class:`TemporalError` named ``"E_warp"``; ``per_pair[t-1]`` belongs to the pair ``(t-1, t)``.
    """
    outputs, flows_fw, valids_fw = _check_sequence(outputs, flows_fw, valids_fw, "warping_error")
    if out_of_frame not in OUT_OF_FRAME_RULES:
        raise UserInputError(f"warping_error: out_of_frame must be 'exclude' or 'keep'; got {out_of_frame!r}")
    if out_of_frame == "exclude":
        valids_fw = valids_fw * inside_mask(flows_fw).to(valids_fw.device)
    else:
        valids_fw = valids_fw * torch.isfinite(flows_fw).all(dim=1, keepdim=True).float().to(valids_fw.device)
        flows_fw = _clamp_into_frame(flows_fw)
    maps = error_maps(outputs.flip(0), flows_fw.flip(0), valids_fw.flip(0)).flip(0)
    per_pair, fraction = _pair_means(maps, valids_fw)
    return _summarise(per_pair, "E_warp", False, fraction, False)


def _clamp_into_frame(flow: torch.Tensor) -> torch.Tensor:
    """The flow whose sampling positions are clamped into the frame (border pixels repeated; non-finite -> 0).

    Bilinear sampling at the clamped position equals the border-replicating sampling of Lai et al.'s
    ``Resample2d``, which clamps each of the four taps: both read the border pixel once outside.
    """
    _, _, h, w = flow.shape
    finite = torch.nan_to_num(flow.float(), nan=0.0, posinf=0.0, neginf=0.0)
    pos = sample_positions(finite)
    clamped = torch.stack((pos[:, 0].clamp(0, w - 1), pos[:, 1].clamp(0, h - 1)), dim=1)
    return clamped - (pos - finite)


def lai_valid_mask(flow_fw: torch.Tensor, flow_bw: torch.Tensor) -> torch.Tensor:
    """Valid mask of frame a as Lai et al.'s released code builds it: the check without a frame test.

    Their ``detect_occlusion`` applies the forward-backward and motion-boundary tests of
    :func:`reconet_lib.warp.consistency_mask` (same thresholds, same forward differences) but samples
    ``flow_bw`` with border clamping and never rejects a pixel for leaving the frame. Pair it with
    ``warping_error(..., out_of_frame="keep")``.

    Args:
        flow_fw: ``(B, 2, H, W)`` flow a -> b on frame a's grid, pixels.
        flow_bw: ``(B, 2, H, W)`` flow b -> a on frame b's grid, pixels.
    Returns:
        ``(B, 1, H, W)`` float32, 1 = consistent (0 also where either flow is not finite).
    """
    if flow_fw.shape != flow_bw.shape or flow_fw.dim() != 4 or flow_fw.shape[1] != 2:
        raise UserInputError(
            f"lai_valid_mask needs two (B, 2, H, W) flows of one shape; got {tuple(flow_fw.shape)} and {tuple(flow_bw.shape)}"
        )
    fw = torch.nan_to_num(flow_fw.float())
    bw_at_target = warp(torch.nan_to_num(flow_bw.float()), _clamp_into_frame(fw))
    sum_sq = ((fw + bw_at_target) ** 2).sum(dim=1, keepdim=True)
    mag_sq = (fw**2).sum(dim=1, keepdim=True) + (bw_at_target**2).sum(dim=1, keepdim=True)
    dx = torch.zeros_like(fw)
    dy = torch.zeros_like(fw)
    dx[..., :, :-1] = fw[..., :, 1:] - fw[..., :, :-1]
    dy[..., :-1, :] = fw[..., 1:, :] - fw[..., :-1, :]
    boundary = (dx**2 + dy**2).sum(dim=1, keepdim=True) > 0.01 * (fw**2).sum(dim=1, keepdim=True) + 0.002
    finite = torch.isfinite(flow_fw).all(dim=1, keepdim=True) & torch.isfinite(flow_bw).all(dim=1, keepdim=True)
    return ((sum_sq <= 0.01 * mag_sq + 0.5) & ~boundary & finite).float()


# ------------------------------------------------------------------------------ flows of a video


def _resize_valid(valid: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a ``(N, 1, H, W)`` valid mask conservatively (any invalid pixel under a cell wins)."""
    h, w = valid.shape[-2:]
    if (h, w) == tuple(size):
        return valid
    big = (max(h, size[0]), max(w, size[1]))
    if big != (h, w):
        invalid = F.interpolate((valid < 1).float(), size=big, mode="bilinear", align_corners=False)
        valid = (invalid <= 0).float()
    return downsample_valid(valid, size)


@dataclass(frozen=True)
class TemporalFlows:
    """The flows and valid masks the metrics need for a video of T frames (either direction may be missing).

    Attributes:
        backward: ``(T-1, 2, H, W)``; ``backward[t-1]`` = flow t -> t-1 on frame t's grid (for ``e_stab``).
        valid_backward: ``(T-1, 1, H, W)``; valid mask of frame t (1 = seen in frame t-1).
        forward: ``(T-1, 2, H, W)``; ``forward[t-1]`` = flow t-1 -> t on frame t-1's grid (for ``E_warp``).
        valid_forward: ``(T-1, 1, H, W)``; valid mask of frame t-1 (1 = seen in frame t).
        source: where they came from, e.g. ``"ground truth (synthetic)"`` or ``"estimated (dis) on the input"``.
    """

    backward: torch.Tensor | None
    valid_backward: torch.Tensor | None
    forward: torch.Tensor | None
    valid_forward: torch.Tensor | None
    source: str = "given"

    def __post_init__(self):
        if (self.backward is None) != (self.valid_backward is None) or (self.forward is None) != (self.valid_forward is None):
            raise UserInputError("TemporalFlows: give each flow direction together with its valid mask")
        if self.backward is None and self.forward is None:
            raise UserInputError("TemporalFlows needs at least one flow direction (backward or forward)")

    @property
    def num_frames(self) -> int:
        """T, the number of frames these flows belong to."""
        flows = self.backward if self.backward is not None else self.forward
        return flows.shape[0] + 1

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the flow fields."""
        flows = self.backward if self.backward is not None else self.forward
        return tuple(flows.shape[-2:])

    def resized(self, size: tuple[int, int]) -> "TemporalFlows":
        """The same flows for frames resized to ``(h, w)``: vectors rescaled, masks shrunk conservatively."""
        size = (int(size[0]), int(size[1]))
        if size == self.size:
            return self
        changes = {}
        for flow_key, valid_key in (("backward", "valid_backward"), ("forward", "valid_forward")):
            flow = getattr(self, flow_key)
            if flow is not None:
                resized = resize_flow(flow, size)
                valid = _resize_valid(getattr(self, valid_key), size) * inside_mask(torch.nan_to_num(resized, nan=1e9))
                changes[flow_key], changes[valid_key] = resized, valid
        return replace(self, **changes)

    @classmethod
    def from_sintel(cls, root, scene: str) -> "TemporalFlows":
        """Ground truth of one scene in the Sintel training layout.

        ``flow/<scene>/frame_%04d.flo`` (k -> k+1) with ``occlusions/<scene>`` (white = pixel of frame k
        not seen in k+1) give the forward pairs, used for ``e_stab`` time-reversed when nothing else
        exists (current = k, previous = k+1, flow = flow k -> k+1, valid = 1 - occ_k). The generator's
        ``flow_backward`` / ``occlusions_backward`` (k -> k-1, stored under k >= 2) give the backward
        pairs when present. Sintel's ``invalid/<scene>`` masks and unknown flow values also count invalid.
        """
        root = Path(root)
        scene_flow = root / sintel.flow_folder(1) / scene
        if not scene_flow.is_dir():
            raise UserInputError(
                f"no ground-truth flow folder {scene_flow}; expected the Sintel training layout "
                "<root>/flow/<scene>/frame_%04d.flo (give --flow gt:<root>/<scene>)"
            )
        forward, valid_fw = _read_sintel_direction(root, scene, step=1)
        backward = valid_bw = None
        if (root / sintel.flow_folder(-1) / scene).is_dir():
            backward, valid_bw = _read_sintel_direction(root, scene, step=-1)
            if backward.shape != forward.shape:
                raise UserInputError(
                    f"{root / sintel.flow_folder(-1) / scene} holds {backward.shape[0]} flows but "
                    f"{scene_flow} holds {forward.shape[0]}; the layout is incomplete"
                )
        return cls(backward, valid_bw, forward, valid_fw, source=f"ground truth, scene {scene!r} of {root}")

    @classmethod
    def from_synthetic(cls, sequence) -> "TemporalFlows":
        """Exact ground truth of a :func:`reconet_lib.synthetic.make_sequence` sequence (both directions)."""

        def flows(array) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(0, 3, 1, 2).contiguous()

        def valid(occluded, flow) -> torch.Tensor:
            visible = torch.from_numpy(~np.asarray(occluded, dtype=bool))[:, None].float()
            return visible * inside_mask(torch.nan_to_num(flow, nan=1e9))

        backward, forward = flows(sequence.flow_backward), flows(sequence.flow_forward)
        return cls(
            backward, valid(sequence.occlusion_backward, backward),
            forward, valid(sequence.occlusion_forward, forward),
            source="ground truth (synthetic generator)",
        )

    @classmethod
    def estimate(cls, frames: torch.Tensor, *, method: str = "dis", **kwargs) -> "TemporalFlows":
        """Estimate both directions on the **input** frames with :func:`reconet_lib.estimate.estimate_flows_and_valid`.

        Args:
            frames: ``(T, 3, H, W)`` input frames in [0, 1] (never the stylised output).
            method, kwargs: passed to :func:`reconet_lib.estimate.estimate_flow`.
        """
        if not isinstance(frames, torch.Tensor) or frames.dim() != 4 or frames.shape[0] < 2:
            raise UserInputError("TemporalFlows.estimate needs input frames (T >= 2, 3, H, W)")
        previous, current = frames[:-1], frames[1:]
        # flow t -> t-1 on frame t, its reverse, and the valid mask of frame t.
        backward, forward, valid_bw = estimate.estimate_flows_and_valid(current, previous, method=method, **kwargs)
        valid_fw = consistency_mask(forward, backward)  # frame t-1: seen in t, consistent
        return cls(backward, valid_bw, forward, valid_fw, source=f"estimated ({method}) on the input frames")


def _read_sintel_direction(root: Path, scene: str, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All flows of one direction of a scene (``step`` +1: k -> k+1, -1: k -> k-1) and their valid masks.

    Returns ``(N, 2, H, W)`` flows and ``(N, 1, H, W)`` valid masks: not occluded, not marked invalid, flow
    known, target inside the frame (see :mod:`reconet_lib.sintel` for the layout and mask polarity).
    """
    folder = root / sintel.flow_folder(step) / scene
    numbers = [k for k in sintel.frame_numbers(folder) if (folder / sintel.frame_name(k, ".flo")).is_file()]
    first = sintel.FIRST_FRAME if step == 1 else sintel.FIRST_FRAME + 1
    if not numbers:
        raise UserInputError(f"{folder} holds no frame_*.flo files")
    if numbers != list(range(first, first + len(numbers))):
        raise UserInputError(f"{folder}: expected {sintel.frame_name(first, '.flo')} onwards without gaps")
    flows, valids = [], []
    for k in numbers:
        flow = sintel.read_flow(root, scene, k, step)  # (2, H, W); unknown pixels are NaN
        valid = sintel.read_valid(root, scene, k, step) * torch.isfinite(flow).all(dim=0, keepdim=True)
        flows.append(flow)
        valids.append(valid)
    flow_t = torch.stack(flows)
    return flow_t, torch.stack(valids) * inside_mask(torch.nan_to_num(flow_t, nan=1e9))


# --------------------------------------------------------------------------------- both metrics


def temporal_errors(frames: torch.Tensor, flows: TemporalFlows, *, lai: bool = False) -> dict[str, TemporalError]:
    """``e_stab`` and ``E_warp`` of one video, from whichever flow directions ``flows`` holds.

    With a single direction the other metric is computed on the time-reversed video (marked
    ``time_reversed``); the two then use the same pairs and agree.

    Args:
        frames: ``(T, 3, H, W)`` in [0, 1], on the grid of the flows.
        lai: compute ``E_warp`` by Lai et al.'s released rule: the valid mask of frame t-1 is
            :func:`lai_valid_mask` of the two flows (``valid_forward`` is not used) and pixels whose flow
            leaves the frame count (``warping_error(..., out_of_frame="keep")``). Needs both flow
            directions; ``e_stab`` is unchanged.
    Returns:
        ``{"e_stab": TemporalError, "E_warp": TemporalError}``.
    Raises:
        UserInputError: ``lai`` with flows of one direction only (e.g. real Sintel ground truth).
    """
    if not isinstance(frames, torch.Tensor) or frames.dim() != 4:
        raise UserInputError("temporal_errors needs frames (T, 3, H, W) in [0, 1]")
    if frames.shape[0] != flows.num_frames or tuple(frames.shape[-2:]) != flows.size:
        raise UserInputError(
            f"the video has {frames.shape[0]} frames of {tuple(frames.shape[-2:])} but the flows are for "
            f"{flows.num_frames} frames of {flows.size}; use the same clip (or TemporalFlows.resized)"
        )
    if flows.backward is not None:
        stab = stability_error(frames, flows.backward, flows.valid_backward)
    else:
        rev = stability_error(frames.flip(0), flows.forward.flip(0), flows.valid_forward.flip(0))
        stab = replace(rev, per_pair=rev.per_pair.flip(0), valid_fraction=rev.valid_fraction.flip(0), time_reversed=True)
    if lai:
        if flows.forward is None or flows.backward is None:
            raise UserInputError(
                f"Lai et al.'s E_warp rule needs flows in both directions (its mask is a forward-backward check); "
                f"the flows ({flows.source}) have one; estimate them on the input (--flow dis or raft) instead"
            )
        valid = lai_valid_mask(flows.forward, flows.backward)
        warp_err = warping_error(frames, flows.forward, valid, out_of_frame="keep")
    elif flows.forward is not None:
        warp_err = warping_error(frames, flows.forward, flows.valid_forward)
    else:
        rev = warping_error(frames.flip(0), flows.backward.flip(0), flows.valid_backward.flip(0))
        warp_err = replace(rev, per_pair=rev.per_pair.flip(0), valid_fraction=rev.valid_fraction.flip(0), time_reversed=True)
    return {"e_stab": stab, "E_warp": warp_err}


# ------------------------------------------------------------------------------------ frame input


def load_frames(source, size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """Frames of a clip as a ``(T, 3, H, W)`` float32 tensor in [0, 1] (on the CPU unless given a tensor).

    Args:
        source: a ``(T, 3, H, W)`` float tensor in [0, 1]; or anything :func:`reconet_lib.video.read_frames`
            reads: a video file, a frame folder (natural sort), ``(H, W, 3)`` uint8 arrays, a
            ``(T, H, W, 3)`` uint8 array (or tensor).
        size: ``None`` (keep), the longer side, or ``(H, W)``, as :func:`reconet_lib.video.read_frames`.
    """
    if isinstance(source, torch.Tensor) and source.is_floating_point():
        frames = source.detach().float()
        if frames.dim() != 4 or frames.shape[1] != 3:
            raise UserInputError(f"float frames must be (T, 3, H, W) in [0, 1]; got {tuple(frames.shape)}")
        if size is not None:
            h, w = frames.shape[-2:]
            new = resolve_size(size, (h, w))
            frames = images.resize(frames, new)
        return frames.contiguous()
    if isinstance(source, torch.Tensor):
        source = source.detach().cpu().numpy()
    arrays = list(read_frames(source, size=size))
    return images.to_float(np.stack(arrays))
