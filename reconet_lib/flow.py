"""Optical-flow files (``.flo``, ``.pfm``), flow tensors, resizing, flipping and the colour wheel.

Conventions (see ``docs/conventions.md``): a flow tensor is ``(B, 2, H, W)`` float32 in pixels, channel 0 = u
(+x right), channel 1 = v (+y down). In files and numpy arrays a flow is ``(H, W, 2)`` float32 in the same order.
``flow_a_to_b[y, x] = (u, v)`` says that the pixel ``(x, y)`` of frame a is found at ``(x + u, y + v)`` in frame b.

Unknown flow: in ``.flo`` files a component with ``|u| > 1e9`` or ``|v| > 1e9`` marks a pixel whose flow is
unknown. The readers return such pixels as NaN in *both* components, so they can never reach a loss as a huge
number; :func:`unknown_mask` / :func:`known_valid` turn them into invalid pixels, and :func:`reconet_lib.warp.warp`
reports non-finite flow as invalid.

Errors: every problem with a file's content raises :class:`FlowFormatError` (a ``UserInputError``, hence a
``ValueError``) naming the file and what is wrong with it. Missing files raise ``FileNotFoundError``.
"""
from __future__ import annotations

import math
import os
import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import UserInputError
from .files import atomic_write_bytes
from .sizes import size_pair  # re-exported: data.py checks its pair sizes through flow.size_pair

#: The first four bytes of a Middlebury ``.flo`` file; read as a little-endian float32 they are 202021.25.
FLO_TAG = b"PIEH"
#: :data:`FLO_TAG` as a float, the "sanity check" value of the Middlebury format description.
FLO_TAG_FLOAT = 202021.25
#: A flow component whose magnitude exceeds this marks an unknown pixel (Middlebury convention).
UNKNOWN_FLOW_THRESHOLD = 1e9
#: The value :func:`write_flo` stores for unknown (non-finite) pixels, as the Middlebury tools do.
UNKNOWN_FLOW_VALUE = 1e10
#: Largest width or height a flow file may declare; anything larger is treated as a corrupt header.
MAX_DIMENSION = 1 << 16

_FLO_HEADER = struct.Struct("<4sii")  # tag, width, height (little-endian int32)
_PFM_MAX_LINE = 128  # bytes; PFM header lines are short text


class FlowFormatError(UserInputError):
    """A flow file (``.flo`` / ``.pfm``) is malformed: wrong tag, bad size, truncated or trailing data."""


# --------------------------------------------------------------------------------------------------------------
# Unknown values
# --------------------------------------------------------------------------------------------------------------


def _mark_unknown(flow: np.ndarray) -> np.ndarray:
    """Set both components of unknown pixels (``|u|`` or ``|v|`` > 1e9, or non-finite) to NaN, in place."""
    with np.errstate(invalid="ignore"):
        known = (np.abs(flow[..., 0]) <= UNKNOWN_FLOW_THRESHOLD) & (np.abs(flow[..., 1]) <= UNKNOWN_FLOW_THRESHOLD)
    flow[~known] = np.nan
    return flow


def unknown_mask(flow):
    """Where the flow is unknown: NaN, infinite or with a component beyond ``1e9`` in magnitude.

    Args:
        flow: numpy ``(H, W, 2)`` (as read from a file), or a tensor ``(B, 2, H, W)`` / ``(2, H, W)``.
    Returns:
        numpy bool ``(H, W)`` for numpy input; bool tensor ``(B, H, W)`` / ``(H, W)`` for tensor input.
        True = unknown.
    """
    if isinstance(flow, torch.Tensor):
        if flow.dim() not in (3, 4) or flow.shape[-3] != 2:
            raise UserInputError(f"unknown_mask needs a flow tensor (B, 2, H, W) or (2, H, W); got {tuple(flow.shape)}")
        u, v = flow.unbind(dim=-3)
        return ~((u.abs() <= UNKNOWN_FLOW_THRESHOLD) & (v.abs() <= UNKNOWN_FLOW_THRESHOLD))
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[-1] != 2:
        raise UserInputError(f"unknown_mask needs a numpy flow (H, W, 2); got shape {flow.shape}")
    with np.errstate(invalid="ignore"):
        return ~((np.abs(flow[..., 0]) <= UNKNOWN_FLOW_THRESHOLD) & (np.abs(flow[..., 1]) <= UNKNOWN_FLOW_THRESHOLD))


