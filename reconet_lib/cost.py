"""The cost model of a ReCoNet: parameters, FLOPs per frame and receptive field, computed from its config.

Nothing here runs the network: :func:`conv_layers` lists the convolutions with their shapes at a given frame size
(after the padding to a multiple of 4 that :meth:`reconet_lib.network.ReCoNet.encode` applies), and the counts are
sums over that list. The table in :mod:`reconet_lib.network`'s docstring was produced by these functions.
"""
from __future__ import annotations

import torch.nn as nn

from .errors import UserInputError
from .network import SIZE_MULTIPLE, ReCoNetConfig

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
