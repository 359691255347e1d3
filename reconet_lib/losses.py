"""The ReCoNet training losses: perceptual (content, style, TV) and temporal (feature and output level).

ReCoNet (Gao et al., ACCV 2018, arXiv 1807.01197) trains on pairs of consecutive frames. For a pair
(current frame t, previous frame t-1) the total loss is

    L = sum over i in {t, t-1} of [ alpha * L_content(i) + beta * L_style(i) + gamma * L_tv(i) ]
        + lambda_f * L_temp,f(t) + lambda_o * L_temp,o(t)

* ``L_content`` and ``L_style`` are the perceptual losses of Johnson et al. 2016, measured with a frozen
  VGG-16 (:class:`VGGFeatures`): squared feature differences at one layer, and squared Gram-matrix differences
  (:func:`gram_matrix`) at several layers against the style image's Grams (:func:`style_grams`).
* ``L_tv`` is a total-variation regulariser on the output (:func:`tv_loss`).
* ``L_temp,f`` (:func:`feature_temporal_loss`) asks the encoder's feature maps of frame t to match those of frame
  t-1 warped into frame t, where the flow says the pixels correspond.
* ``L_temp,o`` (:func:`output_temporal_loss`) asks the same of the output images, except that the change of
  the *input's* luminance along the flow is allowed to show up in every output channel (the paper's
  "luminance warping constraint"): a scene that gets brighter may make the stylised frame brighter.

Conventions (``docs/conventions.md``): images are ``(B, 3, H, W)`` RGB in [0, 1]; the ImageNet mean/std
normalisation happens here, inside :class:`VGGFeatures`, and nowhere else. ``flow`` is the flow from the current
frame to the previous one, ``(B, 2, H, W)`` in pixels on the current frame's grid; ``valid`` is ``(B, 1, H, W)``,
1 where a pixel of the current frame is visible in the previous one. ``W(X_prev) = warp(X_prev, flow)``.

Every loss is computed in float32, also under autocast.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoint import describe_load_failure, safe_torch_load
from .config import from_dict
from . import resources
from .errors import UserInputError
from .flow import resize_flow
from .texture_net import TEXTURE_LAYERS, RandomTextureFeatures, check_texture_layers
from .warp import downsample_valid, luminance, warp

# ----------------------------------------------------------------------------------------------------------
# VGG-16 feature extractor
# ----------------------------------------------------------------------------------------------------------

#: Environment variable naming a local torchvision VGG-16 state dict (``vgg16-397923af.pth``).
VGG_WEIGHTS_ENV = "RECONET_VGG_WEIGHTS"
#: Registry name (:mod:`reconet_lib.download`) of torchvision's ImageNet VGG-16 weights.
_RESOURCE = "vgg16_imagenet"

#: The layers the losses use, and their index in torchvision's ``vgg16().features``.
VGG_LAYERS = {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22}

#: ImageNet statistics torchvision's VGG-16 was trained with (for [0, 1] RGB inputs).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# VGG-16 ("configuration D") up to relu4_3: channel counts, "M" = 2x2 max pooling. Built here so that the
# module indices (and state-dict keys ``features.N.*``) match torchvision's without building the classifier.
_VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512)


def _build_features(last_index: int) -> nn.Sequential:
    """torchvision's VGG-16 ``features`` modules ``0 .. last_index`` (uninitialised, float32, CPU)."""
    layers: list[nn.Module] = []
    in_channels = 3
    for item in _VGG16_CFG:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_channels, item, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            in_channels = item
    return nn.Sequential(*layers[: last_index + 1])


