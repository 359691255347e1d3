"""Winograd's minimal filtering: a 3x3 convolution with 4 times fewer multiplications, for CPUs without bfloat16.

A direct 3x3 convolution spends ``9 * C_in * C_out`` multiply-adds on every output pixel. Winograd's
``F(4x4, 3x3)`` (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016) computes a
4x4 block of outputs from the 6x6 block of inputs under it with 36 products per channel pair instead of
``16 * 9 = 144``:

    ``Y = A^T [ (G g G^T) * (B^T d B) ] A``

where ``d`` is the 6x6 input tile, ``g`` the 3x3 kernel, ``*`` the element-wise product and ``B^T`` (6x6),
``G`` (6x3), ``A^T`` (4x6) small constant matrices (interpolation at the points 0, +-1, +-2 and infinity).
Summed over input channels, the element-wise products become 36 independent matrix multiplies
``(tiles x C_in) @ (C_in x C_out)``, one per position in the 6x6 tile: that is where the time goes, and they run
at the machine's matrix-multiply speed. The two transforms are cheap additions (done here as small matrix
multiplies) but move memory, so the method pays off for wide layers (ReCoNet's residual blocks, 192 channels)
and not for 3-channel ones.

Float32 rounding: the transforms have entries up to 8 and 1/24, so the result differs from a direct
convolution by about 1e-5 of the output's scale (a direct float32 convolution: about 1e-6); far below what an
8-bit output can show. Only float32 and float64 are accepted: in half precision the error would be visible.

Used by :func:`reconet_lib.inference.optimize_for_inference` on CPUs where the precision policy chooses float32
(no native bfloat16); there the residual blocks and the decoder's convolutions run in about half the time.
"""
from __future__ import annotations

import torch

from .errors import UserInputError

#: Output tile side ``m`` and input tile side ``m + 2`` of ``F(4x4, 3x3)``.
TILE_OUT = 4
TILE_IN = TILE_OUT + 2

# Interpolation points 0, 1, -1, 2, -2 and infinity (Lavin and Gray 2016, section 4.2).
_B_T = ((4, 0, -5, 0, 1, 0),
        (0, -4, -4, 1, 1, 0),
        (0, 4, -4, -1, 1, 0),
        (0, -2, -1, 2, 1, 0),
        (0, 2, -1, -2, 1, 0),
        (0, 4, 0, -5, 0, 1))
_G = ((1 / 4, 0, 0),
      (-1 / 6, -1 / 6, -1 / 6),
      (-1 / 6, 1 / 6, -1 / 6),
      (1 / 24, 1 / 12, 1 / 6),
      (1 / 24, -1 / 12, 1 / 6),
      (0, 0, 1))
_A_T = ((1, 1, 1, 1, 1, 0),
        (0, 1, -1, 2, -2, 0),
        (0, 1, 1, 4, 4, 0),
        (0, 1, -1, 8, -8, 1))


def transform_matrices(dtype: torch.dtype = torch.float64, device: torch.device | str | None = None):
    """``(B^T, G, A^T)`` of ``F(4x4, 3x3)``: shapes ``(6, 6)``, ``(6, 3)``, ``(4, 6)``."""
    return tuple(torch.tensor(m, dtype=dtype, device=device) for m in (_B_T, _G, _A_T))


def transform_weight(weight: torch.Tensor) -> torch.Tensor:
    """The kernels in the transformed domain, ``U = G g G^T``, laid out for the 36 matrix multiplies.

    Args:
        weight: ``(C_out, C_in, 3, 3)`` convolution weight (as in ``nn.Conv2d``, cross-correlation).
    Returns:
        ``(36, C_in, C_out)`` in ``weight``'s dtype (computed in float64); row ``6a + b`` is tile position (a, b).
    """
    if not isinstance(weight, torch.Tensor) or not weight.is_floating_point():
        raise UserInputError("Winograd F(4x4, 3x3) needs a floating-point weight tensor (its transform has fractions)")
    if weight.dim() != 4 or tuple(weight.shape[-2:]) != (3, 3):
        raise UserInputError(f"Winograd F(4x4, 3x3) needs a (C_out, C_in, 3, 3) weight; got {tuple(weight.shape)}")
    _, g, _ = transform_matrices(device=weight.device)
    u = torch.einsum("ay,oiyx,bx->abio", g, weight.detach().double(), g)
    return u.reshape(TILE_IN * TILE_IN, weight.shape[1], weight.shape[0]).to(weight.dtype).contiguous()