def known_valid(flow: torch.Tensor) -> torch.Tensor:
    """Valid mask of the pixels whose flow is known.

    Args:
        flow: ``(B, 2, H, W)`` flow in pixels (unknown pixels NaN or beyond 1e9).
    Returns:
        ``(B, 1, H, W)`` float32, 1 = known flow, 0 = unknown.
    """
    if flow.dim() != 4 or flow.shape[1] != 2:
        raise UserInputError(f"known_valid needs a flow tensor (B, 2, H, W); got {tuple(flow.shape)}")
    return (~unknown_mask(flow))[:, None].float()


# --------------------------------------------------------------------------------------------------------------
# Atomic writing and size checks shared by both formats
# --------------------------------------------------------------------------------------------------------------


def _check_dimensions(path: Path, width: int, height: int, kind: str) -> None:
    if width <= 0 or height <= 0:
        raise FlowFormatError(
            f"{path}: the {kind} header declares a {width} x {height} (width x height) image; both must be "
            f"positive. The file is corrupt or not a {kind} file."
        )
    if width > MAX_DIMENSION or height > MAX_DIMENSION:
        raise FlowFormatError(
            f"{path}: the {kind} header declares an implausible size {width} x {height} (width x height, "
            f"limit {MAX_DIMENSION} per side). The file is corrupt or not a {kind} file."
        )


def _check_payload_size(path: Path, available: int, expected: int, width: int, height: int, kind: str) -> None:
    """Compare the bytes after the header with what the header promises, before anything is allocated."""
    if available < expected:
        raise FlowFormatError(
            f"{path}: truncated {kind} data: the header declares {width} x {height} (width x height), i.e. "
            f"{expected} bytes of values, but only {available} follow the header. Re-download or re-write the file."
        )
    if available > expected:
        raise FlowFormatError(
            f"{path}: {available - expected} unexpected trailing bytes after the {width} x {height} {kind} data "
            "(the header and the file size disagree). The file is corrupt or was written incorrectly."
        )


# --------------------------------------------------------------------------------------------------------------
# Middlebury .flo
# --------------------------------------------------------------------------------------------------------------


