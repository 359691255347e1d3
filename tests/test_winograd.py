"""Winograd F(4x4, 3x3): the same convolution as a direct one, for any shape, layout, batch and chunking."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from reconet_lib import winograd
from reconet_lib.errors import UserInputError
from reconet_lib.inference import WinogradConvLayer
from reconet_lib.network import ConvLayer


def test_transform_matrices_compute_a_one_dimensional_correlation_exactly():
    """A^T [(G g) * (B^T d)] is the 4-output valid correlation of the 6-sample d with the 3-tap g (float64)."""
    b_t, g_mat, a_t = winograd.transform_matrices()
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        d = torch.randn(6, dtype=torch.float64, generator=gen)
        g = torch.randn(3, dtype=torch.float64, generator=gen)
        direct = torch.stack([d[i:i + 3] @ g for i in range(4)])
        torch.testing.assert_close(a_t @ ((g_mat @ g) * (b_t @ d)), direct, atol=1e-12, rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(batch=st.integers(1, 2), c_in=st.integers(1, 7), c_out=st.integers(1, 7), height=st.integers(3, 21),
       width=st.integers(3, 21), channels_last=st.booleans(), chunk_bytes=st.sampled_from([1, 4096, 1 << 22]),
       seed=st.integers(0, 2**16))
def test_winograd_convolution_equals_the_direct_one(batch, c_in, c_out, height, width, channels_last, chunk_bytes,
                                                     seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, c_in, height, width, dtype=torch.float64, generator=gen)
    weight = torch.randn(c_out, c_in, 3, 3, dtype=torch.float64, generator=gen)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = winograd.conv3x3_valid(x, winograd.transform_weight(weight), chunk_bytes=chunk_bytes)
    assert out.shape == (batch, c_out, height - 2, width - 2)
    torch.testing.assert_close(out, F.conv2d(x, weight), atol=1e-10, rtol=1e-10)


def test_float32_error_is_of_the_order_of_1e_5_of_the_output_scale():
    """ReCoNet's residual-block shape: the float32 Winograd result stays within 1e-4 of a float64 reference."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 192, 24, 40, generator=gen).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(192, 192, 3, 3, generator=gen) / 40
    out = winograd.conv3x3_valid(x, winograd.transform_weight(weight))
    ref = F.conv2d(x.double(), weight.double())
    assert (out.double() - ref).abs().max() / ref.abs().max() < 1e-4


def test_half_precision_is_refused():
    weight = torch.randn(4, 4, 3, 3)
    with pytest.raises(UserInputError, match="float32 or float64"):
        winograd.conv3x3_valid(torch.randn(1, 4, 8, 8, dtype=torch.bfloat16),
                               winograd.transform_weight(weight).bfloat16())


@pytest.mark.parametrize("shape, weight_shape, message", [
    ((1, 5, 8, 8), (4, 4, 3, 3), "does not fit"),
    ((1, 4, 2, 8), (4, 4, 3, 3), "does not fit"),
])
def test_mismatched_input_is_refused(shape, weight_shape, message):
    with pytest.raises(UserInputError, match=message):
        winograd.conv3x3_valid(torch.randn(shape), winograd.transform_weight(torch.randn(weight_shape)))


def test_only_3x3_kernels_are_transformed():
    with pytest.raises(UserInputError, match=r"\(C_out, C_in, 3, 3\)"):
        winograd.transform_weight(torch.randn(4, 4, 5, 5))


def test_integer_weights_are_refused_rather_than_rounded():
    with pytest.raises(UserInputError, match="floating-point"):
        winograd.transform_weight(torch.ones(4, 4, 3, 3, dtype=torch.int64))


def test_an_input_without_batch_dimension_is_refused_with_its_shape():
    with pytest.raises(UserInputError, match=r"\(B, C, H, W\).*\(4, 8, 8\)"):
        winograd.conv3x3_valid(torch.randn(4, 8, 8), winograd.transform_weight(torch.randn(4, 4, 3, 3)))


@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("size", [(1, 1), (2, 7), (9, 14)])
def test_winograd_conv_layer_equals_the_layer_it_replaces(relu, size):
    torch.manual_seed(0)
    layer = ConvLayer(5, 6, 3, relu=relu).double().eval()
    with torch.no_grad():
        layer.norm.weight.uniform_(0.5, 1.5)
        layer.norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 5, *size, dtype=torch.float64)
    torch.testing.assert_close(WinogradConvLayer(layer)(x), layer(x), atol=1e-9, rtol=1e-9)


def test_winograd_conv_layer_refuses_strided_layers():
    with pytest.raises(UserInputError, match="3x3, stride-1"):
        WinogradConvLayer(ConvLayer(4, 4, 3, stride=2))
