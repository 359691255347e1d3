"""Stylisation by optimisation: the picture the perceptual loss asks for (Gatys, Ecker, Bethge, CVPR 2016).

A feed-forward network such as ReCoNet is trained to *approximate*, in one pass, what one could get by
minimising the content and style losses directly over the pixels of one image. Doing that minimisation once,
for one photograph, shows the learner the target the network is chasing (and costs hundreds of loss-network
passes per image, which is why ReCoNet exists). The loss is the same as in training
(:mod:`reconet_lib.losses`): ``alpha * content + beta * style + gamma * tv`` with the given
:class:`~reconet_lib.losses.LossWeights` and loss network; the temporal terms do not apply to one image.

The pixels are optimised through an unconstrained variable ``z`` with ``image = sigmoid(z)``, so the result
stays in [0, 1] without clamping, starting from the photograph itself (``z = logit(photo)``), with Adam.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .errors import UserInputError
from .losses import LossWeights, content_loss, gram_matrix, style_loss, tv_loss


@dataclass
class OptimisationResult:
    """What :func:`stylise_by_optimisation` returns.

    Attributes:
        image: ``(1, 3, H, W)`` float32 in [0, 1], the optimised picture (on the CPU, no gradient).
        losses: ``{"content", "style", "tv", "total"}`` -> list of the weighted values after each step.
    """

    image: torch.Tensor
    losses: dict[str, list[float]]


def stylise_by_optimisation(photo: torch.Tensor, style_image: torch.Tensor, loss_network: nn.Module,
                            weights: LossWeights, *, steps: int = 300, lr: float = 0.05,
                            progress: bool = False) -> OptimisationResult:
    """Optimise the pixels of ``photo`` so that it keeps its content and takes ``style_image``'s Gram statistics.

    Args:
        photo: ``(1, 3, H, W)`` RGB in [0, 1], the content image (and the starting point).
        style_image: ``(1, 3, H', W')`` RGB in [0, 1] (any size).
        loss_network: the frozen feature extractor the weights are for
            (:func:`reconet_lib.losses.build_loss_network`); its device is used.
        weights: the :class:`LossWeights` (``alpha``, ``beta``, ``gamma``, layers, normalisation).
        steps: Adam steps (a few hundred at a small size).
        lr: Adam learning rate on the logits.
        progress: show a progress bar.
    Returns:
        An :class:`OptimisationResult`.
    """
    for name, image in (("photo", photo), ("style_image", style_image)):
        if image.dim() != 4 or image.shape[:2] != (1, 3):
            raise UserInputError(f"stylise_by_optimisation: {name} must be one RGB image (1, 3, H, W); "
                                 f"got {tuple(image.shape)}")
    if not isinstance(steps, int) or steps < 1:
        raise UserInputError(f"stylise_by_optimisation: steps must be an integer >= 1; got {steps!r}")
    device = next(loss_network.buffers()).device
    photo = photo.detach().to(device, torch.float32)
    relative = weights.normalise == "relative"
    layers = weights.vgg_layers
    cl = weights.content_layer
    with torch.no_grad():
        target = loss_network(photo, layers=[cl])[cl]
        grams = {k: gram_matrix(v) for k, v in loss_network(style_image.to(device, torch.float32),
                                                             layers=list(weights.style_layer_weights)).items()}
    logits = torch.logit(photo.clamp(1e-3, 1 - 1e-3)).requires_grad_(True)
    optimiser = torch.optim.Adam([logits], lr=lr)
    history: dict[str, list[float]] = {"content": [], "style": [], "tv": [], "total": []}
    for _ in tqdm(range(steps), desc="optimising", unit="step", disable=not progress):
        image = torch.sigmoid(logits)
        feats = loss_network(image, layers=layers)
        terms = {
            "content": weights.alpha * content_loss(feats[cl], target, relative),
            "style": weights.beta * style_loss(feats, grams, weights.style_layer_weights, relative),
            "tv": weights.gamma * tv_loss(image),
        }
        total = terms["content"] + terms["style"] + terms["tv"]
        optimiser.zero_grad(set_to_none=True)
        total.backward()
        optimiser.step()
        for key, value in {**terms, "total": total}.items():
            history[key].append(float(value))
    return OptimisationResult(torch.sigmoid(logits).detach().cpu(), history)
