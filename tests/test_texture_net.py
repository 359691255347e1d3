"""The offline loss network (random multi-scale texture features), the relative normalisation, the metrics that
judge a stylisation, and stylisation by optimisation."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from reconet_lib import losses
from reconet_lib.errors import UserInputError
from reconet_lib.losses import LossWeights, build_loss_network, content_loss, gram_matrix, style_loss
from reconet_lib.optimisation import stylise_by_optimisation
from reconet_lib.style_metrics import colour_distance, edge_correlation, relative_colour_distance
from reconet_lib.texture_net import TEXTURE_LAYERS, RandomTextureFeatures


def _images(seed: int, b: int = 2, h: int = 37, w: int = 50) -> torch.Tensor:
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_texture_features_have_the_documented_shapes_at_odd_sizes():
    net = RandomTextureFeatures(maps=16)
    feats = net(_images(0))
    assert list(feats) == list(TEXTURE_LAYERS)
    for name, factor in TEXTURE_LAYERS.items():
        assert feats[name].shape == (2, 16, -(-37 // factor), -(-50 // factor)), name
        assert (feats[name] >= 0).all()  # after the ReLU


def test_texture_features_work_on_images_smaller_than_the_filters():
    feats = RandomTextureFeatures(maps=4)(_images(1, b=1, h=3, w=2))
    assert feats["scale8"].shape == (1, 4, 1, 1)


def test_the_same_seed_gives_the_same_network_and_the_global_rng_is_untouched():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a, b = RandomTextureFeatures(seed=5), RandomTextureFeatures(seed=5)
    assert torch.equal(torch.random.get_rng_state(), before)
    x = _images(2)
    for name in TEXTURE_LAYERS:
        assert torch.equal(a(x)[name], b(x)[name])
    c = RandomTextureFeatures(seed=6)
    assert not torch.equal(a(x)["scale1"], c(x)["scale1"])


def test_a_layer_does_not_depend_on_which_other_layers_were_built():
    x = _images(3)
    full = RandomTextureFeatures(seed=1)(x)["scale4"]
    alone = RandomTextureFeatures(seed=1, layers=["scale4"])(x)["scale4"]
    assert torch.equal(full, alone)


def test_filters_are_unit_norm_and_half_of_the_spatial_ones_ignore_flat_colour():
    net = RandomTextureFeatures(maps=8, kernel=5)
    w = net.filters_scale1
    assert torch.allclose(w.flatten(1).norm(dim=1), torch.ones(8), atol=1e-6)
    assert torch.allclose(w[:4].sum(dim=(2, 3)), torch.zeros(4, 3), atol=1e-6)
    flat = torch.full((1, 3, 16, 16), 0.9)
    assert net(flat)["scale1"][0, :4].abs().max() < 1e-5  # zero-mean filters: a flat image excites nothing
    assert torch.allclose(net.filters_colour.flatten(1).norm(dim=1), torch.ones(8), atol=1e-6)


def test_gradients_reach_the_input_but_not_the_network():
    net = RandomTextureFeatures(maps=8)
    x = _images(4).requires_grad_(True)
    sum(f.sum() for f in net(x).values()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in net.parameters())
    assert not net.train().training


@pytest.mark.parametrize("bad", [torch.rand(3, 8, 8), torch.rand(1, 1, 8, 8)])
def test_texture_features_refuse_non_rgb_batches(bad):
    with pytest.raises(UserInputError, match=r"\(B, 3, H, W\)"):
        RandomTextureFeatures(maps=4)(bad)


def test_unknown_texture_layers_are_refused_in_words():
    with pytest.raises(UserInputError, match="scale1"):
        RandomTextureFeatures(layers=["relu1_2"])
    with pytest.raises(UserInputError, match="layers"):
        LossWeights.offline_texture(content_layer="relu3_3")


def test_relative_normalisation_does_not_depend_on_the_feature_scale():
    out, target = _images(5, h=8, w=8), _images(6, h=8, w=8)
    for scale in (1e-3, 1.0, 1e3):
        assert content_loss(out * scale, target * scale, relative=True) == pytest.approx(
            float(content_loss(out, target, relative=True)), rel=1e-4)
        feats = {"scale1": out * scale}
        grams = {"scale1": gram_matrix(target[:1] * scale)}
        assert style_loss(feats, grams, {"scale1": 1.0}, relative=True) == pytest.approx(
            float(style_loss({"scale1": out}, {"scale1": gram_matrix(target[:1])}, {"scale1": 1.0}, relative=True)),
            rel=1e-4)
    # and the absolute loss does depend on it, by the square (content) and the fourth power (Gram)
    assert content_loss(out * 10, target * 10) == pytest.approx(100 * float(content_loss(out, target)), rel=1e-4)


def test_relative_losses_of_an_all_zero_target_stay_finite():
    zero = torch.zeros(1, 4, 6, 6)
    assert torch.isfinite(content_loss(torch.ones_like(zero), zero, relative=True))


def test_build_loss_network_picks_the_network_the_weights_are_for():
    texture = build_loss_network(LossWeights.offline_texture())
    assert isinstance(texture, RandomTextureFeatures) and texture.weights_source.startswith("random multi-scale")
    vgg = build_loss_network(LossWeights(), vgg_weights=None)
    assert isinstance(vgg, losses.VGGFeatures)
    assert LossWeights.offline_texture().vgg_layers == tuple(TEXTURE_LAYERS)
    assert LossWeights.from_dict(dataclasses.asdict(LossWeights.offline_texture())) == LossWeights.offline_texture()
    with pytest.raises(UserInputError, match="network"):
        LossWeights(network="resnet")
    with pytest.raises(UserInputError, match="normalise"):
        LossWeights(normalise="sometimes")


def test_edge_correlation_is_one_for_the_same_picture_and_low_for_noise():
    x = _images(7, b=1, h=40, w=40)
    assert edge_correlation(x, x) == pytest.approx(1.0)
    assert edge_correlation(x, 0.5 * x + 0.2) == pytest.approx(1.0, abs=1e-6)  # contrast and brightness don't count
    assert abs(edge_correlation(x, _images(8, b=1, h=40, w=40))) < 0.2
    assert edge_correlation(x, torch.full_like(x, 0.3)) == 0.0


def test_colour_distance_is_zero_for_equal_palettes_and_grows_with_a_shift():
    x = _images(9, b=1)
    assert colour_distance(x, x.flip(-1)) == pytest.approx(0.0, abs=1e-9)  # same colours, other places
    near = colour_distance(x, (x + 0.1).clamp(0, 1))
    far = colour_distance(x, (x + 0.4).clamp(0, 1))
    assert 0 < near < far
    style = torch.zeros(1, 3, 10, 10)
    assert relative_colour_distance(x, x, style) == pytest.approx(1.0)
    assert relative_colour_distance(x, x * 0.5, style) < 1.0


def test_optimisation_moves_a_photo_towards_the_style_and_keeps_it_in_range():
    photo = _images(10, b=1, h=32, w=32)
    style = torch.zeros(1, 3, 32, 32)
    style[:, 0] = 0.9  # a red 'painting' with vertical stripes
    style[..., ::4] = 0.1
    weights = LossWeights.offline_texture()
    net = build_loss_network(weights)
    result = stylise_by_optimisation(photo, style, net, weights, steps=40, lr=0.1)
    assert result.image.shape == photo.shape and 0 <= result.image.min() and result.image.max() <= 1
    assert result.losses["style"][-1] < 0.5 * result.losses["style"][0]
    assert relative_colour_distance(photo, result.image, style) < 0.9
    again = stylise_by_optimisation(photo, style, net, weights, steps=40, lr=0.1)
    assert torch.equal(again.image, result.image)  # deterministic


def test_optimisation_refuses_a_batch_in_words():
    weights = LossWeights.offline_texture()
    with pytest.raises(UserInputError, match="one RGB image"):
        stylise_by_optimisation(_images(0), _images(1, b=1), build_loss_network(weights), weights, steps=1)
