"""Backward warping, in-frame masks, forward-backward consistency, conservative downsampling, luminance."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from reconet_lib.errors import UserInputError
from reconet_lib.warp import (ALIGN_CORNERS, consistency_mask, downsample_valid, inside_mask, luminance, warp,
                              warp_by_gather)

sizes = st.tuples(st.integers(1, 12), st.integers(1, 12))


def _shift_flow(h, w, du, dv, batch=1):
    flow = torch.zeros(batch, 2, h, w)
    flow[:, 0], flow[:, 1] = du, dv
    return flow


@settings(max_examples=40, deadline=None)
@given(size=sizes, channels=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_warp_with_zero_flow_returns_the_image_bit_for_bit(size, channels, seed):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(2, channels, *size, generator=g)
    out, valid = warp(image, torch.zeros(2, 2, *size), return_valid=True)
    assert torch.equal(out, image)
    assert torch.equal(valid, torch.ones(2, 1, *size))


@settings(max_examples=40, deadline=None)
@given(size=st.tuples(st.integers(4, 14), st.integers(4, 14)), du=st.integers(-3, 3), dv=st.integers(-3, 3),
       seed=st.integers(0, 2**16))
def test_integer_translation_is_recovered_exactly_inside_and_flagged_outside(size, du, dv, seed):
    h, w = size
    g = torch.Generator().manual_seed(seed)
    frame_b = torch.rand(1, 3, h, w, generator=g)
    # Frame a sees frame b's content shifted: pixel (x, y) of a is found at (x + du, y + dv) in b.
    out, valid = warp(frame_b, _shift_flow(h, w, du, dv), return_valid=True)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    inside = (xs + du >= 0) & (xs + du < w) & (ys + dv >= 0) & (ys + dv < h)
    assert torch.equal(valid[0, 0].bool(), inside)
    expected = frame_b[0][:, (ys + dv).clamp(0, h - 1), (xs + du).clamp(0, w - 1)]
    exact = warp_by_gather(frame_b, _shift_flow(h, w, du, dv))  # the reference copies pixels bit for bit
    assert torch.equal(exact[0][:, inside], expected[:, inside])
    assert torch.all(exact[0][:, ~inside] == 0)
    # grid_sample's normalised round trip may be an ulp off: the same pixels to float rounding
    assert torch.allclose(out[0][:, inside], expected[:, inside], atol=1e-5, rtol=0)
    assert torch.all(out[0][:, ~inside].abs() <= 1e-5)


@settings(max_examples=60, deadline=None)
@given(size=st.tuples(st.integers(1, 24), st.integers(1, 24)), batch=st.sampled_from([(1, 1), (2, 2), (3, 1), (1, 2)]),
       scale=st.sampled_from([0.3, 2.0, 30.0]), seed=st.integers(0, 2**16))
def test_grid_sample_warp_agrees_with_the_gather_derivation_within_1e5(size, batch, scale, seed):
    """Random flows, small and large (far out of frame), any size down to 1 pixel, batches broadcast."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(batch[0], 3, *size, generator=g)
    flow = torch.randn(batch[1], 2, *size, generator=g) * scale
    flow[..., ::3, ::2] = torch.round(flow[..., ::3, ::2])  # integer samples and exact zeros too
    flow[..., 1::4, :] = 0
    fast, valid = warp(image, flow, return_valid=True)
    reference = warp_by_gather(image, flow)
    assert fast.shape == reference.shape == (max(batch), 3, *size)
    assert (fast - reference).abs().max() <= 1e-5
    assert torch.equal(valid, inside_mask(flow).expand(max(batch), -1, -1, -1))


@settings(max_examples=20, deadline=None)
@given(size=st.tuples(st.integers(2, 12), st.integers(2, 12)), seed=st.integers(0, 2**16))
def test_grid_sample_warp_has_the_gradients_of_the_gather_derivation(size, seed):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(2, 3, *size, generator=g)
    flow = torch.randn(2, 2, *size, generator=g) * 1.7 + 0.01  # no exact zeros, no integer positions
    weights = torch.rand(2, 3, *size, generator=g)
    grads = []
    for fn in (warp, warp_by_gather):
        x, f = image.clone().requires_grad_(True), flow.clone().requires_grad_(True)
        (fn(x, f) * weights).sum().backward()
        grads.append((x.grad, f.grad))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-5)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-4)


