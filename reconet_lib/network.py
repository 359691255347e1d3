"""The ReCoNet stylisation network: an encoder-decoder that turns a [0, 1] RGB frame into a stylised frame.

Architecture (Gao et al., ACCV 2018, arXiv 1807.01197), with ``channels = (c1, c2, c3)``:

=========================  ===========================================  ==================
layer                      operation                                    output (B, C, H, W)
=========================  ===========================================  ==================
encoder.0                  conv 9x9, stride 1, 3 -> c1                  (B, c1, H, W)
encoder.1                  conv 3x3, stride 2, c1 -> c2                 (B, c2, H/2, W/2)
encoder.2                  conv 3x3, stride 2, c2 -> c3                 (B, c3, H/4, W/4)
encoder.3 ...              N residual blocks (conv-IN-ReLU-conv-IN, +x) (B, c3, H/4, W/4)  = features
decoder.0                  nearest x2 upsample, conv 3x3, c3 -> c2      (B, c2, H/2, W/2)
decoder.1                  nearest x2 upsample, conv 3x3, c2 -> c1      (B, c1, H, W)
decoder.2                  conv 9x9, stride 1, c1 -> 3                  (B, 3, H, W)
output                     ``0.5 + 0.5 * s * tanh(z)``                  (B, 3, H, W)
=========================  ===========================================  ==================

Every convolution pads its input by reflection (``k // 2`` pixels) and, except the last one, is followed
by ``InstanceNorm2d(affine=True)`` and ReLU (the second convolution of a residual block has no ReLU; the
block adds its input afterwards). Convolutions followed by instance normalisation have no bias: the
normalisation subtracts the per-channel mean, so a bias there would be a parameter without effect.

Input and output are [0, 1] images (no ImageNet normalisation here: that happens only inside VGG).
Any ``H, W`` works: the input is padded at the bottom and right to a multiple of 4 (by reflection, or by
replicating the border where the image is too small to reflect, e.g. 1x1 or 2x3) and the output is cropped
back, so feature cell ``(i, j)`` sits over input pixels ``[4i, 4i + 4) x [4j, 4j + 4)``.

**Output range.** The last convolution's output ``z`` is mapped by ``0.5 + 0.5 * s * tanh(z)`` with
``s = output_scale`` (default 1.1). Plain ``(tanh + 1) / 2`` reaches 0 and 1 only as ``z -> +-inf``,
where its gradient vanishes; with ``s = 1.1`` black and white are reached at ``z = -+atanh(1/1.1) = -+1.52``
(where ``tanh' = 0.17``), and the raw output lies in ``[-0.05, 1.05]``. In train mode ``forward`` returns
this raw output (the losses see it unclamped); in eval mode it is clamped to [0, 1].

**Cost per 640x360 frame** (``count_flops``: multiply-adds x 2 of the convolutions; ``count_parameters``):

======  ======================  ==========  ===============  ================
preset  channels, blocks        parameters  GFLOP per frame  receptive field
======  ======================  ==========  ===============  ================
paper   (48, 96, 192), 4        3,096,291   135.0            95 px
demo    (32, 64, 128), 5        1,677,635   70.9             111 px
tiny    (8, 16, 32), 1          34,131      3.6              47 px
======  ======================  ==========  ===============  ================

Instance normalisation, ReLU, padding, upsampling and tanh add well under 1 % to the FLOPs, but they move
memory. For speed, :func:`optimize_for_inference` prepares a copy of a trained model (half precision,
channels-last, a faster form of the last layer, optionally ``torch.compile``); ``benchmarks/inference.py`` measures
every option against the machine's matrix-multiply rate.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import UserInputError
from .precision import WINOGRAD_MIN_CHANNELS, inference_dtype, inference_winograd, parse_device
from . import winograd
from .memory import retain_freed_memory

#: The network works on images whose sides are multiples of this (two stride-2 convolutions).
SIZE_MULTIPLE = 4


@dataclass(frozen=True)
class ReCoNetConfig:
    """Shape of a ReCoNet.

    Attributes:
        channels: ``(c1, c2, c3)`` channels at full, half and quarter resolution.
        residual_blocks: number of residual blocks at quarter resolution (each: two 3x3 convolutions).
        output_scale: ``s`` in the output mapping ``0.5 + 0.5 * s * tanh(z)``; ``s >= 1``. With ``s > 1`` the
            values 0 and 1 are reached at finite ``z``, and the raw (train-mode) output spans
            ``[0.5 - s / 2, 0.5 + s / 2]``.
    """

    channels: tuple[int, int, int] = (48, 96, 192)
    residual_blocks: int = 4
    output_scale: float = 1.1

    def __post_init__(self) -> None:
        channels = self.channels
        if isinstance(channels, (str, bytes)) or not hasattr(channels, "__len__") or len(channels) != 3:
            raise UserInputError(f"channels must be three positive integers (c1, c2, c3); got {channels!r}")
        if not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in channels):
            raise UserInputError(f"channels must be three positive integers (c1, c2, c3); got {channels!r}")
        object.__setattr__(self, "channels", tuple(int(c) for c in channels))
        blocks = self.residual_blocks
        if not isinstance(blocks, int) or isinstance(blocks, bool) or blocks < 0:
            raise UserInputError(f"residual_blocks must be an integer >= 0; got {blocks!r}")
        scale = self.output_scale
        if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not math.isfinite(scale) or scale < 1:
            raise UserInputError(
                f"output_scale must be a number >= 1 (so that 0 and 1 are reachable outputs); got {scale!r}"
            )
        object.__setattr__(self, "output_scale", float(scale))

    def to_dict(self) -> dict:
        """Plain-type dict (JSON- and ``torch.load(weights_only=True)``-safe); ``channels`` becomes a list."""
        data = asdict(self)
        data["channels"] = list(self.channels)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "ReCoNetConfig":
        """Inverse of :meth:`to_dict`; missing keys take their defaults, unknown keys are an error."""
        from .config import from_dict

        values = dict(data) if isinstance(data, dict) else data
        if isinstance(values, dict) and isinstance(values.get("channels"), list):
            values["channels"] = tuple(values["channels"])
        return from_dict(cls, values, "ReCoNet config")

    @classmethod
    def preset(cls, name: str) -> "ReCoNetConfig":
        """One of the named configurations in :data:`PRESETS` (``paper``, ``demo``, ``tiny``)."""
        try:
            return PRESETS[name]
        except (KeyError, TypeError):
            raise UserInputError(
                f"unknown ReCoNet preset {name!r}; choose one of {', '.join(sorted(PRESETS))}"
            ) from None


#: Named configurations. ``paper``: the network of the ReCoNet paper. ``demo``: the smaller, faster model of
#: the first author's real-time demo. ``tiny``: a toy for CPU tests and quick notebooks (not for real styles).
PRESETS: dict[str, ReCoNetConfig] = {
    "paper": ReCoNetConfig(channels=(48, 96, 192), residual_blocks=4),
    "demo": ReCoNetConfig(channels=(32, 64, 128), residual_blocks=5),
    "tiny": ReCoNetConfig(channels=(8, 16, 32), residual_blocks=1),
}


# ----------------------------------------------------------------------------------------------------------
# Building blocks


def reflect_pad(x: torch.Tensor, left: int, right: int, top: int, bottom: int) -> torch.Tensor:
    """Pad the last two dimensions by reflection, or by replicating the border where reflection is impossible.

    Reflection needs each pad to be smaller than the side it pads (a 2-pixel image cannot reflect 2 pixels);
    for such tiny inputs the whole pad falls back to ``replicate``.

    Args:
        x: ``(B, C, H, W)``.
    Returns:
        ``(B, C, H + top + bottom, W + left + right)``.
    """
    if left == right == top == bottom == 0:
        return x
    h, w = x.shape[-2:]
    reflectable = max(left, right) < w and max(top, bottom) < h
    return F.pad(x, (left, right, top, bottom), mode="reflect" if reflectable else "replicate")


def instance_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Instance normalisation with a per-channel affine map: each ``(b, c)`` plane to mean 0, variance 1, then
    ``* weight[c] + bias[c]``. ``(B, C, H, W) -> (B, C, H, W)``, same dtype.

    Computed as ``group_norm`` with one group per channel, which is the same formula (biased variance, ``eps``
    inside the square root) but, on the CPU, up to ~15x faster than ``instance_norm`` for channels-last and
    bfloat16 tensors, keeps the input's dtype under CPU autocast, and accepts 1x1 maps in train mode (a single
    pixel normalises to 0, leaving ``bias``).
    """
    # the aten op directly: F.group_norm's Python check refuses planes of a single value
    return torch.group_norm(x, x.shape[1], weight, bias, eps, torch.backends.cudnn.enabled)


