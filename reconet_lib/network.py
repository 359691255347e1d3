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
memory. This module holds the model only. The counts above come from :mod:`reconet_lib.cost`; for speed,
:func:`reconet_lib.inference.optimize_for_inference` prepares a copy of a trained model (half precision,
channels-last, faster forms of the upsampling and last layers); :mod:`reconet_lib.export` writes it as ONNX.
``benchmarks/inference.py`` measures every option against the machine's matrix-multiply rate.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import from_dict
from .errors import UserInputError, first_line

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
    if not torch.compiler.is_exporting() and left == right == top == bottom == 0:
        return x  # (an exported graph keeps the pad: its sizes are symbolic, and a pad by 0 changes nothing)
    h, w = x.shape[-2:]
    reflectable = max(left, right) < w and max(top, bottom) < h
    return F.pad(x, (left, right, top, bottom), mode="reflect" if reflectable else "replicate")


def instance_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Instance normalisation with a per-channel affine map: each ``(b, c)`` plane to mean 0, variance 1, then
    ``* weight[c] + bias[c]``. ``(B, C, H, W) -> (B, C, H, W)``, same dtype.

    Computed as ``F.group_norm`` with one group per channel, which is the same formula (biased variance,
    ``eps`` inside the square root) but, on the CPU, up to ~15x faster than ``instance_norm`` for channels-last
    and bfloat16 tensors, and keeps the input's dtype under CPU autocast. A batch of one 1x1 map (which
    ``F.group_norm`` refuses in every mode) normalises to 0 and so gives ``bias``, without a gradient to ``x``.
    """
    if x.shape[0] * x.shape[-1] * x.shape[-2] == 1:
        return (x * 0 + bias.view(1, -1, 1, 1)).to(x.dtype)
    return F.group_norm(x, x.shape[1], weight, bias, eps)


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

    Sharing: :meth:`save_pretrained`, :meth:`from_pretrained` and :meth:`push_to_hub` (the Hugging Face Hub's
    conventions; the folder format is :mod:`reconet_lib.pretrained`).
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

    # Sharing, in the Hugging Face Hub's conventions. The format is reconet_lib.pretrained and the Hub access
    # reconet_lib.hub, both below this module; they are imported here, not at the top, so that the model alone
    # does not load the download machinery.

    def save_pretrained(self, folder: str | os.PathLike, *, card=None) -> Path:
        """Write this network as a pretrained folder: ``config.json``, ``model.safetensors``, ``README.md``.

        Each file is replaced atomically; the weights are read back and compared first. ``from_pretrained``
        gives back the same config and bit-identical tensors.

        Args:
            folder: the folder (created if missing).
            card: a :class:`reconet_lib.pretrained.ModelCard` (style, recipe, steps, measured ``e_stab`` /
                ``E_warp``); default: this model's ``card`` attribute (set by ``from_pretrained``), else one
                naming only ``style_name``.
        Returns:
            The folder.
        """
        # lazy: the model alone does not load the sharing modules (tests/test_hub.py pins it)
        from . import pretrained

        return pretrained.save(self, folder, card=card)

    @classmethod
    def from_pretrained(cls, name_or_folder: str | os.PathLike, *, device: str | torch.device | None = None,
                        revision: str | None = None, allow_download: bool | None = None) -> "ReCoNet":
        """Load a network from a pretrained folder or a Hugging Face repository ``owner/name``, in eval mode.

        A repository's files come from ``$RECONET_MIRROR/owner/name``, the Hugging Face cache, or a download
        that ``RECONET_OFFLINE=1`` / ``HF_HUB_OFFLINE=1`` switch off (:mod:`reconet_lib.hub`).

        Args:
            name_or_folder: a folder written by :meth:`save_pretrained`, or a repository id.
            device: where to put the model (default CPU).
            revision: a Hub branch, tag or commit (default: the main branch).
            allow_download: override the offline switches (None: follow them).
        Returns:
            An instance of ``cls`` in eval mode, in the stored parameters' dtype, with ``style_name``,
            ``style_sha256`` and ``card`` attributes.
        Raises:
            UserInputError: not a pretrained folder, or a damaged one (one line naming the file and the fix).
            ResourceUnavailable: the repository's files could not be had (one line).
        """
        # lazy: the model alone does not load the sharing modules (tests/test_hub.py pins it)
        from . import pretrained

        folder = pretrained.locate(name_or_folder, revision=revision, allow_download=allow_download)
        meta = pretrained.read_config(folder)
        card = pretrained.read_card(meta, folder)
        state = pretrained.read_weights(folder)
        dtypes = {t.dtype for t in state.values() if t.is_floating_point()}
        try:
            model = cls(ReCoNetConfig.from_dict(meta["model_config"]))
            if len(dtypes) == 1:  # a model saved in half precision comes back in half precision
                model.to(dtype=dtypes.pop())
            model.load_state_dict(state)
        except (UserInputError, TypeError, KeyError, RuntimeError) as exc:
            raise UserInputError(f"{folder}: the stored weights do not match its config "
                                 f"({first_line(exc, 160)}); save the model again with save_pretrained") from None
        model.style_name, model.style_sha256 = meta.get("style_name"), meta.get("style_sha256")
        model.card = card
        return model.to(device=device or "cpu").eval()

    def push_to_hub(self, repo_id: str, *, card=None, private: bool = False, token: str | None = None,
                    commit_message: str = "Upload ReCoNet", api=None) -> str:
        """Upload this network to the Hugging Face repository ``repo_id`` as a pretrained folder.

        Needs network access and a write token (``huggingface-cli login`` or ``token=``); the repository is
        created if missing. ``card`` as in :meth:`save_pretrained`; ``api``: a ``huggingface_hub.HfApi``.

        Returns:
            The URL of the commit.
        Raises:
            UserInputError: ``repo_id`` is not ``owner/name``, network access is off, or the Hub refused (one line).
        """
        # lazy: the model alone does not load the sharing modules (tests/test_hub.py pins it)
        from . import pretrained

        return pretrained.push(self, repo_id, card=card, private=private, token=token,
                               commit_message=commit_message, api=api)

    @staticmethod
    def check_image(x: torch.Tensor) -> None:
        """Raise one UserInputError line unless ``x`` is a non-empty ``(B, 3, H, W)`` tensor (the network's input)."""
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
        self.check_image(x)
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
            # sizes from a shape stay as they are (symbolic while exporting); anything else becomes an int
            height, width = (s if isinstance(s, (int, torch.SymInt)) else int(s) for s in size)
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
