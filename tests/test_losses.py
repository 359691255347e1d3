"""Tests of reconet_lib.losses: VGG features, Gram matrices, perceptual, TV and temporal losses, pair loss."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from reconet_lib import download, losses
from reconet_lib.errors import UserInputError
from reconet_lib.losses import (
    LOSS_TERMS,
    VGGFeatures,
    LossWeights,
    content_loss,
    feature_temporal_loss,
    gram_matrix,
    output_temporal_loss,
    pair_losses,
    style_grams,
    style_loss,
    tv_loss,
)
from reconet_lib.warp import warp

FAST = settings(max_examples=20, deadline=None)
MEAN = torch.tensor(losses.IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(losses.IMAGENET_STD).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def vgg() -> VGGFeatures:
    return VGGFeatures(None, seed=0)


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """An empty torch hub cache, no $RECONET_VGG_WEIGHTS, and a download that fails as if offline."""
    calls = []

    def offline(url, part, res, progress):
        calls.append(url)
        raise download.DownloadError("simulated", reason=f"could not download {url} (simulated: no network)")

    monkeypatch.delenv(losses.VGG_WEIGHTS_ENV, raising=False)
    monkeypatch.delenv(download.OFFLINE_ENV, raising=False)
    monkeypatch.delenv(download.MIRROR_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(download, "_download", offline)
    return calls


def _features_state(seed: int) -> dict[str, torch.Tensor]:
    """A random VGG-16 ``features`` state dict (keys ``N.weight``), like ``vgg16().features.state_dict()``."""
    return {k: v.clone() for k, v in VGGFeatures(None, seed=seed).features.state_dict().items()}


def _shift(image: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """The frame whose pixel (x, y) shows ``image`` at (x + dx, y + dy): exactly ``warp(image, const (dx, dy))``."""
    flow = torch.zeros(image.shape[0], 2, *image.shape[-2:])
    flow[:, 0], flow[:, 1] = dx, dy
    return warp(image, flow)


def _const_flow(b: int, h: int, w: int, u: float, v: float) -> torch.Tensor:
    flow = torch.zeros(b, 2, h, w)
    flow[:, 0], flow[:, 1] = u, v
    return flow


# ---------------------------------------------------------------------------------------------- Gram matrix


def test_gram_matrix_of_a_known_tensor_matches_hand_computation():
    features = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)  # C=2, H=1, W=2
    # rows (1, 2) and (3, 4): dot products 5, 11, 25; divided by C*H*W = 4
    expected = torch.tensor([[[1.25, 2.75], [2.75, 6.25]]])
    assert torch.equal(gram_matrix(features), expected)


def test_gram_matrix_is_float32_and_per_sample_under_autocast():
    features = torch.randn(3, 4, 5, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        gram = gram_matrix(features.bfloat16())
    assert gram.dtype == torch.float32 and gram.shape == (3, 4, 4)
    assert torch.allclose(gram[1], gram_matrix(features.bfloat16()[1:2])[0])


# ---------------------------------------------------------------------------------------------- VGG features


def test_vgg_features_equal_raw_torchvision_layers_on_imagenet_normalised_input(vgg):
    x = torch.rand(2, 3, 20, 28)
    raw = (x - MEAN) / STD
    expected = {}
    h = raw
    for index, module in enumerate(vgg.features):
        h = module(h)
        for name, i in losses.VGG_LAYERS.items():
            if i == index:
                expected[name] = h.clone()
    got = vgg(x)
    assert set(got) == set(losses.VGG_LAYERS)
    for name in expected:
        assert torch.allclose(got[name], expected[name], atol=1e-5, rtol=1e-5), name


def test_vgg_normalises_exactly_once_per_forward(vgg, monkeypatch):
    calls = []
    original = VGGFeatures.normalize

    def spy(self, x):
        calls.append(x.detach().clone())
        return original(self, x)

    monkeypatch.setattr(VGGFeatures, "normalize", spy)
    x = torch.rand(1, 3, 16, 16)
    vgg(x)
    assert len(calls) == 1 and torch.equal(calls[0], x)  # it sees the [0, 1] image, not a normalised one


def test_vgg_returns_only_requested_layers_and_stops_after_the_deepest():
    vgg = VGGFeatures(None, layers=["relu2_2"])
    assert len(vgg.features) == losses.VGG_LAYERS["relu2_2"] + 1
    out = vgg(torch.rand(1, 3, 16, 16))
    assert list(out) == ["relu2_2"] and out["relu2_2"].shape == (1, 128, 8, 8)
    with pytest.raises(UserInputError, match="not built"):
        vgg(torch.rand(1, 3, 16, 16), layers=["relu3_3"])
    with pytest.raises(UserInputError, match="relu5_3"):
        VGGFeatures(None, layers=["relu5_3"])


def test_vgg_is_frozen_stays_in_eval_and_passes_gradients_to_the_input(vgg):
    assert all(not p.requires_grad for p in vgg.parameters())
    vgg.train()
    assert not vgg.training
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    vgg(x)["relu3_3"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in vgg.parameters())


def test_random_weights_are_deterministic_per_seed_and_leave_the_global_rng_alone():
    state = torch.get_rng_state()
    a, b, c = VGGFeatures(None, seed=1), VGGFeatures(None, seed=1), VGGFeatures(None, seed=2)
    assert torch.equal(torch.get_rng_state(), state)
    for (key, pa), pb, pc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(pa, pb), key
        if key.endswith("weight"):
            assert not torch.equal(pa, pc), key


def test_random_weights_are_named_in_weights_source_and_print_nothing(capsys):
    vgg = VGGFeatures(None, layers=["relu1_2"])
    assert vgg.weights_source == "random"
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""  # the tutorial announces its stand-in once, not each network


# ------------------------------------------------------------------------------------------- loading weights


def test_offline_imagenet_weights_raise_a_user_error_naming_the_env_var_and_url(no_network):
    assert not VGGFeatures.available("imagenet")
    with pytest.raises(UserInputError) as info:
        VGGFeatures("imagenet", layers=["relu1_2"])
    message = str(info.value)
    assert losses.VGG_WEIGHTS_ENV in message
    assert "https://download.pytorch.org/models/vgg16-397923af.pth" in message
    assert "vgg16-397923af.pth" in message and "checkpoints" in message  # where to put it
    assert len(no_network) == 1  # one (simulated) download attempt, nothing real


def test_imagenet_weights_from_the_env_var_file_are_used_without_download(no_network, monkeypatch, tmp_path):
    state = {f"features.{k}": v for k, v in _features_state(seed=7).items()}
    path = tmp_path / "vgg16-397923af.pth"
    torch.save(state, path)
    monkeypatch.setenv(losses.VGG_WEIGHTS_ENV, str(path))
    assert VGGFeatures.available("imagenet")
    x = torch.rand(1, 3, 16, 16)
    got = VGGFeatures("imagenet", layers=["relu2_2"])(x)["relu2_2"]
    assert torch.equal(got, VGGFeatures(None, seed=7, layers=["relu2_2"])(x)["relu2_2"])
    assert no_network == []
    monkeypatch.setenv(losses.VGG_WEIGHTS_ENV, str(tmp_path / "missing.pth"))
    with pytest.raises(UserInputError, match=losses.VGG_WEIGHTS_ENV):
        VGGFeatures("imagenet")


def test_imagenet_weights_found_in_the_torch_hub_cache_are_used_without_download(no_network, tmp_path, monkeypatch):
    from reconet_lib import resources

    cache = resources.cache_dir("vgg16_imagenet") / "vgg16-397923af.pth"
    assert str(cache).startswith(str(tmp_path))
    cache.parent.mkdir(parents=True)
    torch.save({f"features.{k}": v for k, v in _features_state(seed=4).items()}, cache)
    assert not VGGFeatures.available("imagenet")  # a cached file is used only when it verifies
    stand_in = dataclasses.replace(download.resource("vgg16_imagenet"), sha256=download.sha256_file(cache))
    monkeypatch.setitem(download.REGISTRY, "vgg16_imagenet", stand_in)
    assert VGGFeatures.available("imagenet")
    x = torch.rand(1, 3, 16, 16)
    got = VGGFeatures("imagenet", layers=["relu1_2"])(x)["relu1_2"]
    assert torch.equal(got, VGGFeatures(None, seed=4, layers=["relu1_2"])(x)["relu1_2"])
    assert no_network == []


@pytest.mark.parametrize("prefix", ["features.", ""])
def test_weights_load_from_a_local_state_dict_full_or_features_only(tmp_path, prefix):
    state = {f"{prefix}{k}": v for k, v in _features_state(seed=11).items()}
    if prefix:  # a full vgg16 state dict also holds the classifier, which is ignored
        state["classifier.0.weight"] = torch.zeros(4, 4)
    path = tmp_path / "vgg.pth"
    torch.save(state, path)
    x = torch.rand(2, 3, 24, 16)
    loaded, reference = VGGFeatures(path)(x), VGGFeatures(None, seed=11)(x)
    for name in losses.VGG_LAYERS:
        assert torch.equal(loaded[name], reference[name]), name


def test_a_wrong_weights_file_gives_a_clear_user_error(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(UserInputError, match="state dict"):
        VGGFeatures(text)
    other = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, other)
    with pytest.raises(UserInputError, match="lacks 'features.0.weight'"):
        VGGFeatures(other)
    wrong_shape = _features_state(seed=0)
    wrong_shape["0.weight"] = torch.zeros(32, 3, 3, 3)
    torch.save(wrong_shape, other)
    with pytest.raises(UserInputError, match="shape"):
        VGGFeatures(other)
    with pytest.raises(UserInputError, match="does not exist"):
        VGGFeatures(tmp_path / "absent.pth")


# ---------------------------------------------------------------------------------------- perceptual losses


def test_content_loss_is_the_mean_squared_feature_difference():
    a, b = torch.zeros(2, 3, 4, 5), torch.zeros(2, 3, 4, 5)
    b[0, 0, 0, 0] = 2.0
    assert content_loss(a, b).item() == pytest.approx(4.0 / 120)


def test_style_loss_weights_layers_and_broadcasts_a_batch_one_target():
    feats = {"relu1_2": torch.ones(2, 2, 1, 2), "relu2_2": torch.ones(2, 3, 1, 1)}
    # Grams: 2x2 of (1*1 + 1*1) / 4 = 0.5, and 3x3 of 1 / 3
    targets = {"relu1_2": torch.zeros(1, 2, 2), "relu2_2": torch.zeros(1, 3, 3)}
    got = style_loss(feats, targets, {"relu1_2": 2.0, "relu2_2": 0.5})
    assert got.item() == pytest.approx(2.0 * 0.25 + 0.5 * (1 / 9))
    assert style_loss(feats, targets, {"relu1_2": 0.0}).item() == 0.0
    with pytest.raises(UserInputError, match="relu3_3"):
        style_loss(feats, targets, {"relu3_3": 1.0})


def test_style_grams_are_batch_one_and_match_the_output_grams_of_the_style_image_itself(vgg):
    style = torch.rand(1, 3, 24, 24)
    grams = style_grams(vgg, style, ["relu1_2", "relu3_3"])
    assert {k: tuple(v.shape) for k, v in grams.items()} == {"relu1_2": (1, 64, 64), "relu3_3": (1, 256, 256)}
    feats = vgg(style.expand(3, -1, -1, -1))
    assert style_loss(feats, grams, {"relu1_2": 1.0, "relu3_3": 1.0}).item() < 1e-12
    with pytest.raises(UserInputError, match=r"\(1, 3, H, W\)"):
        style_grams(vgg, torch.rand(2, 3, 8, 8), ["relu1_2"])


def test_tv_loss_is_zero_for_a_constant_and_the_documented_mean_for_a_ramp():
    assert tv_loss(torch.full((1, 3, 5, 6), 0.3)).item() == 0.0
    ramp = (0.1 * torch.arange(6.0)).expand(2, 3, 5, 6)  # horizontal steps of 0.1, no vertical change
    assert tv_loss(ramp).item() == pytest.approx(0.01)
    assert tv_loss(ramp, kind="absolute").item() == pytest.approx(0.1)
    assert tv_loss(torch.rand(1, 3, 1, 1)).item() == 0.0  # 1-pixel images have no neighbours


# ------------------------------------------------------------------------------------------ temporal losses


@FAST
@given(dx=st.integers(-3, 3), dy=st.integers(-3, 3), seed=st.integers(0, 2**16))
def test_output_temporal_loss_is_zero_for_a_warp_consistent_integer_shift(dx, dy, seed):
    g = torch.Generator().manual_seed(seed)
    in_prev, out_prev = torch.rand(2, 3, 9, 11, generator=g), torch.rand(2, 3, 9, 11, generator=g)
    in_t, out_t = _shift(in_prev, dx, dy), _shift(out_prev, dx, dy)
    flow, valid = _const_flow(2, 9, 11, dx, dy), torch.ones(2, 1, 9, 11)
    assert output_temporal_loss(out_t, out_prev, in_t, in_prev, flow, valid).item() == 0.0


def test_output_temporal_loss_is_zero_for_a_still_pair_and_positive_when_the_output_flickers():
    g = torch.Generator().manual_seed(0)
    frame, out = torch.rand(1, 3, 8, 8, generator=g), torch.rand(1, 3, 8, 8, generator=g)
    flow, valid = torch.zeros(1, 2, 8, 8), torch.ones(1, 1, 8, 8)
    assert output_temporal_loss(out, out, frame, frame, flow, valid).item() == 0.0
    flicker = out + 0.2 * (torch.rand(1, 3, 8, 8, generator=g) - 0.5)
    assert output_temporal_loss(flicker, out, frame, frame, flow, valid).item() > 1e-3


def test_luminance_term_cancels_a_brightness_change_that_the_output_follows():
    g = torch.Generator().manual_seed(1)
    in_prev, out_prev = 0.8 * torch.rand(1, 3, 6, 7, generator=g), torch.rand(1, 3, 6, 7, generator=g)
    flow, valid = torch.zeros(1, 2, 6, 7), torch.ones(1, 1, 6, 7)
    brighter_in, brighter_out = in_prev + 0.1, out_prev + 0.1
    followed = output_temporal_loss(brighter_out, out_prev, brighter_in, in_prev, flow, valid)
    assert followed.item() < 1e-12  # BT.709 weights sum to 1: Y rises by exactly 0.1
    # without the luminance term (an unchanged input) the same output change costs 0.1^2
    unexplained = output_temporal_loss(brighter_out, out_prev, in_prev, in_prev, flow, valid)
    assert unexplained.item() == pytest.approx(0.01, rel=1e-5)
    # and an output that ignores the brightening is penalised too
    ignored = output_temporal_loss(out_prev, out_prev, brighter_in, in_prev, flow, valid)
    assert ignored.item() == pytest.approx(0.01, rel=1e-5)


def test_invalid_pixels_do_not_contribute_to_either_temporal_loss():
    g = torch.Generator().manual_seed(2)
    frame, out = torch.rand(1, 3, 16, 16, generator=g), torch.rand(1, 3, 16, 16, generator=g)
    valid = torch.ones(1, 1, 16, 16)
    valid[..., 4:8, 8:12] = 0
    broken = out.clone()
    broken[..., 4:8, 8:12] += 1e4
    flow = torch.zeros(1, 2, 16, 16)
    assert output_temporal_loss(broken, out, frame, frame, flow, valid).item() == 0.0
    feats = torch.rand(1, 5, 4, 4, generator=g)
    broken_feats = feats.clone()
    broken_feats[..., 1, 2] += 1e4  # the feature cell over pixels rows 4..7, columns 8..11
    assert feature_temporal_loss(broken_feats, feats, flow, valid).item() == 0.0
    assert feature_temporal_loss(broken_feats, feats, flow, torch.ones_like(valid)).item() > 1.0


def test_feature_temporal_loss_resizes_the_flow_and_scales_its_vectors_to_the_feature_grid():
    g = torch.Generator().manual_seed(3)
    feat_prev = torch.rand(2, 6, 8, 16, generator=g)  # features of a 32 x 64 image, stride 4
    feat_t = _shift(feat_prev, 1, 2)  # a shift of (1, 2) feature cells ...
    flow = _const_flow(2, 32, 64, 4.0, 8.0)  # ... is a shift of (4, 8) image pixels
    valid = torch.ones(2, 1, 32, 64)
    assert feature_temporal_loss(feat_t, feat_prev, flow, valid).item() == 0.0
    unscaled = _const_flow(2, 32, 64, 1.0, 2.0)  # the feature-grid vectors at image size: wrong
    assert feature_temporal_loss(feat_t, feat_prev, unscaled, valid).item() > 1e-3


def test_one_invalid_pixel_invalidates_its_whole_feature_cell():
    feats = torch.zeros(1, 1, 4, 4)
    moved = feats.clone()
    moved[..., 0, 0] = 1.0
    flow, valid = torch.zeros(1, 2, 16, 16), torch.ones(1, 1, 16, 16)
    assert feature_temporal_loss(moved, feats, flow, valid).item() == pytest.approx(1 / 16)
    valid[..., 3, 3] = 0  # one pixel of the 4 x 4 block under cell (0, 0)
    assert feature_temporal_loss(moved, feats, flow, valid).item() == 0.0


def test_temporal_losses_divide_by_all_elements_including_masked_ones():
    out_prev = torch.zeros(1, 3, 4, 4)
    out_t = torch.ones(1, 3, 4, 4)
    frame, flow = torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 4, 4)
    valid = torch.zeros(1, 1, 4, 4)
    valid[..., :2, :] = 1  # half the pixels
    assert output_temporal_loss(out_t, out_prev, frame, frame, flow, valid).item() == pytest.approx(0.5)


# ------------------------------------------------------------------------------------------ weights and pair


def test_loss_weights_defaults_and_validation():
    w = LossWeights()
    assert w.content_layer == "relu3_3" and set(w.style_layer_weights) == set(losses.VGG_LAYERS)
    assert w.vgg_layers == tuple(losses.VGG_LAYERS)
    assert LossWeights(style_layer_weights={"relu2_2": 1.0}).vgg_layers == ("relu2_2", "relu3_3")
    with pytest.raises(UserInputError, match="alpha"):
        LossWeights(alpha=-1.0)
    with pytest.raises(UserInputError, match="relu9_9"):
        LossWeights(content_layer="relu9_9")
    with pytest.raises(UserInputError, match="style_layer_weights"):
        LossWeights(style_layer_weights={})


class _StubReCoNet(nn.Module):
    """The encode/decode interface of ReCoNet with a few layers (stride-4 encoder, upsampling decoder)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.enc = nn.Conv2d(3, 8, 4, stride=4)
        self.dec = nn.Conv2d(8, 3, 3, padding=1)

    def encode(self, x):
        return torch.relu(self.enc(x))

    def decode(self, features, size):
        return torch.sigmoid(self.dec(F.interpolate(features, size=size, mode="bilinear", align_corners=False)))