def read_flo(path) -> np.ndarray:
    """Read a Middlebury ``.flo`` file.

    Layout (all little-endian): the 4 bytes ``b"PIEH"`` (float32 202021.25), int32 width, int32 height, then
    ``height * width * 2`` float32 values, row by row, ``u`` and ``v`` interleaved per pixel.

    Unknown pixels (``|u|`` or ``|v|`` > 1e9, see :data:`UNKNOWN_FLOW_THRESHOLD`) come back as NaN in both
    components; use :func:`unknown_mask` to find them.

    Args:
        path: file path.
    Returns:
        ``(H, W, 2)`` float32 flow in pixels (channel 0 = u right, 1 = v down).
    Raises:
        FlowFormatError: wrong tag, non-positive or implausible size, truncated data or trailing bytes.
    """
    path = Path(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        header = f.read(_FLO_HEADER.size)
        if len(header) < _FLO_HEADER.size:
            raise FlowFormatError(
                f"{path}: truncated .flo header: {len(header)} bytes, expected at least {_FLO_HEADER.size} "
                "(tag, width, height)"
            )
        tag, width, height = _FLO_HEADER.unpack(header)
        if tag != FLO_TAG:
            raise FlowFormatError(
                f"{path}: not a Middlebury .flo file: the first 4 bytes are {tag!r}, expected {FLO_TAG!r} "
                f"(float {FLO_TAG_FLOAT})"
            )
        _check_dimensions(path, width, height, ".flo")
        expected = height * width * 2 * 4
        _check_payload_size(path, size - _FLO_HEADER.size, expected, width, height, ".flo")
        payload = f.read(expected)
    if len(payload) != expected:  # the file changed while we read it
        raise FlowFormatError(f"{path}: truncated .flo data: read {len(payload)} of {expected} bytes")
    flow = np.frombuffer(payload, dtype="<f4").astype(np.float32).reshape(height, width, 2)
    return _mark_unknown(flow)


def _as_numpy_flow(flow, what: str) -> np.ndarray:
    if isinstance(flow, torch.Tensor):
        raise UserInputError(
            f"{what} takes a numpy array (H, W, 2); got a tensor of shape {tuple(flow.shape)}. "
            "Convert it with reconet_lib.flow.flow_to_numpy first."
        )
    array = np.asarray(flow)
    if array.ndim != 3 or array.shape[2] != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise UserInputError(f"{what} needs a flow array of shape (H, W, 2) with H, W >= 1; got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise UserInputError(f"{what} needs a real-valued (float) flow array; got dtype {array.dtype}")
    return array


def write_flo(path, flow) -> None:
    """Write a flow to a Middlebury ``.flo`` file, atomically (temporary file, then rename).

    Non-finite pixels (NaN / inf in either component) are stored as unknown (both components 1e10), so that
    :func:`read_flo` gives them back as NaN. Missing parent folders are created.

    Args:
        path: destination path (normally ending in ``.flo``).
        flow: numpy ``(H, W, 2)`` flow in pixels; converted to float32.
    """
    array = _as_numpy_flow(flow, "write_flo")
    height, width = array.shape[:2]
    if height > MAX_DIMENSION or width > MAX_DIMENSION:
        raise UserInputError(f"write_flo: {width} x {height} is larger than the readers accept ({MAX_DIMENSION})")
    data = array.astype("<f4", copy=True)
    data[~np.isfinite(data).all(axis=-1)] = UNKNOWN_FLOW_VALUE
    atomic_write_bytes(path, _FLO_HEADER.pack(FLO_TAG, width, height) + np.ascontiguousarray(data).tobytes())


# --------------------------------------------------------------------------------------------------------------
# PFM (portable float map), used by the Scene Flow datasets
# --------------------------------------------------------------------------------------------------------------


def _pfm_line(f, path: Path, what: str) -> str:
    line = f.readline(_PFM_MAX_LINE)
    if not line.endswith(b"\n"):
        problem = "the file ends" if len(line) < _PFM_MAX_LINE else "the line is too long"
        raise FlowFormatError(f"{path}: truncated or malformed PFM header: {problem} while reading the {what} line")
    try:
        return line.decode("ascii").strip()
    except UnicodeDecodeError:
        raise FlowFormatError(f"{path}: malformed PFM header: the {what} line is not ASCII text ({line[:20]!r})") from None


def read_pfm(path) -> np.ndarray:
    """Read a PFM (portable float map) file.

    Layout: a text header of three lines, ``PF`` (3 channels) or ``Pf`` (1 channel); ``<width> <height>``;
    a scale whose sign gives the byte order (negative = little-endian, positive = big-endian); then float32
    values, pixel-interleaved, with the rows stored **bottom-up** (the first row in the file is the image's
    last row). The absolute value of the scale is not applied.

    Args:
        path: file path.
    Returns:
        float32 ``(H, W)`` for ``Pf`` files, ``(H, W, 3)`` for ``PF`` files, rows top-down.
    Raises:
        FlowFormatError: unknown type, malformed or truncated header, zero scale, bad size, truncated data or
            trailing bytes.
    """
    path = Path(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        kind = _pfm_line(f, path, "type")
        if kind not in ("PF", "Pf"):
            raise FlowFormatError(f"{path}: not a PFM file: the first line is {kind[:20]!r}, expected 'PF' or 'Pf'")
        channels = 3 if kind == "PF" else 1
        dims = _pfm_line(f, path, "size").split()
        try:
            width, height = (int(d) for d in dims)
        except ValueError:
            raise FlowFormatError(f"{path}: malformed PFM header: size line {' '.join(dims)!r}, expected 'width height'") from None
        _check_dimensions(path, width, height, "PFM")
        scale_text = _pfm_line(f, path, "scale")
        try:
            scale = float(scale_text)
        except ValueError:
            raise FlowFormatError(f"{path}: malformed PFM header: scale line {scale_text!r} is not a number") from None
        if scale == 0 or not math.isfinite(scale):
            raise FlowFormatError(f"{path}: PFM scale is {scale_text!r}; it must be a non-zero number (its sign gives the byte order)")
        expected = height * width * channels * 4
        _check_payload_size(path, size - f.tell(), expected, width, height, "PFM")
        payload = f.read(expected)
    if len(payload) != expected:
        raise FlowFormatError(f"{path}: truncated PFM data: read {len(payload)} of {expected} bytes")
    dtype = "<f4" if scale < 0 else ">f4"
    image = np.frombuffer(payload, dtype=dtype).reshape(height, width, channels)[::-1]
    image = np.array(image, dtype=np.float32)  # a copy: frombuffer views are read-only, even when contiguous
    return image[..., 0] if channels == 1 else image


def write_pfm(path, array, *, byteorder: str = "little") -> None:
    """Write a PFM file atomically (rows bottom-up, as the format requires).

    Args:
        path: destination path.
        array: numpy float ``(H, W)`` or ``(H, W, 1)`` (written as ``Pf``) or ``(H, W, 3)`` (written as ``PF``).
        byteorder: ``"little"`` (scale -1.0, the common choice) or ``"big"`` (scale 1.0).
    """
    if isinstance(array, torch.Tensor):
        raise UserInputError(f"write_pfm takes a numpy array; got a tensor of shape {tuple(array.shape)}")
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3) or 0 in array.shape:
        raise UserInputError(
            f"write_pfm needs an array (H, W), (H, W, 1) or (H, W, 3) with H, W >= 1; got shape {array.shape}. "
            "To store a 2-channel flow use write_flow(path, flow), which adds a zero third channel."
        )
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise UserInputError(f"write_pfm needs a real-valued array; got dtype {array.dtype}")
    if byteorder not in ("little", "big"):
        raise UserInputError(f"write_pfm: byteorder must be 'little' or 'big'; got {byteorder!r}")
    height, width = array.shape[:2]
    kind = "PF" if array.ndim == 3 else "Pf"
    scale = "-1.0" if byteorder == "little" else "1.0"
    data = np.ascontiguousarray(array[::-1], dtype="<f4" if byteorder == "little" else ">f4")
    header = f"{kind}\n{width} {height}\n{scale}\n".encode("ascii")
    atomic_write_bytes(path, header + data.tobytes())


# --------------------------------------------------------------------------------------------------------------
# Either format
# --------------------------------------------------------------------------------------------------------------


def read_flow(path) -> np.ndarray:
    """Read a flow from a ``.flo`` or ``.pfm`` file (chosen by the suffix).

    PFM flows (Scene Flow) have 3 channels; the first two are ``u, v`` and the third (zeros) is dropped.
    Unknown pixels are NaN in both components, whatever the format.

    Returns:
        ``(H, W, 2)`` float32 flow in pixels.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".flo":
        return read_flo(path)
    if suffix == ".pfm":
        image = read_pfm(path)
        if image.ndim != 3:
            raise FlowFormatError(f"{path}: a greyscale (Pf) PFM holds one channel; a flow needs a 3-channel (PF) file")
        return _mark_unknown(np.array(image[..., :2]))
    raise FlowFormatError(f"{path}: unknown flow file type {path.suffix!r}; expected .flo or .pfm")


def write_flow(path, flow) -> None:
    """Write a numpy ``(H, W, 2)`` flow as ``.flo`` or ``.pfm`` (by suffix; PFM gets a zero third channel)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".flo":
        return write_flo(path, flow)
    if suffix == ".pfm":
        array = _as_numpy_flow(flow, "write_flow").astype(np.float32)
        return write_pfm(path, np.concatenate([array, np.zeros_like(array[..., :1])], axis=-1))
    raise UserInputError(f"write_flow: unknown flow file type {path.suffix!r} for {path}; use .flo or .pfm")


# --------------------------------------------------------------------------------------------------------------
# numpy <-> torch
# --------------------------------------------------------------------------------------------------------------


def flow_to_tensor(flow: np.ndarray, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """numpy ``(H, W, 2)`` flow -> tensor ``(1, 2, H, W)`` (NaN kept: unknown pixels stay unknown)."""
    array = _as_numpy_flow(flow, "flow_to_tensor")
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1)[None]
    return tensor.to(device=device, dtype=dtype).contiguous()


def flow_to_numpy(flow: torch.Tensor) -> np.ndarray:
    """Tensor ``(1, 2, H, W)`` or ``(2, H, W)`` flow -> numpy ``(H, W, 2)`` float32 (on the CPU)."""
    if flow.dim() == 4 and flow.shape[0] == 1:
        flow = flow[0]
    if flow.dim() != 3 or flow.shape[0] != 2:
        raise UserInputError(f"flow_to_numpy needs one flow (1, 2, H, W) or (2, H, W); got {tuple(flow.shape)}")
    return flow.detach().to("cpu", torch.float32).permute(1, 2, 0).contiguous().numpy()


# --------------------------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------------------------


def _check_flow_batch(flow: torch.Tensor, what: str) -> None:
    if not isinstance(flow, torch.Tensor) or flow.dim() != 4 or flow.shape[1] != 2:
        shape = tuple(flow.shape) if hasattr(flow, "shape") else type(flow).__name__
        raise UserInputError(f"{what} needs a flow tensor (B, 2, H, W); got {shape}")


def resize_flow(flow: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """Resize a flow field and rescale its vectors: ``u *= w / W``, ``v *= h / H``.

    Interpolation uses ``align_corners=False`` (pixel areas scale by exactly ``w / W`` and ``h / H``). Unknown
    (NaN) pixels stay unknown and, with bilinear interpolation, make their neighbours unknown too.

    Args:
        flow: ``(B, 2, H, W)`` flow in pixels.
        size: target ``(h, w)``.
        mode: ``"bilinear"``, ``"nearest"`` or ``"area"`` (area averaging, for shrinking).
    Returns:
        ``(B, 2, h, w)`` flow in pixels of the new size, same dtype.
    """
    _check_flow_batch(flow, "resize_flow")
    if mode not in ("bilinear", "nearest", "area"):
        raise UserInputError(f"resize_flow: mode must be 'bilinear', 'nearest' or 'area'; got {mode!r}")
    h, w = size_pair(size, "resize_flow")
    old_h, old_w = flow.shape[-2:]
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    resized = F.interpolate(flow, size=(h, w), mode=mode, **kwargs)
    scale = torch.tensor([w / old_w, h / old_h], dtype=resized.dtype, device=resized.device).view(1, 2, 1, 1)
    return resized * scale


def hflip_flow(flow: torch.Tensor) -> torch.Tensor:
    """The flow of horizontally mirrored frames: mirror the field left-right and negate ``u``.

    If ``flow`` is ``flow_a_to_b`` of frames a, b, the result is ``flow_a_to_b`` of the mirrored frames (same
    direction in time; this is a change of coordinates, not a reversal).

    Args:
        flow: ``(B, 2, H, W)`` in pixels.
    Returns:
        ``(B, 2, H, W)``.
    """
    _check_flow_batch(flow, "hflip_flow")
    flipped = flow.flip(-1)
    sign = torch.tensor([-1.0, 1.0], dtype=flow.dtype, device=flow.device).view(1, 2, 1, 1)
    return flipped * sign


# --------------------------------------------------------------------------------------------------------------
# Colour coding (Middlebury colour wheel, Baker et al. 2011)
# --------------------------------------------------------------------------------------------------------------

#: Hue segments of the Middlebury wheel: (number of hues, start colour, end colour) going
#: red -> yellow -> green -> cyan -> blue -> magenta -> (back to red). 15 + 6 + 4 + 11 + 13 + 6 = 55 hues.
WHEEL_SEGMENTS = (
    (15, (255, 0, 0), (255, 255, 0)),  # RY
    (6, (255, 255, 0), (0, 255, 0)),  # YG
    (4, (0, 255, 0), (0, 255, 255)),  # GC
    (11, (0, 255, 255), (0, 0, 255)),  # CB
    (13, (0, 0, 255), (255, 0, 255)),  # BM
    (6, (255, 0, 255), (255, 0, 0)),  # MR
)


def wheel_hues() -> np.ndarray:
    """The 55 hues of the Middlebury colour wheel.

    Within each segment one channel ramps linearly from the start to the end colour in ``n`` steps,
    ``floor(255 * i / n)`` for ``i = 0 .. n-1`` (rising) or ``255 - floor(255 * i / n)`` (falling).

    Returns:
        ``(55, 3)`` float32 RGB in [0, 255]; hue 0 is pure red.
    """
    rows = []
    for n, start, end in WHEEL_SEGMENTS:
        ramp = np.floor(255 * np.arange(n) / n)
        segment = np.empty((n, 3))
        for c in range(3):
            if start[c] == end[c]:
                segment[:, c] = start[c]
            elif end[c] > start[c]:
                segment[:, c] = ramp
            else:
                segment[:, c] = 255 - ramp
        rows.append(segment)
    return np.concatenate(rows).astype(np.float32)


def _flow_to_rgb_batch(flow: torch.Tensor, max_magnitude: float | None) -> torch.Tensor:
    """(B, 2, H, W) float -> (B, 3, H, W) uint8."""
    flow = flow.float()
    unknown = unknown_mask(flow)  # (B, H, W)
    flow = flow.masked_fill(unknown[:, None], 0.0)
    if max_magnitude is None:
        largest = flow.pow(2).sum(dim=1).sqrt().max() if flow.numel() else flow.new_zeros(())
        scale = largest + torch.finfo(torch.float32).eps
    else:
        if not (max_magnitude > 0 and math.isfinite(max_magnitude)):
            raise UserInputError(f"flow_to_rgb: max_magnitude must be a positive number; got {max_magnitude!r}")
        scale = float(max_magnitude)
    flow = flow / scale  # magnitude 1 = the largest motion shown at full saturation
    u, v = flow[:, 0], flow[:, 1]
    radius = (u.pow(2) + v.pow(2)).sqrt()
    hues = torch.from_numpy(wheel_hues()).to(flow.device) / 255.0  # (55, 3)
    count = hues.shape[0]
    # Direction -> position on the wheel: angle of (-u, -v) in units of pi, in [-1, 1]; -1 (motion to the
    # right) is hue 0 (red), and the position grows as the motion direction turns clockwise on screen (+y down).
    angle = torch.atan2(-v, -u) / math.pi
    position = (angle + 1) / 2 * (count - 1)
    k0 = position.floor().long()
    k1 = (k0 + 1) % count
    frac = (position - k0)[..., None]
    colour = (1 - frac) * hues[k0] + frac * hues[k1]  # (B, H, W, 3), fully saturated hue
    radius = radius[..., None]
    # Magnitude -> saturation: blend from white (radius 0) to the hue (radius 1); beyond the range the
    # hue is darkened (Middlebury's convention for out-of-range motion).
    colour = torch.where(radius <= 1, 1 - radius * (1 - colour), colour * 0.75)
    image = torch.floor(255 * colour).clamp(0, 255).to(torch.uint8)
    image = image.masked_fill(unknown[..., None], 0)  # unknown flow is drawn black
    return image.permute(0, 3, 1, 2).contiguous()


def flow_to_rgb(flow, max_magnitude: float | None = None):
    """Colour-code a flow with the Middlebury colour wheel (Baker et al., IJCV 2011).

    The hue gives the direction (right = red, down = yellow, left = cyan-blue, up = violet; see
    :func:`color_wheel`), the saturation the magnitude relative to ``max_magnitude``: white = no motion, full
    colour = ``max_magnitude`` pixels. Larger motions are drawn with a darkened hue. Unknown (NaN) pixels are
    black.

    With ``max_magnitude=None`` the flow is divided by its largest (known) magnitude over the whole input,
    as ``torchvision.utils.flow_to_image`` does, and the result agrees with it (tests check this).

    Args:
        flow: tensor ``(B, 2, H, W)`` or ``(2, H, W)``, or numpy ``(H, W, 2)``; pixels.
        max_magnitude: magnitude in pixels drawn at full saturation, or None for the largest one present.
    Returns:
        uint8 tensor ``(B, 3, H, W)`` / ``(3, H, W)`` for tensor input, uint8 numpy ``(H, W, 3)`` for numpy input.
    """
    if isinstance(flow, torch.Tensor):
        if flow.dim() == 3 and flow.shape[0] == 2:
            return _flow_to_rgb_batch(flow[None], max_magnitude)[0]
        _check_flow_batch(flow, "flow_to_rgb")
        return _flow_to_rgb_batch(flow, max_magnitude)
    array = _as_numpy_flow(flow, "flow_to_rgb")
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1)[None]
    return _flow_to_rgb_batch(tensor, max_magnitude)[0].permute(1, 2, 0).numpy()


def color_wheel(size: int = 151) -> np.ndarray:
    """A legend for :func:`flow_to_rgb`: the colour of every flow vector up to a fixed magnitude.

    The pixel at offset ``(dx, dy)`` from the centre shows the colour of the flow ``(u, v) = (dx, dy)``,
    with the disc's radius as ``max_magnitude``; pixels outside the disc are white.

    Args:
        size: side length in pixels (>= 3).
    Returns:
        uint8 numpy ``(size, size, 3)``.
    """
    if int(size) != size or size < 3:
        raise UserInputError(f"color_wheel: size must be an integer >= 3; got {size!r}")
    size = int(size)
    centre = (size - 1) / 2
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    field = np.stack([xs - centre, ys - centre], axis=-1)
    image = flow_to_rgb(field, max_magnitude=centre)
    outside = np.hypot(field[..., 0], field[..., 1]) > centre
    image[outside] = 255
    return image
