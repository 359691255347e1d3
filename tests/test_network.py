"""Tests of reconet_lib.network: shapes for any size, modes, dtypes, config round trip, cost model."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from reconet_lib import precision
from reconet_lib.errors import UserInputError
from reconet_lib.cost import conv_layers, count_flops, count_parameters, receptive_field
from reconet_lib.inference import SpaceToDepthConv, SubPixelUpsampleConv, WinogradConvLayer, optimize_for_inference
from reconet_lib.network import PRESETS, ReCoNet, ReCoNetConfig, reflect_pad


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny_model(train: bool = False) -> ReCoNet:
    model = ReCoNet.from_preset("tiny")
    return model.train(train)


# ---------------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("size", [(1, 1), (2, 3), (3, 5), (17, 31), (64, 64)])
def test_output_shape_equals_input_shape_for_odd_and_small_sizes(size, train):
    model = tiny_model(train)
    x = torch.rand(3, 3, *size)
    with torch.set_grad_enabled(train):
        out = model(x)
    assert out.shape == x.shape
    assert out.dtype == x.dtype
    assert torch.isfinite(out).all()


@settings(max_examples=15, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), batch=st.integers(1, 3))
def test_output_and_feature_shapes_for_any_size(h, w, batch):
    model = tiny_model()
    x = torch.rand(batch, 3, h, w)
    with torch.no_grad():
        features = model.encode(x)
        out = model(x)
    assert out.shape == (batch, 3, h, w)
    assert features.shape == (batch, 32, -(-h // 4), -(-w // 4))


@pytest.mark.parametrize("size, expected", [((1, 1), (1, 1)), ((4, 4), (1, 1)), ((17, 31), (5, 8)), ((64, 64), (16, 16))])
def test_features_are_at_quarter_resolution_rounded_up(size, expected):
    model = ReCoNet(ReCoNetConfig(channels=(4, 6, 10), residual_blocks=2))
    with torch.no_grad():
        features = model.encode(torch.rand(2, 3, *size))
    assert features.shape == (2, 10, *expected)


def test_forward_is_decode_of_encode_cropped_to_the_input_size():
    model = tiny_model()
    x = torch.rand(2, 3, 13, 22)
    with torch.no_grad():
        features = model.encode(x)
        full = model.decode(features)
        cropped = model.decode(features, size=(13, 22))
        out = model(x)
    assert full.shape == (2, 3, 16, 24)
    assert torch.equal(cropped, out)
    assert torch.equal(full[..., :13, :22], out)


def test_decode_refuses_a_size_larger_than_the_decoded_image():
    model = tiny_model()
    features = torch.rand(1, 32, 2, 2)
    with pytest.raises(UserInputError, match="does not fit"):
        model.decode(features, size=(9, 8))


@pytest.mark.parametrize("shape", [(3, 8, 8), (1, 1, 8, 8), (1, 4, 8, 8), (0, 3, 8, 8)])
def test_wrong_input_shapes_raise_user_input_error(shape):
    with pytest.raises(UserInputError, match="ReCoNet"):
        tiny_model()(torch.rand(*shape))


def test_reflect_pad_falls_back_to_replicate_when_the_image_is_too_small():
    x = torch.arange(6.0).view(1, 1, 2, 3)
    reflected = reflect_pad(x, 0, 2, 0, 1)  # 2 < 3 columns and 1 < 2 rows: reflection possible
    assert torch.equal(reflected[0, 0, 0], torch.tensor([0.0, 1, 2, 1, 0]))
    assert torch.equal(reflected[0, 0, 2], reflected[0, 0, 0])
    replicated = reflect_pad(x, 0, 3, 0, 0)  # 3 columns cannot reflect 3: replicate
    assert torch.equal(replicated[0, 0, 0], torch.tensor([0.0, 1, 2, 2, 2, 2]))


# ---------------------------------------------------------------------------------------------- modes


def _model_with_saturating_output() -> ReCoNet:
    """A tiny model whose raw output is certainly outside [0, 1]: channel 0 high, channel 1 low."""
    model = tiny_model()
    last = model.decoder[-1].conv
    with torch.no_grad():
        last.weight.mul_(0.01)
        last.bias.copy_(torch.tensor([4.0, -4.0, 0.0]))
    return model


def test_train_mode_returns_raw_output_and_eval_mode_clamps_it():
    model = _model_with_saturating_output()
    x = torch.rand(2, 3, 12, 10)
    raw = model.train()(x)
    clamped = model.eval()(x)
    scale = model.config.output_scale
    assert raw[:, 0].min() > 1.0 and raw[:, 1].max() < 0.0
    assert raw.max() <= 0.5 + 0.5 * scale and raw.min() >= 0.5 - 0.5 * scale
    assert clamped.min() >= 0.0 and clamped.max() <= 1.0
    torch.testing.assert_close(clamped, raw.detach().clamp(0, 1))


def test_output_scale_makes_black_and_white_reachable_at_finite_logits():
    config = ReCoNetConfig()
    z = torch.atanh(torch.tensor(1.0 / config.output_scale))
    assert torch.isfinite(z) and z < 2
    value = 0.5 + 0.5 * config.output_scale * torch.tanh(torch.stack([-z, z]))
    torch.testing.assert_close(value, torch.tensor([0.0, 1.0]))


def test_gradients_reach_every_parameter():
    model = ReCoNet(ReCoNetConfig(channels=(4, 6, 8), residual_blocks=2)).train()
    x = torch.rand(2, 3, 19, 23)
    out = model(x)
    (out * torch.randn_like(out)).sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name


def test_bf16_autocast_on_cpu_runs_and_stays_close_to_float32():
    model = tiny_model()
    x = torch.rand(2, 3, 21, 18)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
            features = model.encode(x)
    assert out.dtype == torch.float32 and out.shape == x.shape
    assert features.dtype == torch.bfloat16
    assert (out - ref).abs().max() < 0.05


def test_channels_last_input_gives_the_same_output():
    model = tiny_model()
    x = torch.rand(2, 3, 16, 20)
    with torch.no_grad():
        ref = model(x)
        out = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("train", [False, True])
def test_padding_and_normalisation_do_not_leak_across_batch_items(train):
    model = tiny_model(train)
    x = torch.rand(3, 3, 13, 7)
    other = x.clone()
    other[1:] = torch.rand(2, 3, 13, 7) * 0.2  # change the other items only
    with torch.no_grad():
        alone = model(x[:1])
        together = model(x)
        changed = model(other)
    torch.testing.assert_close(together[:1], alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(changed[:1], alone, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_config_round_trips_through_a_dict_and_a_weights_only_checkpoint(name, tmp_path):
    config = ReCoNetConfig.preset(name)
    data = config.to_dict()
    assert ReCoNetConfig.from_dict(data) == config
    torch.save({"model_config": data}, tmp_path / "c.pt")
    loaded = torch.load(tmp_path / "c.pt", weights_only=True)["model_config"]
    assert ReCoNetConfig.from_dict(loaded) == config


def test_presets_have_the_documented_shapes():
    assert ReCoNetConfig.preset("paper") == ReCoNetConfig() == ReCoNet().config
    assert ReCoNetConfig.preset("demo").channels == (32, 64, 128)
    assert ReCoNetConfig.preset("demo").residual_blocks == 5
    assert ReCoNet.from_preset("tiny").config == PRESETS["tiny"]


def test_unknown_preset_raises_user_input_error_naming_the_choices():
    with pytest.raises(UserInputError, match="unknown ReCoNet preset 'huge'.*demo, paper, tiny"):
        ReCoNetConfig.preset("huge")
    with pytest.raises(UserInputError):
        ReCoNet.from_preset("Paper")


@pytest.mark.parametrize(
    "kwargs",
    [{"channels": (8, 16)}, {"channels": (8, 0, 16)}, {"channels": "abc"}, {"residual_blocks": -1},
     {"residual_blocks": 1.5}, {"output_scale": 0.9}, {"output_scale": float("nan")}],
)
def test_invalid_config_values_raise_user_input_error(kwargs):
    with pytest.raises(UserInputError):
        ReCoNetConfig(**kwargs)


def test_from_dict_rejects_unknown_keys_and_fills_defaults():
    with pytest.raises(UserInputError, match="unknown ReCoNet config keys"):
        ReCoNetConfig.from_dict({"channels": [8, 16, 32], "blocks": 3})
    assert ReCoNetConfig.from_dict({"residual_blocks": 2}) == ReCoNetConfig(residual_blocks=2)


def test_config_is_frozen_and_hashable():
    config = ReCoNetConfig()
    with pytest.raises(AttributeError):
        config.residual_blocks = 3  # type: ignore[misc]
    assert hash(config) == hash(ReCoNetConfig.from_dict(config.to_dict()))


# ---------------------------------------------------------------------------------------------- cost model


def test_parameter_count_matches_the_layer_table():
    config = ReCoNetConfig.preset("paper")
    expected = 0
    for layer in conv_layers(config, 8, 8):
        weights = layer["in_channels"] * layer["out_channels"] * layer["kernel"] ** 2
        normalised = layer["name"] != "decoder.2"
        expected += weights + (2 * layer["out_channels"] if normalised else layer["out_channels"])
    assert count_parameters(ReCoNet(config)) == expected


@pytest.mark.parametrize("size", [(36, 64), (17, 31), (1, 1)])
def test_count_flops_matches_torch_flop_counter(size):
    model = ReCoNet(ReCoNetConfig(channels=(8, 12, 16), residual_blocks=2)).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.rand(1, 3, *size))
    assert count_flops(model, *size) == counter.get_total_flops()


def test_count_flops_of_the_paper_model_at_640x360():
    # 2 x multiply-adds, summed over the layer table by hand (H = 360, W = 640 need no padding)
    px = 360 * 640
    macs = (3 * 48 * 81 * px + 48 * 96 * 9 * px // 4 + 96 * 192 * 9 * px // 16 + 8 * 192 * 192 * 9 * px // 16
            + 192 * 96 * 9 * px // 4 + 96 * 48 * 9 * px + 48 * 3 * 81 * px)
    assert count_flops(ReCoNet(), 360, 640) == 2 * macs
    assert count_flops(ReCoNetConfig(), 360, 640) == 2 * macs


def _measured_receptive_field(config: ReCoNetConfig, size: int) -> int:
    """Widest input window that moves one output pixel, with IN and ReLU removed and positive weights."""
    model = ReCoNet(config).eval()
    for module in model.modules():
        if hasattr(module, "norm") and hasattr(module, "relu"):
            module.norm = None
            module.relu = False
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(param.abs() * 0.1 + 0.01)
    widest = 0
    for phase in range(4):
        x = torch.rand(1, 3, size, size, requires_grad=True)
        centre = size // 2 + phase
        model(x)[0, :, centre, centre].sum().backward()
        touched = x.grad.abs().sum(dim=(0, 1)) > 0
        rows = touched.any(dim=1).nonzero()
        cols = touched.any(dim=0).nonzero()
        assert rows.min() > 0 and cols.max() < size - 1  # the window must not reach the border
        widest = max(widest, int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1))
    return widest


@pytest.mark.parametrize(
    "config, size",
    [(ReCoNetConfig(channels=(2, 2, 2), residual_blocks=1), 96),
     (ReCoNetConfig(channels=(2, 2, 2), residual_blocks=4), 160)],
)
def test_receptive_field_matches_the_gradient_support(config, size):
    assert receptive_field(config) == _measured_receptive_field(config, size)


def test_receptive_field_of_the_presets():
    assert receptive_field(PRESETS["paper"]) == 95
    assert receptive_field(PRESETS["demo"]) == 111
    assert receptive_field(ReCoNet.from_preset("tiny")) == 47


# ---------------------------------------------------------------------------------------------- fast inference


def test_space_to_depth_conv_computes_the_same_convolution():
    model = ReCoNet(ReCoNetConfig(channels=(4, 6, 5), residual_blocks=0)).double()
    last = model.decoder[-1]
    x = torch.rand(2, 4, 11, 18, dtype=torch.float64)
    rewritten = SpaceToDepthConv(last).double()
    assert rewritten.weight.shape == (3 * 16, 4 * 16, 3, 3)
    torch.testing.assert_close(rewritten(x), last(x), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("size", [(1, 1), (1, 4), (2, 3), (7, 10)])
def test_sub_pixel_upsample_conv_computes_the_same_layer_on_the_small_grid(size):
    """Nearest x2 upsampling + reflection padding + 3x3 conv == replicate padding + phased 3x3 conv + pixel shuffle."""
    model = ReCoNet(ReCoNetConfig(channels=(4, 6, 5), residual_blocks=0)).double().eval()
    with torch.no_grad():
        for p in model.parameters():  # affine norms away from the identity, so a wrong phase cannot hide
            p.copy_(torch.randn_like(p))
    layer = model.decoder[0]
    x = torch.rand(2, 5, *size, dtype=torch.float64)
    rewritten = SubPixelUpsampleConv(layer).double()
    assert rewritten.weight.shape == (4 * 6, 5, 3, 3)
    torch.testing.assert_close(rewritten(x), layer(x), atol=1e-12, rtol=1e-12)


def test_sub_pixel_upsample_conv_refuses_other_layers():
    with pytest.raises(UserInputError, match="upsampling layers"):
        SubPixelUpsampleConv(tiny_model().encoder[1])


def test_space_to_depth_conv_refuses_normalised_layers():
    with pytest.raises(UserInputError, match="last ReCoNet layer"):
        SpaceToDepthConv(tiny_model().decoder[0].conv)


@pytest.mark.parametrize("use_winograd", [False, True])
@pytest.mark.parametrize("space_to_depth", [False, True])
@pytest.mark.parametrize("size", [(1, 1), (3, 5), (17, 31)])
def test_optimized_float32_model_matches_the_eval_model(size, space_to_depth, use_winograd):
    model = tiny_model(train=True)
    fast = optimize_for_inference(model, "cpu", dtype=torch.float32, space_to_depth=space_to_depth,
                                  use_winograd=use_winograd)
    x = torch.rand(2, 3, *size)
    with torch.inference_mode():
        out = fast(x)
        ref = model.eval()(x)
    assert out.dtype == torch.float32 and out.shape == x.shape
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_optimized_bfloat16_model_stays_close_and_leaves_the_original_untouched():
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = optimize_for_inference(model, "cpu", dtype=torch.bfloat16)
    x = torch.rand(1, 3, 24, 40)
    with torch.inference_mode():
        out = fast(x)
        ref = model(x)
    assert out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1
    assert (out - ref).abs().max() < 0.05
    assert all(torch.equal(v, before[k]) and v.dtype == torch.float32 for k, v in model.state_dict().items())


def test_winograd_rewrites_the_residual_blocks_and_the_upsampling_layers_only():
    fast = optimize_for_inference(ReCoNet(ReCoNetConfig(channels=(4, 6, 8), residual_blocks=2)), "cpu",
                                  dtype=torch.float32, use_winograd=True)
    rewritten = [name for name, m in fast.named_modules() if isinstance(m, WinogradConvLayer)]
    assert rewritten == ["net.encoder.3.conv1", "net.encoder.3.conv2", "net.encoder.4.conv1", "net.encoder.4.conv2"]
    upsampling = [m for m in fast.modules() if isinstance(m, SubPixelUpsampleConv)]
    assert len(upsampling) == 2 and all(m.winograd_weight is not None for m in upsampling)
    plain = optimize_for_inference(tiny_model(), "cpu", dtype=torch.float32, use_winograd=False)
    assert not any(isinstance(m, WinogradConvLayer) for m in plain.modules())


def test_the_policy_leaves_narrow_layers_direct_and_rewrites_wide_ones(monkeypatch):
    monkeypatch.setattr(precision, "onednn_avx512", lambda: False)
    monkeypatch.setattr(precision.platform, "machine", lambda: "x86_64")
    narrow = optimize_for_inference(tiny_model(), "cpu", dtype=torch.float32)
    assert not any(isinstance(m, WinogradConvLayer) for m in narrow.modules())
    demo = optimize_for_inference(ReCoNet.from_preset("demo"), "cpu", dtype=torch.float32)
    assert sum(isinstance(m, WinogradConvLayer) for m in demo.modules()) == 10
    upsampling = [m for m in demo.modules() if isinstance(m, SubPixelUpsampleConv)]
    assert [m.winograd_weight is not None for m in upsampling] == [True, True]  # 128 -> 4x64, 64 -> 4x32
    monkeypatch.setattr(precision, "onednn_avx512", lambda: True)
    wide = optimize_for_inference(ReCoNet.from_preset("demo"), "cpu", dtype=torch.float32)
    assert not any(isinstance(m, WinogradConvLayer) for m in wide.modules())


def test_winograd_in_half_precision_is_refused():
    with pytest.raises(UserInputError, match="float32 or float64"):
        optimize_for_inference(tiny_model(), "cpu", dtype=torch.bfloat16, use_winograd=True)


def test_paper_model_with_winograd_stays_within_1e_4_of_the_eval_model():
    """The full-width network (192-channel residual blocks), float32 Winograd against the float64 eval model."""
    torch.manual_seed(0)
    model = ReCoNet().eval()
    x = torch.rand(1, 3, 36, 52)
    fast = optimize_for_inference(model, "cpu", dtype=torch.float32, use_winograd=True)
    with torch.inference_mode():
        ref = model.double()(x.double())
        out = fast(x)
    assert (out.double() - ref).abs().max() < 1e-4


def test_optimize_for_inference_refuses_a_dtype_given_as_text():
    with pytest.raises(UserInputError, match="torch dtype"):
        optimize_for_inference(tiny_model(), "cpu", dtype="float32")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_optimize_for_inference_on_a_missing_gpu_is_one_clear_error():
    with pytest.raises(UserInputError, match="(?i)cuda|gpu"):
        optimize_for_inference(tiny_model(), "cuda")


def test_a_batch_run_as_single_threaded_streams_equals_one_call_and_keeps_the_callers_threads():
    model = tiny_model()
    one = optimize_for_inference(model, dtype=torch.float32, streams=1)
    three = optimize_for_inference(model, dtype=torch.float32, streams=3)
    x = torch.rand(5, 3, 21, 34)
    threads = torch.get_num_threads()
    with torch.inference_mode():
        expected, got = one(x), three(x)
    assert torch.allclose(got, expected, atol=1e-5)  # other batch sizes: other kernels, float rounding only
    assert torch.get_num_threads() == threads  # the streams' single-thread setting stays in their own threads
    assert three.streams == 3 and three.threads_per_stream == max(1, threads // 3)


def test_cpu_policy_runs_one_single_threaded_stream_per_intra_op_thread():
    assert precision.inference_streams("cpu") == (max(1, torch.get_num_threads()), 1)
    fast = optimize_for_inference(tiny_model(), device="cpu")
    assert (fast.streams, fast.threads_per_stream) == precision.inference_streams("cpu")
    with pytest.raises(UserInputError, match="streams must be a positive integer"):
        optimize_for_inference(tiny_model(), streams=0)