class VGGFeatures(nn.Module):
    """Frozen VGG-16 feature extractor for the perceptual losses (normalises its [0, 1] input itself).

    ``forward(x)`` takes ``(B, 3, H, W)`` RGB images in [0, 1], applies the ImageNet mean/std normalisation (the
    only place in the project that does), runs torchvision's VGG-16 ``features`` up to the deepest requested
    layer and returns ``{layer name: (B, C, H', W')}`` for the requested layers (``relu1_2``: 64 channels at full
    size, ``relu2_2``: 128 at 1/2, ``relu3_3``: 256 at 1/4, ``relu4_3``: 512 at 1/8, sizes rounded down). The
    network is frozen: its parameters do not require gradients and it stays in eval mode (gradients still flow
    to the input image).

    Args:
        weights: where the weights come from.
            ``"imagenet"``: torchvision's ``VGG16_Weights.IMAGENET1K_V1`` (``vgg16-397923af.pth``), found by the
            library's resource policy (:func:`reconet_lib.resources.locate`): the file named by
            ``$RECONET_VGG_WEIGHTS``; torch hub's cache; a mirror; a download (unless ``RECONET_OFFLINE=1``),
            verified by the sha256 prefix in the file name. If all fail,
            :class:`~reconet_lib.resources.ResourceUnavailable` (a UserInputError) says how to provide the file.
            A path (``str`` or ``Path``): a ``.pth`` state dict of a torchvision VGG-16, either the full model's
            (``features.N.weight`` keys) or only its ``features`` (``N.weight`` keys); the classifier is ignored.
            ``None``: seeded random weights (Kaiming-normal, fan-in, so activations keep their scale) for tests
            and offline runs; ``weights_source`` says ``"random"``. Nothing is printed: whoever chooses the
            stand-in announces it (the tutorial does, once, :func:`reconet_lib.resources.tutorial_resources`).
            With random weights use the relative loss terms (:meth:`LossWeights.offline`).
        layers: names from :data:`VGG_LAYERS` to return; the network is cut after the deepest one.
        device, dtype: where and in which dtype to keep the weights (default CPU, float32).
        seed: seed of the random weights when ``weights is None`` (the global RNG is not touched).
        progress: show torch.hub's download progress bar (on stderr) when downloading.
    """

    def __init__(
        self,
        weights: str | os.PathLike | None = "imagenet",
        *,
        layers: Iterable[str] = tuple(VGG_LAYERS),
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        seed: int = 0,
        progress: bool = False,
    ) -> None:
        super().__init__()
        self.layers = _check_layers(layers)
        self.weights_source = "random" if weights is None else str(weights)
        last = max(VGG_LAYERS[name] for name in self.layers)
        with torch.random.fork_rng(devices=[]):  # module construction draws from the global RNG
            self.features = _build_features(last)
        if weights is None:
            self._init_random(seed)
        else:
            self._load(_resolve_state_dict(weights, progress=progress))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()
        self.to(device=device, dtype=dtype)

    @staticmethod
    def available(weights: str | os.PathLike | None = "imagenet") -> bool:
        """Whether ``VGGFeatures(weights)`` can be built without a download (never touches the network).

        ``None`` is always available; a path when the file exists; ``"imagenet"`` when ``$RECONET_VGG_WEIGHTS``
        names an existing file or the cache holds the verified torchvision file.
        """
        if weights is None:
            return True
        if str(weights) != "imagenet":
            return Path(weights).expanduser().is_file()
        try:
            return resources.local_file(_RESOURCE) is not None
        except UserInputError:
            return False

    def train(self, mode: bool = True) -> VGGFeatures:
        """The loss network always stays in eval mode (it is frozen); ``train()`` is a no-op."""
        return super().train(False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet normalisation ``(x - mean) / std`` of a [0, 1] RGB batch ``(B, 3, H, W)``."""
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def forward(self, x: torch.Tensor, layers: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        """Features of ``x`` ``(B, 3, H, W)`` in [0, 1] at ``layers`` (default: all built layers)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise UserInputError(f"VGGFeatures expects RGB images (B, 3, H, W) in [0, 1]; got {tuple(x.shape)}")
        if not x.requires_grad:  # given images; a network output is the divergence guard's business (train.loop)
            check_image_values(x, "VGGFeatures")
        wanted = self.layers if layers is None else _check_layers(layers)
        missing = [name for name in wanted if name not in self.layers]
        if missing:
            raise UserInputError(f"layers {missing} were not built; construct VGGFeatures(layers=...) with them")
        by_index = {VGG_LAYERS[name]: name for name in wanted}
        last = max(by_index)
        out: dict[str, torch.Tensor] = {}
        h = self.normalize(x.to(self.mean.dtype))  # autocast, if on, still picks the conv precision
        for index, module in enumerate(self.features):
            h = module(h)
            if index in by_index:
                out[by_index[index]] = h
            if index == last:
                break
        return out

    def extra_repr(self) -> str:
        return f"layers={list(self.layers)}, weights={self.weights_source!r}"

    def _init_random(self, seed: int) -> None:
        generator = torch.Generator().manual_seed(int(seed))
        for module in self.features:
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu", generator=generator)
                nn.init.zeros_(module.bias)

    def _load(self, state: Mapping[str, torch.Tensor]) -> None:
        own = self.features.state_dict()
        picked = {}
        for key, expected in own.items():
            value = state.get(f"features.{key}", state.get(key))
            if value is None:
                raise UserInputError(
                    f"the VGG-16 weights file lacks 'features.{key}'; use torchvision's vgg16 state dict "
                    "(vgg16-397923af.pth) or a state dict of vgg16().features"
                )
            if tuple(value.shape) != tuple(expected.shape):
                raise UserInputError(
                    f"the VGG-16 weights file has 'features.{key}' of shape {tuple(value.shape)}, expected "
                    f"{tuple(expected.shape)}: it is not a torchvision VGG-16 (vgg16, without batch norm)"
                )
            picked[key] = value
        self.features.load_state_dict(picked)


def _check_layers(layers: Iterable[str]) -> tuple[str, ...]:
    if isinstance(layers, str):
        layers = (layers,)
    names = tuple(dict.fromkeys(layers))
    unknown = [name for name in names if name not in VGG_LAYERS]
    if unknown or not names:
        raise UserInputError(f"VGG layers must be a non-empty selection of {list(VGG_LAYERS)}; got {list(names)}")
    return names


def _load_state_file(path: Path) -> Mapping[str, torch.Tensor]:
    if not path.is_file():
        raise UserInputError(f"VGG-16 weights file {path} does not exist")
    try:
        state = safe_torch_load(path)
    except Exception as exc:  # pickle errors, truncated zip files, non-tensor objects
        raise UserInputError(
            f"{path} could not be read as a PyTorch state dict ({describe_load_failure(path, exc)}); it should be "
            "torchvision's vgg16-397923af.pth or another torch.save'd vgg16 state dict"
        ) from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserInputError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return state


def _resolve_state_dict(weights: str | os.PathLike, *, progress: bool) -> Mapping[str, torch.Tensor]:
    """Find and read the state dict that ``weights`` stands for (see :class:`VGGFeatures`)."""
    if str(weights) != "imagenet":
        return _load_state_file(Path(weights).expanduser())
    return _load_state_file(resources.locate(_RESOURCE, progress=progress))


# ----------------------------------------------------------------------------------------------------------
# Perceptual losses
# ----------------------------------------------------------------------------------------------------------


#: Values an image may take and still count as [0, 1] (an unclamped network output overshoots a little).
IMAGE_RANGE_MARGIN = 1.0


def check_image_values(img: torch.Tensor, what: str) -> None:
    """Refuse NaN, and values beyond [0, 1] by more than :data:`IMAGE_RANGE_MARGIN` (0..255 images, say).

    Raises:
        UserInputError: names ``what``, the range found and the fix.
    """
    if img.numel() == 0:
        return
    low, high = (float(v) for v in torch.aminmax(img.detach().float()))
    if math.isnan(low) or math.isnan(high):
        raise UserInputError(f"{what} got NaN values; the images (or the network output) diverged: check the "
                             "inputs and lower the learning rate")
    if low < -IMAGE_RANGE_MARGIN or high > 1 + IMAGE_RANGE_MARGIN:
        raise UserInputError(f"{what} expects images in [0, 1] but got values in [{low:g}, {high:g}]; "
                             "divide 0..255 images by 255 first")


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Gram matrices ``G[b, i, j] = sum_p F[b, i, p] F[b, j, p] / (C H W)``, in float32 even under autocast.

    Args:
        features: ``(B, C, H, W)`` feature maps.
    Returns:
        ``(B, C, C)`` float32.
    """
    if features.dim() != 4:
        raise UserInputError(f"gram_matrix expects features (B, C, H, W); got {tuple(features.shape)}")
    if features.numel() == 0:
        raise UserInputError(f"gram_matrix got empty features {tuple(features.shape)} (a 0-sized dimension), whose "
                             "Gram matrix is 0/0; give at least one channel and pixel")
    b, c, h, w = features.shape
    with torch.autocast(device_type=features.device.type, enabled=False):
        flat = features.float().reshape(b, c, h * w)
        return torch.bmm(flat, flat.transpose(1, 2)) / (c * h * w)


def content_loss(feat_out: torch.Tensor, feat_target: torch.Tensor, relative: bool = False) -> torch.Tensor:
    """Mean squared difference of two feature maps ``(B, C, H, W)`` (a float32 scalar).

    The content loss of Johnson et al.: ``mean((phi(O) - phi(I))^2)`` at one VGG layer (``relu3_3`` by
    default, :attr:`LossWeights.content_layer`). ``relative=True`` divides it by ``mean(phi(I)^2)`` (no gradient
    through the divisor), so that it does not depend on the loss network's feature scale
    (``LossWeights.normalise="relative"``, used with random loss networks).
    """
    if feat_out.shape != feat_target.shape:
        raise UserInputError(f"content_loss: shapes differ, {tuple(feat_out.shape)} vs {tuple(feat_target.shape)}")
    loss = F.mse_loss(feat_out.float(), feat_target.float())
    if relative:
        loss = loss / _mean_square(feat_target)
    return loss


def _mean_square(target: torch.Tensor) -> torch.Tensor:
    """``mean(target^2)`` without gradient, floored so that an all-zero target cannot divide by zero."""
    return target.detach().float().square().mean().clamp_min(torch.finfo(torch.float32).tiny)


def style_loss(
    feats_out: Mapping[str, torch.Tensor],
    target_grams: Mapping[str, torch.Tensor],
    layer_weights: Mapping[str, float],
    relative: bool = False,
) -> torch.Tensor:
    """``sum_l w_l * mean((G(out_l) - G_target_l)^2)`` over the layers of ``layer_weights``.

    Args:
        feats_out: ``{layer: (B, C, H, W)}`` VGG features of the output.
        target_grams: ``{layer: (1 or B, C, C)}`` Gram matrices of the style image (:func:`style_grams`);
            a batch of 1 is broadcast to B.
        layer_weights: ``{layer: w_l}``; layers with weight 0 are skipped.
        relative: divide each layer's term by ``mean(G_target_l^2)``, so that every layer weighs the same
            whatever its feature scale (``LossWeights.normalise="relative"``; for random loss networks, whose
            feature scales mean nothing).
    Returns:
        float32 scalar.
    """
    total = None
    for layer, weight in layer_weights.items():
        if weight == 0:
            continue
        if layer not in feats_out or layer not in target_grams:
            raise UserInputError(f"style_loss: layer {layer!r} is missing from the features or the target Grams")
        gram = gram_matrix(feats_out[layer])
        target = target_grams[layer].float().to(gram.device).expand_as(gram)
        term = F.mse_loss(gram, target)
        if relative:
            term = term / _mean_square(target)
        term = float(weight) * term
        total = term if total is None else total + term
    if total is None:
        return torch.zeros((), device=next(iter(feats_out.values())).device)
    return total


def tv_loss(img: torch.Tensor, kind: str = "squared") -> torch.Tensor:
    """Total-variation regulariser of an image batch ``(B, C, H, W)`` (a float32 scalar).

    ``kind="squared"`` (default): ``mean((I[y, x+1] - I[y, x])^2) + mean((I[y+1, x] - I[y, x])^2)``, each mean
    over all its differences (B * C * H * (W-1) and B * C * (H-1) * W of them). ``kind="absolute"``: the same
    with ``|.|`` (anisotropic TV). ReCoNet uses "the total variation regulariser" of Johnson et al. 2016, whose
    paper names it without writing it out; we use the smooth squared form (differentiable everywhere, so it
    only damps small pixel-to-pixel noise gently). A 1-pixel dimension contributes 0.
    """
    if img.dim() != 4:
        raise UserInputError(f"tv_loss expects (B, C, H, W); got {tuple(img.shape)}")
    if kind not in ("squared", "absolute"):
        raise UserInputError(f"tv_loss: kind must be 'squared' or 'absolute'; got {kind!r}")
    if not img.requires_grad:  # given images; a diverging network output is skipped by the training loop instead
        check_image_values(img, "tv_loss")
    x = img.float()
    dx = x[..., :, 1:] - x[..., :, :-1]
    dy = x[..., 1:, :] - x[..., :-1, :]
    power = (lambda d: d * d) if kind == "squared" else torch.abs
    total = torch.zeros((), device=img.device)
    for diff in (dx, dy):
        if diff.numel():
            total = total + power(diff).mean()
    return total


@torch.no_grad()
def style_grams(vgg: VGGFeatures, style_image: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
    """Gram matrices of the style image, computed once per style (training calls this once, before its loop).

    The style target does not change during training, so its VGG features and Grams are computed a single
    time, without gradients, and reused for every batch (:func:`style_loss` broadcasts batch 1 to B).

    Args:
        vgg: the loss network (:class:`VGGFeatures` or :class:`~reconet_lib.texture_net.RandomTextureFeatures`).
        style_image: ``(1, 3, H, W)`` RGB in [0, 1] (any size; the Gram matrix does not depend on it).
        layers: layer names of that network, e.g. ``LossWeights().style_layer_weights``.
    Returns:
        ``{layer: (1, C, C)}`` float32.
    """
    if style_image.dim() != 4 or style_image.shape[:2] != (1, 3):
        raise UserInputError(f"style_grams expects one RGB image (1, 3, H, W) in [0, 1]; got {tuple(style_image.shape)}")
    device = next(vgg.buffers()).device
    feats = vgg(style_image.to(device), layers=list(layers))
    return {name: gram_matrix(f) for name, f in feats.items()}


# ----------------------------------------------------------------------------------------------------------
# Temporal losses
# ----------------------------------------------------------------------------------------------------------


def _check_temporal(current: torch.Tensor, flow: torch.Tensor, valid: torch.Tensor, what: str) -> None:
    if flow.dim() != 4 or flow.shape[1] != 2:
        raise UserInputError(f"{what}: flow must be (B, 2, H, W); got {tuple(flow.shape)}")
    if valid.dim() != 4 or valid.shape[1] != 1 or valid.shape[-2:] != flow.shape[-2:]:
        raise UserInputError(
            f"{what}: valid must be (B, 1, H, W) at the flow's size {tuple(flow.shape[-2:])}; got {tuple(valid.shape)}"
        )
    if current.shape[0] != flow.shape[0]:
        raise UserInputError(f"{what}: batch sizes differ ({current.shape[0]} vs flow {flow.shape[0]})")


def _to_feature_grid(flow: torch.Tensor, valid: torch.Tensor, size: tuple[int, int], stride: int | None = None):
    """Flow and valid mask at image resolution ``(H, W)`` -> the feature grid ``(h, w)``.

    A stride-s encoder that pads its input at the bottom/right to a multiple of s (as ReCoNet does) has
    ``h = ceil(H / s)``, and cell ``i`` lies over pixels ``[s i, s i + s)``. The flow is therefore first padded
    to ``(s h, s w)`` (border values repeated; the padded pixels are marked invalid) and then shrunk by exactly
    ``1 / s``, so that cell centres and flow vectors line up for any image size. When ``(h, w)`` is not such a
    grid, the field is resized from ``(H, W)`` directly. ``stride`` is the encoder's (4 for ReCoNet); without
    it, it is inferred as ``max(ceil(H / h), ceil(W / w))``, which is ambiguous for tiny images (a 9 x 9 image
    on a 3 x 3 grid could be stride 3 or 4).
    """
    (big_h, big_w), (h, w) = flow.shape[-2:], size
    if stride is None or (-(-big_h // stride), -(-big_w // stride)) != (h, w):
        stride = max(-(-big_h // h), -(-big_w // w))  # ceil(H / h), ceil(W / w): the larger is the stride
    pad_h, pad_w = h * stride - big_h, w * stride - big_w
    if 0 <= pad_h < stride and 0 <= pad_w < stride and (pad_h or pad_w):
        flow = F.pad(flow, (0, pad_w, 0, pad_h), mode="replicate")
        valid = F.pad(valid, (0, pad_w, 0, pad_h), value=0.0)
    return resize_flow(flow, (h, w)), downsample_valid(valid, (h, w))


def feature_temporal_loss(
    feat_t: torch.Tensor,
    feat_prev: torch.Tensor,
    flow: torch.Tensor,
    valid: torch.Tensor,
    *,
    stride: int | None = 4,
) -> torch.Tensor:
    """ReCoNet's feature-map temporal loss ``mean(valid_f * (F_t - W_f(F_prev))^2)`` (a float32 scalar).

    The flow and mask come at image resolution and are brought to the feature grid ``(h, w)``: the flow with
    :func:`reconet_lib.flow.resize_flow` (field resized, ``u *= w / W``, ``v *= h / H``), the mask with
    :func:`reconet_lib.warp.downsample_valid` (a cell counts only if every pixel under it is valid). When the
    image size is not a multiple of the encoder stride (``h = ceil(H / 4)``), flow and mask are first padded
    to ``4h x 4w`` (padding invalid), so the grids stay aligned. Cells whose warp target falls outside the
    feature map are also dropped. ``F_prev`` is backward-warped into frame t.

    Normalisation: the masked squared differences are summed and divided by the number of all elements
    ``B * C * h * w`` (masked cells included), i.e. the paper's ``1 / D`` with ``D = C * h * w``, averaged over
    the batch. Masked-out cells therefore lower the loss instead of being renormalised away.

    Args:
        feat_t, feat_prev: ``(B, C, h, w)`` encoder features of the current and previous frames.
        flow: ``(B, 2, H, W)`` current -> previous, pixels, image resolution.
        valid: ``(B, 1, H, W)`` image resolution, 1 = current pixel visible in the previous frame.
        stride: the encoder's downsampling factor (ReCoNet: 4); ``None`` infers it from the two sizes.
    """
    _check_temporal(feat_t, flow, valid, "feature_temporal_loss")
    if feat_t.shape != feat_prev.shape:
        raise UserInputError(f"feature_temporal_loss: {tuple(feat_t.shape)} vs {tuple(feat_prev.shape)}")
    flow_f, valid_f = _to_feature_grid(flow.float(), valid.float(), tuple(feat_t.shape[-2:]), stride)
    warped, inside = warp(feat_prev.float(), flow_f, return_valid=True)
    diff = feat_t.float() - warped
    return (valid_f * inside * diff * diff).mean()


def output_temporal_loss(
    out_t: torch.Tensor,
    out_prev: torch.Tensor,
    in_t: torch.Tensor,
    in_prev: torch.Tensor,
    flow: torch.Tensor,
    valid: torch.Tensor,
) -> torch.Tensor:
    """ReCoNet's output temporal loss with the luminance warping constraint (a float32 scalar).

    Per colour channel c: ``valid * ((O_t - W(O_prev))_c - (I_t - W(I_prev))_Y)^2``, averaged over all
    ``B * 3 * H * W`` elements (masked pixels count in the denominator). ``Y`` is the BT.709 relative luminance
    (:func:`reconet_lib.warp.luminance`), so an input that gets brighter by ``d`` along the flow lets every
    output channel change by ``d`` for free. Pixels whose warp target falls outside the frame are dropped.

    Args:
        out_t, out_prev: ``(B, 3, H, W)`` network outputs (unclamped during training).
        in_t, in_prev: ``(B, 3, H, W)`` the input frames, [0, 1].
        flow: ``(B, 2, H, W)`` current -> previous, pixels.
        valid: ``(B, 1, H, W)`` 1 = current pixel visible in the previous frame.
    """
    _check_temporal(out_t, flow, valid, "output_temporal_loss")
    for name, t in (("out_prev", out_prev), ("in_t", in_t), ("in_prev", in_prev)):
        if t.shape != out_t.shape:
            raise UserInputError(f"output_temporal_loss: {name} {tuple(t.shape)} differs from out_t {tuple(out_t.shape)}")
    flow = flow.float()
    warped_out, inside = warp(out_prev.float(), flow, return_valid=True)
    warped_in = warp(in_prev.float(), flow)
    d_out = out_t.float() - warped_out
    d_lum = luminance(in_t.float() - warped_in)  # luminance is linear: Y(I_t) - Y(W(I_prev))
    diff = d_out - d_lum
    return (valid.float() * inside * diff * diff).mean()


# ----------------------------------------------------------------------------------------------------------
# Weights and the pair loss
# ----------------------------------------------------------------------------------------------------------


def _default_style_layer_weights() -> dict[str, float]:
    return {"relu1_2": 1.0, "relu2_2": 1.0, "relu3_3": 1.0, "relu4_3": 1.0}


@dataclass
class LossWeights:
    """Weights of the ReCoNet loss terms, for OUR normalisation (read before comparing with other code).

    Our normalisation: images in [0, 1]; VGG input ImageNet-normalised; ``content_loss`` and ``style_loss``
    are means (MSE) over feature / Gram elements; Grams divided by ``C H W``; ``tv_loss`` is a mean of squared
    neighbour differences; temporal losses are means over all elements (masked ones included). Perceptual
    terms are summed over the two frames of a pair, temporal terms counted once.

    What is verified and what is not:

    * From the paper (arXiv 1807.01197, as restated in ``docs/conventions.md``; we could read only its abstract
      here): the five terms, the luminance warping constraint of the output temporal loss, the feature
      temporal loss on the encoder's feature maps normalised by ``D = C h w``, perceptual terms on both frames.
    * NOT verified: every numeric value below. The parts of the paper we could consult held no
      hyper-parameter values, the first author's public repository (changgyhub/reconet) holds inference code
      only ("training code ... currently unavailable"), and irsisyphus/reconet was not available to us.
      The style layers (``relu1_2``, ``relu2_2``, ``relu3_3``, ``relu4_3``, equal weights) are those of
      Johnson et al. 2016, which ReCoNet builds on. For content Johnson et al. use ``relu2_2``; ``relu3_3`` is
      our choice (deeper: it keeps the layout and leaves colour and texture to the style), not verified
      against the ReCoNet paper.
    * How the defaults were chosen: ``beta / alpha = 1e5`` is the content/style ratio of PyTorch's
      ``examples/fast_neural_style`` (content 1e5, style 1e10), which normalises as we do (MSE of features,
      Grams over ``C H W``, [0, 1] images ImageNet-normalised; its content layer is ``relu2_2``). Scaling
      all weights by 1e-5 keeps the total near 1-10 (Adam does not care about a common factor). The temporal
      weights follow the ratios of a public third-party re-implementation (EmptySamurai/pytorch-reconet:
      1e4, 1e5, 1e-5, 1e5, 2e5 under its own normalisation) converted to ours: ``lambda_o / alpha = 20 * 12
      ~ 2e2`` (its output loss sums the channels of [-1, 1] images: 3 * 4 = 12 times our mean) and
      ``lambda_f / alpha = 10`` (both normalise features by ``C h w``). ``gamma`` is ours: i.i.d. noise of
      standard deviation 0.1 on an output costs ``gamma * 2 * 0.02 = 0.4`` per frame, a few per cent of the
      perceptual terms, so TV only damps pixel noise. Tune all of them per style.

    Attributes:
        alpha: content weight (default 1.0).
        beta: style weight (default 1e5).
        gamma: total-variation weight (default 10.0).
        lambda_f: feature temporal weight (default 10.0).
        lambda_o: output temporal weight (default 200.0).
        content_layer: VGG layer of the content loss (default ``"relu3_3"``).
        style_layer_weights: ``{VGG layer: weight}`` of the style loss (default: the four layers, weight 1 each).
        network: the loss network these layers belong to: ``"vgg16"`` (:class:`VGGFeatures`, the paper's) or
            ``"random_texture"`` (the offline :class:`~reconet_lib.texture_net.RandomTextureFeatures`, see
            :meth:`offline_texture`); :func:`build_loss_network` builds it.
        normalise: ``"absolute"`` (the classic terms above) or ``"relative"`` (each content and Gram term
            divided by its target's mean square: for random networks, whose feature scales mean nothing).
    """

    alpha: float = 1.0
    beta: float = 1e5
    gamma: float = 10.0
    lambda_f: float = 10.0
    lambda_o: float = 200.0
    content_layer: str = "relu3_3"
    style_layer_weights: dict[str, float] = field(default_factory=_default_style_layer_weights)
    network: str = "vgg16"
    normalise: str = "absolute"

    def __post_init__(self) -> None:
        for name in ("alpha", "beta", "gamma", "lambda_f", "lambda_o"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise UserInputError(f"LossWeights.{name} must be a finite number >= 0; got {value!r}")
        if self.network not in LOSS_NETWORKS:
            raise UserInputError(f"LossWeights.network must be one of {list(LOSS_NETWORKS)}; got {self.network!r}")
        if self.normalise not in ("absolute", "relative"):
            raise UserInputError(f"LossWeights.normalise must be 'absolute' or 'relative'; got {self.normalise!r}")
        check = LOSS_NETWORKS[self.network]
        check([self.content_layer])
        if not self.style_layer_weights:
            raise UserInputError("LossWeights.style_layer_weights must name at least one layer")
        check(self.style_layer_weights)
        for layer, w in self.style_layer_weights.items():
            if not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
                raise UserInputError(f"LossWeights.style_layer_weights[{layer!r}] must be a number >= 0; got {w!r}")

    @classmethod
    def from_dict(cls, values) -> "LossWeights":
        """Build weights from a dict of field names (missing ones keep their defaults; unknown ones are refused)."""
        return from_dict(cls, values, "LossWeights")

    @property
    def vgg_layers(self) -> tuple[str, ...]:
        """The loss-network layers the weights need (content layer and style layers), in the network's order."""
        needed = {self.content_layer, *self.style_layer_weights}
        order = VGG_LAYERS if self.network == "vgg16" else TEXTURE_LAYERS
        return tuple(name for name in order if name in needed)

    @classmethod
    def offline(cls, **overrides) -> "LossWeights":
        """Weights for the offline loss network of the tutorial: a seeded *random* VGG-16 (``vgg_weights=None``).

        A random VGG-16's feature scale has nothing to do with ImageNet VGG-16's (the default weights were tuned
        for the latter) and its deepest layers mix everything into noise, so: relative normalisation (each content
        and Gram term divided by its target's mean square, so every term starts near 1 whatever the scale),
        style at ``relu1_2``, ``relu2_2`` and ``relu3_3`` with equal weights summing to 1, content at
        ``relu2_2`` (the shallower layer keeps the picture's edges); beta 2 (beta 3 paints over more of the
        structure of footage the network never saw, beta 0.7 leaves a blurred photograph), lambda_f 3 and
        lambda_o 200 for the quick ReCoNet that is fine-tuned from the per-frame baseline. Chosen over the random multi-scale texture network
        (:meth:`offline_texture`), over the classic absolute terms and over other weights by
        ``benchmarks/quick_recipe.py`` (table in ``docs/results.md``); ``overrides`` replace any field.
        """
        layers = ("relu1_2", "relu2_2", "relu3_3")
        values = dict(alpha=1.0, beta=2.0, gamma=1.0, lambda_f=3.0, lambda_o=200.0, content_layer="relu2_2",
                      style_layer_weights={name: 1.0 / len(layers) for name in layers},
                      network="vgg16", normalise="relative")
        values.update(overrides)
        return cls(**values)

    @classmethod
    def offline_texture(cls, **overrides) -> "LossWeights":
        """Weights for the offline loss network (:class:`~reconet_lib.texture_net.RandomTextureFeatures`).

        Relative normalisation (each content and Gram term divided by its target's mean square, so every term
        starts near 1); content at ``scale2``, style at all five texture layers with equal weights summing to 1.
        The values (``beta = 20``, ``lambda_o = 20``, ...) are the candidate measured by
        ``benchmarks/quick_recipe.py`` (table in ``docs/results.md``), where the random VGG-16 of :meth:`offline`
        won; ``overrides`` replace any field.
        """
        values = dict(alpha=1.0, beta=20.0, gamma=1.0, lambda_f=1.0, lambda_o=20.0, content_layer="scale2",
                      style_layer_weights={name: 1.0 / len(TEXTURE_LAYERS) for name in TEXTURE_LAYERS},
                      network="random_texture", normalise="relative")
        values.update(overrides)
        return cls(**values)


#: The loss networks :class:`LossWeights` can name, each with the check of its layer names.
LOSS_NETWORKS = {"vgg16": _check_layers, "random_texture": check_texture_layers}


def build_loss_network(weights: LossWeights, vgg_weights: str | os.PathLike | None = "imagenet", *,
                       device: torch.device | str | None = None, seed: int = 0) -> nn.Module:
    """The loss network that ``weights`` are for, with the layers they need.

    ``weights.network == "vgg16"``: :class:`VGGFeatures` with ``vgg_weights`` (``"imagenet"``, a file, or None for
    seeded random weights). ``"random_texture"``: the offline
    :class:`~reconet_lib.texture_net.RandomTextureFeatures` (``vgg_weights`` is not used). Both are frozen and map
    ``(B, 3, H, W)`` images in [0, 1] to ``{layer: (B, C, H', W')}``.
    """
    if weights.network == "random_texture":
        return RandomTextureFeatures(layers=weights.vgg_layers, seed=seed, device=device)
    return VGGFeatures(vgg_weights, layers=weights.vgg_layers, device=device, seed=seed)


#: Keys of :func:`pair_losses`' result: each weighted term; ``<term>_raw`` holds the unweighted value.
LOSS_TERMS = ("content", "style", "tv", "feature_temporal", "output_temporal")


def pair_losses(
    model: nn.Module,
    vgg: VGGFeatures,
    batch: Mapping[str, torch.Tensor],
    style_grams: Mapping[str, torch.Tensor],
    weights: LossWeights,
) -> dict[str, torch.Tensor]:
    """ReCoNet's total loss on a batch of frame pairs.

    Runs ``model.encode`` / ``model.decode`` on both frames (one batch of 2B: the network must normalise per
    sample, as ReCoNet's instance norm does), then (see the module docstring)
    ``total = alpha * content + beta * style + gamma * tv`` (each summed over the current and previous frame)
    ``+ lambda_f * feature_temporal + lambda_o * output_temporal`` (once per pair). The content target is the
    VGG feature of the input frame (no gradient). Works under autocast; the losses are float32.

    Args:
        model: a ReCoNet (``encode(x) -> (B, C, ceil(H/4), ceil(W/4))``, ``decode(features, size=(H, W))``).
        vgg: the loss network, built with at least ``weights.vgg_layers``.
        batch: ``current``, ``previous`` ``(B, 3, H, W)`` in [0, 1]; ``flow`` ``(B, 2, H, W)`` current ->
            previous; ``valid`` ``(B, 1, H, W)`` (``docs/design.md``), on the model's device.
        style_grams: from :func:`style_grams` for ``weights.style_layer_weights``.
        weights: the :class:`LossWeights`.
    Returns:
        ``{term: weighted value, term + "_raw": unweighted value, "total": sum of the weighted terms}`` for the
        terms in :data:`LOSS_TERMS`; all float32 scalars, ``total`` carries the gradient.
    """
    missing = [key for key in ("current", "previous", "flow", "valid") if key not in batch]
    if missing:
        raise UserInputError(f"pair_losses: batch lacks {missing}; it needs current, previous, flow and valid")
    current, previous = batch["current"], batch["previous"]
    flow, valid = batch["flow"], batch["valid"]
    size = tuple(current.shape[-2:])
    b = current.shape[0]

    # Both frames in one batch: ReCoNet normalises per sample (instance norm), so this equals two passes.
    features = model.encode(torch.cat((current, previous)))
    outputs = model.decode(features, size=size)
    feat_t, feat_prev = features[:b], features[b:]
    out_t, out_prev = outputs[:b], outputs[b:]

    # One VGG pass for both outputs, one (without gradients) for both inputs.
    cl = weights.content_layer
    vgg_out = vgg(outputs, layers=weights.vgg_layers)
    with torch.no_grad():
        vgg_in = vgg(torch.cat((current, previous)), layers=[cl])[cl]

    raw: dict[str, torch.Tensor] = {"content": 0, "style": 0, "tv": 0}
    for frame, out in ((slice(0, b), out_t), (slice(b, 2 * b), out_prev)):
        feats = {name: f[frame] for name, f in vgg_out.items()}
        relative = weights.normalise == "relative"
        raw["content"] = raw["content"] + content_loss(feats[cl], vgg_in[frame], relative)
        raw["style"] = raw["style"] + style_loss(feats, style_grams, weights.style_layer_weights, relative)
        raw["tv"] = raw["tv"] + tv_loss(out)
    raw["feature_temporal"] = feature_temporal_loss(feat_t, feat_prev, flow, valid)
    raw["output_temporal"] = output_temporal_loss(out_t, out_prev, current, previous, flow, valid)

    factor = {
        "content": weights.alpha,
        "style": weights.beta,
        "tv": weights.gamma,
        "feature_temporal": weights.lambda_f,
        "output_temporal": weights.lambda_o,
    }
    result: dict[str, torch.Tensor] = {}
    total = torch.zeros((), device=current.device)
    for term in LOSS_TERMS:
        weighted = factor[term] * raw[term]
        result[term] = weighted
        result[f"{term}_raw"] = raw[term].detach()
        total = total + weighted
    result["total"] = total
    return result