def _two_sided(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``matrix @ X @ matrix^T`` for every tile: ``x`` is ``(k, k, N)`` (tile rows, tile columns, anything),
    ``matrix`` ``(m, k)``; returns ``(m, m, N)``. Two passes of small matrix multiplies (separable)."""
    k, n = x.shape[0], x.shape[-1]
    rows = (matrix @ x.reshape(k, k * n)).view(-1, k, n)        # (m, k, N): transform along tile rows
    return torch.matmul(matrix, rows).contiguous()             # (m, m, N): then along tile columns


def conv3x3_valid(x: torch.Tensor, u: torch.Tensor, chunk_bytes: int = 4 << 20) -> torch.Tensor:
    """A "valid" 3x3 convolution (no padding, stride 1, no bias) by Winograd ``F(4x4, 3x3)``.

    Args:
        x: ``(B, C_in, H, W)`` float32/float64, ``H, W >= 3``, any memory format (channels-last is fastest).
        u: ``(36, C_in, C_out)`` from :func:`transform_weight`, same dtype and device as ``x``.
        chunk_bytes: size of the transformed tiles handled at once (rows of tiles; default 4 MiB, so that they
            stay in cache between the transforms and the matrix multiplies).
    Returns:
        ``(B, C_out, H - 2, W - 2)``, a view with channels-last strides (cropped from whole tiles, so not
        contiguous unless ``H - 2`` and ``W - 2`` are multiples of 4); equal to ``F.conv2d(x, weight)`` up to float rounding
        (about 1e-5 of the output's scale in float32).
    """
    if x.dtype not in (torch.float32, torch.float64) or u.dtype != x.dtype:
        raise UserInputError(f"Winograd convolution runs in float32 or float64 with matching weights; got "
                             f"input {x.dtype} and weights {u.dtype}")
    if x.dim() != 4:
        raise UserInputError(f"Winograd convolution needs a (B, C, H, W) input; got shape {tuple(x.shape)}")
    b, c_in, h, w = x.shape
    if u.shape[:2] != (TILE_IN * TILE_IN, c_in) or h < 3 or w < 3:
        raise UserInputError(f"Winograd convolution: input {tuple(x.shape)} does not fit weights {tuple(u.shape)} "
                             "(need C_in to match and H, W >= 3)")
    out_h, out_w = h - 2, w - 2
    th, tw = -(-out_h // TILE_OUT), -(-out_w // TILE_OUT)
    c_out = u.shape[-1]
    # zeros below and right so that every tile is whole; they only reach outputs that are cropped away
    x = torch.nn.functional.pad(x, (0, TILE_OUT * tw + 2 - w, 0, TILE_OUT * th + 2 - h))
    x = x.permute(0, 2, 3, 1)
    if not x.is_contiguous():
        x = x.contiguous()
    out = x.new_empty(b, TILE_OUT * th, TILE_OUT * tw, c_out)
    b_t, _, a_t = transform_matrices(x.dtype, x.device)
    # A few rows of tiles at a time, so that the 36 transformed copies stay in the CPU's cache
    per_row = TILE_IN * TILE_IN * tw * max(c_in, c_out) * x.element_size()
    rows = max(1, min(th, chunk_bytes // per_row))
    sb, sh, sw, sc = x.stride()
    for i in range(b):
        for r0 in range(0, th, rows):
            r = min(rows, th - r0)
            # (6, 6, r, tw, C): overlapping 6x6 windows every 4 pixels, gathered into one contiguous block
            tiles = x[i, TILE_OUT * r0:].as_strided((TILE_IN, TILE_IN, r, tw, c_in),
                                                    (sh, sw, TILE_OUT * sh, TILE_OUT * sw, sc))
            v = _two_sided(b_t, tiles.reshape(TILE_IN, TILE_IN, r * tw * c_in))          # B^T d B
            m = torch.bmm(v.view(TILE_IN * TILE_IN, r * tw, c_in), u)                 # (36, tiles, C_out)
            y = _two_sided(a_t, m.view(TILE_IN, TILE_IN, r * tw * c_out))             # A^T M A
            out[i, TILE_OUT * r0:TILE_OUT * (r0 + r)] = (
                y.view(TILE_OUT, TILE_OUT, r, tw, c_out).permute(2, 0, 3, 1, 4).reshape(TILE_OUT * r, TILE_OUT * tw, c_out))
    return out[:, :out_h, :out_w].permute(0, 3, 1, 2)