class ConvLayer(nn.Module):
    """Reflection padding (``k // 2``), convolution, and optionally ``InstanceNorm2d(affine=True)`` and ReLU.

    ``(B, in_channels, H, W) -> (B, out_channels, ceil(H / stride), ceil(W / stride))`` for odd ``kernel``.
    The convolution has a bias only when no normalisation follows it.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1,
                 norm: bool = True, relu: bool = True) -> None:
        super().__init__()
        self.padding = kernel // 2
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, bias=not norm)
        self.norm = nn.InstanceNorm2d(out_channels, affine=True) if norm else None
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.padding
        x = self.conv(reflect_pad(x, p, p, p, p))
        if self.norm is not None:
            x = instance_norm(x, self.norm.weight, self.norm.bias, self.norm.eps)
        return F.relu(x) if self.relu else x


class ResidualBlock(nn.Module):
    """``x + IN(conv(ReLU(IN(conv(x)))))`` with 3x3 convolutions; shape ``(B, C, H, W)`` is kept."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3)
        self.conv2 = ConvLayer(channels, channels, 3, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x))


class UpsampleConv(nn.Module):
    """Nearest-neighbour x2 upsampling, then a 3x3 :class:`ConvLayer` (IN + ReLU).

    ``(B, in_channels, H, W) -> (B, out_channels, 2H, 2W)``. Used instead of a stride-2 transposed convolution,
    whose uneven kernel overlap paints checkerboard artefacts (Odena et al., Distill 2016).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = ConvLayer(in_channels, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


# ----------------------------------------------------------------------------------------------------------
# The network


class ReCoNet(nn.Module):
    """The ReCoNet stylisation network (see the module docstring for the layer table).

    ``ReCoNet()`` is the paper model; ``ReCoNet(ReCoNetConfig(...))`` or ``ReCoNet.from_preset("demo")`` others.

    ``forward(x)``: ``x`` is ``(B, 3, H, W)`` in [0, 1], any ``H, W >= 1``; returns ``(B, 3, H, W)``. In train mode
    the result is the raw output ``0.5 + 0.5 * s * tanh(z)`` in ``[0.5 - s/2, 0.5 + s/2]`` (what the losses
    need); in eval mode it is clamped to [0, 1]. The output head runs in float32 (also under autocast) and the
    result has the dtype of the model's parameters (float32 under autocast, float16 after ``model.half()``).
    """

    def __init__(self, config: ReCoNetConfig | None = None) -> None:
        super().__init__()
        config = PRESETS["paper"] if config is None else config
        if not isinstance(config, ReCoNetConfig):
            raise UserInputError(f"config must be a ReCoNetConfig (or None for the paper model); got {type(config).__name__}")
        self.config = config
        c1, c2, c3 = config.channels
        self.encoder = nn.Sequential(
            ConvLayer(3, c1, 9),
            ConvLayer(c1, c2, 3, stride=2),
            ConvLayer(c2, c3, 3, stride=2),
            *(ResidualBlock(c3) for _ in range(config.residual_blocks)),
        )
        self.decoder = nn.Sequential(
            UpsampleConv(c3, c2),
            UpsampleConv(c2, c1),
            ConvLayer(c1, 3, 9, norm=False, relu=False),
        )

    @classmethod
    def from_preset(cls, name: str) -> "ReCoNet":
        """``ReCoNet(ReCoNetConfig.preset(name))``; names: ``paper``, ``demo``, ``tiny``."""
        return cls(ReCoNetConfig.preset(name))

    @staticmethod
    def _check_image(x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise UserInputError(f"ReCoNet expects RGB images of shape (B, 3, H, W) in [0, 1]; got {shape}")
        if x.shape[0] == 0 or x.shape[2] == 0 or x.shape[3] == 0:
            raise UserInputError(f"ReCoNet needs a non-empty batch of images; got shape {tuple(x.shape)}")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder features: the output of the last residual block (used by the feature temporal loss).

        Args:
            x: ``(B, 3, H, W)`` images in [0, 1].
        Returns:
            ``(B, c3, ceil(H / 4), ceil(W / 4))``; cell ``(i, j)`` lies over pixels ``[4i, 4i+4) x [4j, 4j+4)``.
        """
        self._check_image(x)
        h, w = x.shape[-2:]
        x = reflect_pad(x, 0, -w % SIZE_MULTIPLE, 0, -h % SIZE_MULTIPLE)
        return self.encoder(x)

    def decode(self, features: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Decode features into an image (raw in train mode, clamped to [0, 1] in eval mode).

        Args:
            features: ``(B, c3, h, w)`` from :meth:`encode`.
            size: ``(H, W)`` of the original input; the ``(4h, 4w)`` result is cropped to it. ``None``: no crop.
        Returns:
            ``(B, 3, H, W)`` (or ``(B, 3, 4h, 4w)``) in the dtype of the model's parameters.
        """
        z = self.decoder(features)
        if size is not None:
            height, width = int(size[0]), int(size[1])
            if not (0 < height <= z.shape[-2] and 0 < width <= z.shape[-1]):
                raise UserInputError(
                    f"size {(height, width)} does not fit the decoded {tuple(z.shape[-2:])}; "
                    "pass the (H, W) of the image the features were encoded from"
                )
            z = z[..., :height, :width]
        out = 0.5 + (0.5 * self.config.output_scale) * torch.tanh(z.float())
        if not self.training:
            out = out.clamp(0.0, 1.0)
        return out.to(self.decoder[-1].conv.bias.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Stylise ``(B, 3, H, W)`` [0, 1] images; same shape out (raw in train mode, clamped in eval mode)."""
        return self.decode(self.encode(x), size=x.shape[-2:])


# ----------------------------------------------------------------------------------------------------------
# Cost model


def _config_of(model_or_config) -> ReCoNetConfig:
    if isinstance(model_or_config, ReCoNetConfig):
        return model_or_config
    config = getattr(model_or_config, "config", None)
    if not isinstance(config, ReCoNetConfig):
        # torch.compile wraps the module; the original is kept as ``_orig_mod``
        config = getattr(getattr(model_or_config, "_orig_mod", None), "config", None)
    if not isinstance(config, ReCoNetConfig):
        raise UserInputError(f"expected a ReCoNet or a ReCoNetConfig; got {type(model_or_config).__name__}")
    return config


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter values in ``model`` (all of them, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def conv_layers(config: ReCoNetConfig, height: int, width: int) -> list[dict]:
    """The convolutions of a ReCoNet run on an ``height x width`` image, in order, with their shapes.

    The image is first padded to a multiple of 4, as :meth:`ReCoNet.encode` does.

    Returns:
        dicts with ``name``, ``in_channels``, ``out_channels``, ``kernel``, ``stride``, ``out_height``, ``out_width``.
    """
    if height < 1 or width < 1:
        raise UserInputError(f"image size must be at least 1x1; got {height}x{width}")
    c1, c2, c3 = config.channels
    h = height + (-height % SIZE_MULTIPLE)
    w = width + (-width % SIZE_MULTIPLE)
    layers = [
        ("encoder.0", 3, c1, 9, 1, h, w),
        ("encoder.1", c1, c2, 3, 2, h // 2, w // 2),
        ("encoder.2", c2, c3, 3, 2, h // 4, w // 4),
    ]
    for b in range(config.residual_blocks):
        for k in (1, 2):
            layers.append((f"encoder.{3 + b}.conv{k}", c3, c3, 3, 1, h // 4, w // 4))
    layers += [
        ("decoder.0", c3, c2, 3, 1, h // 2, w // 2),
        ("decoder.1", c2, c1, 3, 1, h, w),
        ("decoder.2", c1, 3, 9, 1, h, w),
    ]
    keys = ("name", "in_channels", "out_channels", "kernel", "stride", "out_height", "out_width")
    return [dict(zip(keys, layer)) for layer in layers]


def count_flops(model, height: int, width: int) -> int:
    """Floating-point operations of one forward pass on one ``height x width`` frame.

    Counted as 2 x the multiply-adds of the convolutions (one multiply + one add each), at the padded size the
    network really computes: the same convention as ``torch.utils.flop_counter.FlopCounterMode``. Biases,
    instance normalisation, ReLU, padding, upsampling and the tanh head are not counted (together < 1 %).

    Args:
        model: a :class:`ReCoNet` (or a :class:`ReCoNetConfig`).
    Returns:
        FLOPs per frame (divide by 2 for multiply-accumulates, MACs).
    """
    config = _config_of(model)
    total = 0
    for layer in conv_layers(config, height, width):
        macs_per_pixel = layer["in_channels"] * layer["out_channels"] * layer["kernel"] ** 2
        total += 2 * macs_per_pixel * layer["out_height"] * layer["out_width"]
    return total


def receptive_field(config) -> int:
    """Side, in input pixels, of the largest window that can influence one output pixel.

    Exact interval arithmetic through the layers (maximised over the output pixel's position modulo 4, since
    stride-2 convolutions and x2 upsampling make the window depend on it). Instance normalisation is ignored: its
    per-image mean and variance let every pixel nudge every other one, but only through two numbers per channel.

    Args:
        config: a :class:`ReCoNetConfig` (or a :class:`ReCoNet`).
    """
    config = _config_of(config)
    # Walk backwards from the output. Each step maps an index interval [lo, hi] at a layer's output to the
    # interval of its input that it reads. Indices are unpadded positions (padding is ignored here).
    def conv(interval, kernel, stride):
        lo, hi = interval
        r = kernel // 2
        return (stride * lo - r, stride * hi + r)

    def upsample(interval):  # output pixel i of a nearest x2 upsampling reads input pixel i // 2
        lo, hi = interval
        return (lo // 2, hi // 2)

    best = 0
    for phase in range(SIZE_MULTIPLE):
        iv = (1000 + phase, 1000 + phase)
        iv = conv(iv, 9, 1)
        iv = upsample(conv(iv, 3, 1))
        iv = upsample(conv(iv, 3, 1))
        for _ in range(2 * config.residual_blocks):
            iv = conv(iv, 3, 1)
        iv = conv(iv, 3, 2)
        iv = conv(iv, 3, 2)
        iv = conv(iv, 9, 1)
        best = max(best, iv[1] - iv[0] + 1)
    return best


# ----------------------------------------------------------------------------------------------------------
# Fast inference


def space_to_depth(x: torch.Tensor, factor: int) -> torch.Tensor:
    """``F.pixel_unshuffle(x, factor)`` written straight into channels-last memory (one copy instead of two).

    ``(B, C, H, W) -> (B, C * f * f, H / f, W / f)`` with ``H, W`` multiples of ``f``; output channel
    ``c * f * f + qy * f + qx`` holds pixel ``(f * i + qy, f * j + qx)`` of channel ``c``, as in ``pixel_unshuffle``.
    """
    b, c, h, w = x.shape
    f = factor
    blocks = x.permute(0, 2, 3, 1).reshape(b, h // f, f, w // f, f, c).permute(0, 1, 3, 5, 2, 4)
    return blocks.reshape(b, h // f, w // f, c * f * f).permute(0, 3, 1, 2)


class SpaceToDepthConv(nn.Module):
    """A stride-1 convolution with few output channels, rewritten to run fast: the same numbers, other layout.

    A ``k x k`` convolution to 3 channels (ReCoNet's last layer) gives matrix-multiply kernels almost nothing to
    work with (3 output channels), so it runs at a fraction of the machine's speed. Cutting the padded input
    into ``f x f`` blocks (``pixel_unshuffle``) turns it into a ``K x K`` convolution (``K = (f + k - 2) // f + 1``)
    from ``f*f*C_in`` to ``f*f*C_out`` channels on an ``f`` times smaller grid, followed by ``pixel_shuffle``.
    The weights are the original ones, scattered: output sub-pixel ``(py, px)`` of a block reads input sub-pixel
    ``(qy, qx)`` of the block ``(by, bx)`` further with the original tap ``(f*by + qy - py, f*bx + qx - px)``
    (zero where that tap is outside the ``k x k`` kernel). This does ``f*f*K*K / (k*k)`` times the arithmetic
    (1.78x for ``k = 9, f = 4``), but at full matrix-multiply speed; on a CPU it is 2-3x faster.

    ``(B, C_in, H, W)`` (unpadded; reflection padding ``k // 2`` happens inside) ``-> (B, C_out, H, W)``,
    computed in the dtype of ``weight``; the bias is added in (at least) float32, the result's dtype.
    """

    def __init__(self, layer: ConvLayer, factor: int = 4) -> None:
        super().__init__()
        conv = layer.conv
        if layer.norm is not None or layer.relu or conv.stride != (1, 1) or conv.bias is None:
            raise UserInputError("SpaceToDepthConv rewrites only the last ReCoNet layer (no norm, no ReLU, stride 1)")
        weight = conv.weight.detach()
        c_out, c_in, k, _ = weight.shape
        f = factor
        big_k = (f + k - 2) // f + 1
        scattered = weight.new_zeros(c_out, f, f, c_in, f, f, big_k, big_k)
        for py in range(f):
            for px in range(f):
                for qy in range(f):
                    for qx in range(f):
                        for by in range(big_k):
                            for bx in range(big_k):
                                dy, dx = f * by + qy - py, f * bx + qx - px
                                if 0 <= dy < k and 0 <= dx < k:
                                    scattered[:, py, px, :, qy, qx, by, bx] = weight[:, :, dy, dx]
        self.factor = f
        self.padding = k // 2
        # buffers, not parameters: this is an inference-only rewrite of trained weights
        self.register_buffer("weight", scattered.reshape(c_out * f * f, c_in * f * f, big_k, big_k))
        self.register_buffer("bias", conv.bias.detach().float().repeat_interleave(f * f).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        p, f = self.padding, self.factor
        # reflection padding as in ConvLayer, then zeros up to a multiple of f (they only feed cropped outputs)
        x = reflect_pad(x, p, p, p, p)
        if x.shape[-1] % f or x.shape[-2] % f:
            x = F.pad(x, (0, -x.shape[-1] % f, 0, -x.shape[-2] % f))
        z = F.conv2d(space_to_depth(x.to(self.weight.dtype), f), self.weight)
        z = z.to(torch.promote_types(z.dtype, torch.float32))
        return F.pixel_shuffle(z + self.bias.to(z.dtype), f)[..., :h, :w]


class SubPixelUpsampleConv(nn.Module):
    """An :class:`UpsampleConv` rewritten to run on the small grid: the same numbers, without the upsampled copy.

    Nearest x2 upsampling makes every 2x2 block of the upsampled image four copies of one input pixel, and
    reflection padding by one pixel of that image repeats its border rows and columns, which are copies of the
    input's border: so output pixel ``(2i + py, 2j + px)`` of the 3x3 convolution reads only input rows
    ``i - 1 + py .. i + py`` and columns ``j - 1 + px .. j + px`` of the input padded by *replication*, each with
    a sum of original taps (``py = 0``: row offset -1 gets tap 0, offset 0 gets taps 1 + 2; ``py = 1``: offset 0
    gets taps 0 + 1, offset +1 gets tap 2; the same along x). One 3x3 convolution of the replicate-padded input to
    ``4 * C_out`` channels (the unused taps are zero) followed by ``pixel_shuffle(2)`` computes all four phases:
    the same arithmetic as the original, but on a 4 times smaller grid, and no upsampled tensor or padding of it
    is ever written. Instance normalisation and ReLU follow as before.

    ``(B, C_in, H, W) -> (B, C_out, 2H, 2W)``, in the dtype of ``weight``.
    """

    def __init__(self, layer: UpsampleConv) -> None:
        super().__init__()
        inner = getattr(layer, "conv", None) if isinstance(layer, UpsampleConv) else None
        if inner is None or inner.conv.kernel_size != (3, 3) or inner.conv.stride != (1, 1) or inner.conv.bias is not None:
            raise UserInputError("SubPixelUpsampleConv rewrites ReCoNet's upsampling layers (3x3, stride 1, no bias)")
        w = inner.conv.weight.detach()
        c_out, c_in = w.shape[:2]
        # taps[p][a]: the original taps (0, 1, 2) that padded-input offset a (0, 1, 2 = -1, 0, +1) gets in phase p
        taps = (((0,), (1, 2), ()), ((), (0, 1), (2,)))
        phased = w.new_zeros(c_out, 2, 2, c_in, 3, 3)
        for py in range(2):
            for px in range(2):
                for a in range(3):
                    for b in range(3):
                        for dy in taps[py][a]:
                            for dx in taps[px][b]:
                                phased[:, py, px, :, a, b] += w[:, :, dy, dx]
        self.register_buffer("weight", phased.reshape(4 * c_out, c_in, 3, 3))  # channel c*4 + 2*py + px
        self.norm, self.relu = inner.norm, inner.relu
        self.register_buffer("winograd_weight", None)

    def use_winograd(self) -> None:
        """Compute the convolution by :mod:`reconet_lib.winograd` from now on (float32 CPUs; see there)."""
        self.winograd_weight = winograd.transform_weight(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (1, 1, 1, 1), mode="replicate")
        if self.winograd_weight is not None:
            z = winograd.conv3x3_valid(x, self.winograd_weight)
        else:
            z = F.conv2d(x, self.weight)
        z = F.pixel_shuffle(z, 2)
        if self.norm is not None:
            z = instance_norm(z, self.norm.weight, self.norm.bias, self.norm.eps)
        return F.relu(z) if self.relu else z


class WinogradConvLayer(nn.Module):
    """A 3x3, stride-1 :class:`ConvLayer` computed by Winograd's ``F(4x4, 3x3)``: 4 times fewer multiplications.

    Same padding, normalisation and ReLU as the layer it replaces; the convolution differs from the direct one by
    float rounding only (about 1e-5 of its scale in float32, see :mod:`reconet_lib.winograd`). Float32/float64.
    ``(B, C_in, H, W) -> (B, C_out, H, W)``, channels-last.
    """

    def __init__(self, layer: ConvLayer) -> None:
        super().__init__()
        conv = layer.conv
        if conv.kernel_size != (3, 3) or conv.stride != (1, 1) or conv.bias is not None:
            raise UserInputError("WinogradConvLayer rewrites 3x3, stride-1 ReCoNet layers without bias")
        self.register_buffer("weight", winograd.transform_weight(conv.weight))
        self.norm, self.relu = layer.norm, layer.relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = winograd.conv3x3_valid(reflect_pad(x, 1, 1, 1, 1), self.weight)
        if self.norm is not None:
            z = instance_norm(z, self.norm.weight, self.norm.bias, self.norm.eps)
        return F.relu(z) if self.relu else z


class InferenceReCoNet(nn.Module):
    """A ReCoNet prepared for fast inference by :func:`optimize_for_inference` (see there).

    ``forward(x)``: ``(B, 3, H, W)`` images in [0, 1] (any float dtype, any memory format) ->
    ``(B, 3, H, W)`` float32 in [0, 1] (eval-mode output, clamped). No gradients.
    """

    def __init__(self, model: ReCoNet, dtype: torch.dtype, device: torch.device, space_to_depth: bool,
                 winograd_min_channels: int | None = None) -> None:
        super().__init__()
        net = copy.deepcopy(model).eval().requires_grad_(False).to(device=device, dtype=dtype)
        # the upsampling layers work on the small grid (exact rewrite); see SubPixelUpsampleConv
        net.decoder = nn.Sequential(*(SubPixelUpsampleConv(m) if isinstance(m, UpsampleConv) else m for m in net.decoder))
        if winograd_min_channels is not None:  # Winograd for 3x3 layers with min(C_in, C_out) at least this
            for block in net.encoder:
                if isinstance(block, ResidualBlock) and block.conv1.conv.in_channels >= winograd_min_channels:
                    block.conv1, block.conv2 = WinogradConvLayer(block.conv1), WinogradConvLayer(block.conv2)
            for layer in net.decoder:
                if isinstance(layer, SubPixelUpsampleConv) and min(layer.weight.shape[:2]) >= winograd_min_channels:
                    layer.use_winograd()
        self.last = None
        if space_to_depth:
            self.last = SpaceToDepthConv(net.decoder[-1])
            self.last.weight = self.last.weight.to(device, dtype).contiguous(memory_format=torch.channels_last)
            self.last.bias = self.last.bias.to(device)  # stays float32
            net.decoder = net.decoder[:-1]
        self.net = net.to(device=device, dtype=dtype, memory_format=torch.channels_last)
        self.config = model.config
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ReCoNet._check_image(x)
        h, w = x.shape[-2:]
        x = x.to(dtype=self.dtype).contiguous(memory_format=torch.channels_last)
        features = self.net.encode(x)
        if self.last is None:
            z = self.net.decoder(features).float()
        else:
            z = self.last(self.net.decoder(features))
        z = z[..., :h, :w]
        return (0.5 + (0.5 * self.config.output_scale) * torch.tanh(z)).clamp(0.0, 1.0)


def optimize_for_inference(model: ReCoNet, device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                           compile: bool = False, space_to_depth: bool | None = None,
                           use_winograd: bool | None = None) -> nn.Module:
    """The fastest way we found to run a trained ReCoNet on ``device`` (the model itself is left untouched).

    What it does:

    * the compute dtype that :func:`reconet_lib.precision.inference_dtype` chooses for ``device``: ``float16``
      on CUDA, ``bfloat16`` on CPUs where it is native and measured faster, ``float32`` on other CPUs (where
      bfloat16 is emulated and many times slower); the output head stays float32;
    * channels-last memory layout (what oneDNN and cuDNN convolutions want; no layout conversions in between);
    * the two upsampling layers rewritten by :class:`SubPixelUpsampleConv` (the same arithmetic on a 4 times
      smaller grid, no upsampled copy written);
    * on the CPU, the last 9x9 convolution to 3 channels rewritten by :class:`SpaceToDepthConv`;
    * on an x86 CPU without AVX-512 in float32, the residual blocks' and the upsampling layers' 3x3 convolutions
      (those at least 64 channels wide) computed by Winograd's ``F(4x4, 3x3)`` (:class:`WinogradConvLayer`, :mod:`reconet_lib.winograd`): a
      quarter of the multiplications, the same result up to float rounding;
    * on a CPU, the C allocator told to reuse freed memory (:func:`reconet_lib.memory.retain_freed_memory`, a
      process-wide setting): large tensors then no longer cost fresh, page-faulting memory on every frame;
    * ``compile=True``: ``torch.compile`` with weight freezing, which fuses padding, instance normalisation and
      ReLU into few passes over memory. The first call per input size compiles (about a minute on a small CPU);
      needs a C++ compiler on the CPU and Triton on CUDA.

    Args:
        model: a :class:`ReCoNet` (any mode; the copy is put in eval mode).
        device: where to run (default: the model's device).
        dtype: compute dtype (default: the policy's choice, see above). Passing ``torch.bfloat16`` on a CPU
            without native bfloat16 is allowed but slow.
        compile: wrap the result in ``torch.compile``.
        space_to_depth: rewrite the last layer (default: on for CPU, off for CUDA).
        use_winograd: Winograd convolutions. None (default): where :func:`reconet_lib.precision.inference_winograd`
            says they pay (float32 on an x86 CPU whose convolutions run without AVX-512, layers at least
            :data:`~reconet_lib.precision.WINOGRAD_MIN_CHANNELS` wide); True: every residual and upsampling
            layer; False: none. True needs float32 or float64.
    Returns:
        a module mapping ``(B, 3, H, W)`` [0, 1] images to float32 ``(B, 3, H, W)`` in [0, 1]; call it under
        ``torch.inference_mode()``. Outputs match ``model.eval()(x)`` to about 1e-2 in half precision and to
        about 1e-3 in float32 (rounding through the layers, with or without Winograd; far below 1/255).
    """
    if not isinstance(model, ReCoNet):
        raise UserInputError(f"optimize_for_inference expects a ReCoNet; got {type(model).__name__}")
    device = parse_device(device) if device is not None else next(model.parameters()).device
    if dtype is not None and not isinstance(dtype, torch.dtype):
        raise UserInputError(f"dtype must be a torch dtype such as torch.float32 or torch.bfloat16; got {dtype!r}")
    if dtype is None:
        dtype = inference_dtype(device)
    if space_to_depth is None:
        space_to_depth = device.type == "cpu"
    if use_winograd and dtype not in (torch.float32, torch.float64):
        raise UserInputError(f"Winograd convolutions need float32 or float64, not {dtype}; pass dtype=torch.float32 "
                             "(or use_winograd=None to let the policy decide)")
    if use_winograd is None:  # the policy, layer by layer: only layers wide enough to gain
        min_channels = WINOGRAD_MIN_CHANNELS if inference_winograd(device, dtype) else None
    else:
        min_channels = 0 if use_winograd else None
    if device.type == "cpu":
        retain_freed_memory()
    fast = InferenceReCoNet(model, dtype=dtype, device=device, space_to_depth=space_to_depth,
                            winograd_min_channels=min_channels)
    if compile:
        return torch.compile(fast, options={"freezing": True})
    return fast