def test_warp_declares_align_corners_false_and_its_grid_maps_pixel_centres_to_integers():
    assert ALIGN_CORNERS is False
    image = torch.arange(12.0).view(1, 1, 3, 4)
    # a quarter-pixel shift: the value a quarter of the way between neighbouring pixel centres
    out = warp(image, _shift_flow(3, 4, 0.25, 0.0))
    assert torch.allclose(out[0, 0, :, :3], image[0, 0, :, :3] + 0.25)
    assert torch.allclose(out[0, 0, :, 3], image[0, 0, :, 3] * 0.75)  # the last tap is outside: reads zero


def test_warp_direction_samples_frame_b_at_x_plus_flow():
    # A single bright pixel at x=5 in frame b; frame a's pixel x=3 moves by +2 to reach it.
    frame_b = torch.zeros(1, 1, 1, 8)
    frame_b[..., 5] = 1.0
    out = warp(frame_b, _shift_flow(1, 8, 2.0, 0.0))
    assert out[0, 0, 0].argmax().item() == 3
    # The classic mistake, a negated flow, puts it somewhere else.
    wrong = warp(frame_b, -_shift_flow(1, 8, 2.0, 0.0))
    assert wrong[0, 0, 0].argmax().item() == 7


@settings(max_examples=25, deadline=None)
@given(size=st.tuples(st.integers(2, 16), st.integers(2, 16)), seed=st.integers(0, 2**16))
def test_warp_matches_grid_sample_with_align_corners_false_normalisation(size, seed):
    h, w = size
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(2, 3, h, w, generator=g)
    flow = torch.randn(2, 2, h, w, generator=g) * 2
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    grid = torch.stack(((2 * (xs + flow[:, 0]) + 1) / w - 1, (2 * (ys + flow[:, 1]) + 1) / h - 1), dim=-1)
    reference = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    assert torch.allclose(warp(image, flow), reference, atol=1e-5)


def test_half_pixel_flow_averages_neighbours():
    image = torch.tensor([[[[0.0, 1.0, 2.0, 3.0]]]])
    out = warp(image, _shift_flow(1, 4, 0.5, 0.0))
    assert torch.allclose(out[0, 0, 0, :3], torch.tensor([0.5, 1.5, 2.5]))


def test_warp_of_bf16_inputs_samples_positions_in_float32():
    # In bf16, 300 + 3 rounds to 304: positions must be computed in float32 whatever the input dtype.
    w = 512
    image = (torch.arange(w) % 7).float().view(1, 1, 1, w)  # small integers are exact in bf16
    flow = _shift_flow(1, w, 3.0, 0.0).to(torch.bfloat16)
    out = warp(image.to(torch.bfloat16), flow)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out.float()[0, 0, 0, :-3], image[0, 0, 0, 3:])


def test_non_finite_flow_is_invalid_and_samples_zero():
    image = torch.ones(1, 3, 4, 4)
    flow = torch.zeros(1, 2, 4, 4)
    flow[0, :, 1, 2] = float("nan")
    out, valid = warp(image, flow, return_valid=True)
    assert valid[0, 0, 1, 2] == 0 and valid.sum() == 15
    assert torch.isfinite(out).all()
    assert torch.all(out[0, :, 1, 2] == 0)


def test_warp_broadcasts_a_single_flow_over_a_batch_and_gradients_flow_to_both_inputs():
    image = torch.rand(3, 2, 5, 6, requires_grad=True)
    flow = (torch.rand(1, 2, 5, 6) - 0.5).requires_grad_(True)
    out = warp(image, flow)
    assert out.shape == (3, 2, 5, 6)
    out.sum().backward()
    assert image.grad.abs().sum() > 0 and flow.grad.abs().sum() > 0


def test_mismatched_sizes_are_refused_with_a_hint():
    with pytest.raises(UserInputError, match="resize_flow"):
        warp(torch.rand(1, 3, 8, 8), torch.zeros(1, 2, 4, 4))
    with pytest.raises(UserInputError, match=r"\(B, 2, H, W\)"):
        warp(torch.rand(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))