def _pair_batch(seed: int, b: int = 2, h: int = 32, w: int = 32, noise: float = 0.0) -> dict[str, torch.Tensor]:
    """A pair whose current frame shows the previous one moved 4 pixels left (flow current -> previous = +4),
    plus ``noise`` (uniform amplitude) on the current frame."""
    g = torch.Generator().manual_seed(seed)
    previous = torch.rand(b, 3, h, w, generator=g)
    current = _shift(previous, 4, 0) + noise * (torch.rand(b, 3, h, w, generator=g) - 0.5)
    return {
        "current": current.clamp(0, 1),
        "previous": previous,
        "flow": _const_flow(b, h, w, 4.0, 0.0),
        "valid": torch.ones(b, 1, h, w),
    }


def test_pair_losses_returns_weighted_raw_and_total_terms_and_trains_the_model(vgg):
    model = _StubReCoNet()
    weights = LossWeights(alpha=2.0, beta=3e4, gamma=5.0, lambda_f=7.0, lambda_o=11.0)
    grams = style_grams(vgg, torch.rand(1, 3, 32, 32), weights.style_layer_weights)
    result = pair_losses(model, vgg, _pair_batch(0, noise=0.2), grams, weights)
    assert set(result) == {"total", *LOSS_TERMS, *(f"{t}_raw" for t in LOSS_TERMS)}
    factors = dict(zip(LOSS_TERMS, (2.0, 3e4, 5.0, 7.0, 11.0)))
    for term in LOSS_TERMS:
        assert result[term].dtype == torch.float32 and result[term].dim() == 0
        assert result[term].item() == pytest.approx(factors[term] * result[f"{term}_raw"].item(), rel=1e-6)
        assert result[f"{term}_raw"].item() > 0, term
    assert result["total"].item() == pytest.approx(sum(result[t].item() for t in LOSS_TERMS), rel=1e-6)
    result["total"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_pair_losses_sum_perceptual_terms_over_both_frames(vgg):
    model = _StubReCoNet()
    weights = LossWeights()
    grams = style_grams(vgg, torch.rand(1, 3, 32, 32), weights.style_layer_weights)
    batch = _pair_batch(1)
    both = pair_losses(model, vgg, batch, grams, weights)
    still = dict(batch, previous=batch["current"], flow=torch.zeros_like(batch["flow"]))
    same = pair_losses(model, vgg, still, grams, weights)
    with torch.no_grad():
        single_out = model.decode(model.encode(batch["current"]), size=(32, 32))
        feats = vgg(single_out)
        single_content = content_loss(feats["relu3_3"], vgg(batch["current"])["relu3_3"])
    assert same["content_raw"].item() == pytest.approx(2 * single_content.item(), rel=1e-5)
    assert same["tv_raw"].item() == pytest.approx(2 * tv_loss(single_out).item(), rel=1e-5)
    assert same["feature_temporal_raw"].item() == 0.0 and same["output_temporal_raw"].item() == 0.0
    # the stub's encoder is translation-equivariant for 4-pixel shifts, so the moving pair's features agree
    # (its decoder's border handling is not, so the output term is only small); noise makes both flicker
    flicker = pair_losses(model, vgg, _pair_batch(1, noise=0.2), grams, weights)
    assert both["feature_temporal_raw"].item() == 0.0 < flicker["feature_temporal_raw"].item()
    assert both["output_temporal_raw"].item() < 0.1 * flicker["output_temporal_raw"].item()


def test_feature_grid_stays_aligned_when_the_image_is_not_a_multiple_of_the_stride():
    g = torch.Generator().manual_seed(4)
    feat_prev = torch.rand(1, 4, 8, 8, generator=g)  # ReCoNet features of a 30 x 29 image: ceil(30/4) = 8
    feat_t = _shift(feat_prev, 1, 2)
    flow, valid = _const_flow(1, 30, 29, 4.0, 8.0), torch.ones(1, 1, 30, 29)
    assert feature_temporal_loss(feat_t, feat_prev, flow, valid).item() == 0.0
    # cells over the padding (last row: pixels 28..31 of 30) are invalid, so a change there costs nothing
    feat_t[..., 7, :] += 10.0
    assert feature_temporal_loss(feat_t, feat_prev, flow, valid).item() == 0.0


def test_pair_losses_with_the_tiny_reconet_vanish_for_a_still_pair(vgg):
    from reconet_lib.network import ReCoNet

    torch.manual_seed(0)
    model = ReCoNet.from_preset("tiny").train()
    weights = LossWeights()
    grams = style_grams(vgg, torch.rand(1, 3, 24, 24), weights.style_layer_weights)
    frame = torch.rand(2, 3, 22, 26)
    still = {"current": frame, "previous": frame.clone(), "flow": torch.zeros(2, 2, 22, 26),
             "valid": torch.ones(2, 1, 22, 26)}
    result = pair_losses(model, vgg, still, grams, weights)
    assert result["feature_temporal_raw"].item() < 1e-10 and result["output_temporal_raw"].item() < 1e-10
    moving = dict(still, current=torch.rand(2, 3, 22, 26))  # unrelated frames: not consistent
    result = pair_losses(model, vgg, moving, grams, weights)
    assert result["feature_temporal_raw"].item() > 1e-4 and result["output_temporal_raw"].item() > 1e-4
    result["total"].backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("size", [5, 6, 9])
def test_feature_flow_uses_the_encoder_stride_for_tiny_images(size):
    # A 9 x 9 image has a 3 x 3 feature grid: stride 4 (ReCoNet), not the 3 that 9 / 3 suggests.
    g = torch.Generator().manual_seed(0)
    cells = -(-size // 4)
    feat_prev = torch.rand(1, 4, cells, cells + 1, generator=g)
    feat_t = feat_prev[..., 1:].clone()  # feature cell x of frame t shows cell x + 1 of the previous frame
    feat_prev = feat_prev[..., :-1]
    flow = torch.zeros(1, 2, size, size)
    flow[:, 0] = 4.0  # one feature cell = four pixels
    valid = torch.ones(1, 1, size, size)
    assert feature_temporal_loss(feat_t, feat_prev, flow, valid) == pytest.approx(0, abs=1e-12)  # grid_sample: to rounding