def test_inside_mask_uses_outermost_pixel_centres():
    flow = _shift_flow(1, 4, 0.0, 0.0)
    flow[0, 0, 0, 3] = 0.4  # 3.4 > W - 1: bilinear would blend in padding
    flow[0, 0, 0, 0] = -0.0005  # float round-off at the border is tolerated
    assert inside_mask(flow)[0, 0, 0].tolist() == [1.0, 1.0, 1.0, 0.0]


def _translating_pair(h, w, du):
    """Frame b is frame a moved du pixels to the right; exact flows both ways."""
    return _shift_flow(h, w, du, 0.0), _shift_flow(h, w, -du, 0.0)


def test_consistency_mask_of_a_consistent_translation_marks_only_the_exit_border_invalid():
    fw, bw = _translating_pair(6, 10, 3.0)
    valid = consistency_mask(fw, bw)
    assert valid.shape == (1, 1, 6, 10) and valid.dtype == torch.float32
    # Pixels with x + 3 > 9 leave frame b: invalid (0); everything else valid (1 = trust).
    assert valid[0, 0, :, :7].eq(1).all() and valid[0, 0, :, 7:].eq(0).all()


def test_consistency_mask_rejects_disagreeing_flows():
    fw, _ = _translating_pair(6, 10, 3.0)
    bw = torch.zeros_like(fw)  # backward flow says "nothing moved"
    assert consistency_mask(fw, bw)[0, 0, :, :7].eq(0).all()


def test_consistency_mask_rejects_motion_boundaries_unless_disabled():
    h, w = 8, 12
    fw = torch.zeros(1, 2, h, w)
    fw[0, 0, :, 6:] = 2.0  # right half moves right by 2: a motion boundary at x = 5/6
    bw = torch.zeros(1, 2, h, w)
    bw[0, 0, :, 8:] = -2.0
    with_boundaries = consistency_mask(fw, bw)
    without = consistency_mask(fw, bw, check_motion_boundaries=False)
    assert with_boundaries[0, 0, :, 5].eq(0).all()
    assert without[0, 0, :, 5].eq(1).all()


def test_downsample_valid_is_conservative():
    valid = torch.ones(1, 1, 8, 8)
    valid[0, 0, 3, 5] = 0
    small = downsample_valid(valid, (2, 2))
    assert small[0, 0].tolist() == [[1.0, 0.0], [1.0, 1.0]]
    odd = downsample_valid(valid, (3, 3))  # cells overlap: every cell touching (3, 5) is invalid
    assert odd[0, 0, 1, 1] == 0 or odd[0, 0, 1, 2] == 0
    assert odd.sum() < 9
    with pytest.raises(UserInputError):
        downsample_valid(valid, (16, 16))


@settings(max_examples=25, deadline=None)
@given(size=st.tuples(st.integers(1, 20), st.integers(1, 20)), out=st.tuples(st.integers(1, 6), st.integers(1, 6)),
       seed=st.integers(0, 2**16))
def test_downsampled_cell_is_valid_only_if_all_its_pixels_are(size, out, seed):
    h, w = size
    oh, ow = min(out[0], h), min(out[1], w)
    g = torch.Generator().manual_seed(seed)
    valid = (torch.rand(1, 1, h, w, generator=g) > 0.2).float()
    small = downsample_valid(valid, (oh, ow))
    for i in range(oh):
        for j in range(ow):
            # adaptive pooling window of cell (i, j)
            y0, y1 = (i * h) // oh, -((-(i + 1) * h) // oh)
            x0, x1 = (j * w) // ow, -((-(j + 1) * w) // ow)
            assert small[0, 0, i, j] == valid[0, 0, y0:y1, x0:x1].min()


def test_luminance_uses_bt709_weights():
    rgb = torch.eye(3).view(3, 3, 1, 1)
    assert torch.allclose(luminance(rgb).flatten(), torch.tensor([0.2126, 0.7152, 0.0722]))
    assert torch.allclose(luminance(torch.ones(1, 3, 2, 2)), torch.ones(1, 1, 2, 2))
    with pytest.raises(UserInputError):
        luminance(torch.ones(1, 1, 2, 2))
