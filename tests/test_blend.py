"""The consistency blend: the formula, its derived properties, and the streaming form used by `stylize`."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from reconet_lib.blend import StreamBlender, blend_clip, blend_step, check_alpha, sharpness, sharpness_kept
from reconet_lib.errors import UserInputError
from reconet_lib.metrics import TemporalFlows, stability_error, warped_previous
from reconet_lib.synthetic import SyntheticConfig, make_sequence
from reconet_lib.warp import warp


@pytest.fixture(scope="module")
def clip():
    seq = make_sequence(SyntheticConfig(height=32, width=40, frames=5, seed=3))
    frames = seq.frames_tensor()
    g = torch.Generator().manual_seed(1)
    flicker = (frames + 0.2 * torch.randn(frames.shape, generator=g)).clamp(0, 1)  # a "stylised" clip that boils
    return frames, flicker, TemporalFlows.from_synthetic(seq)


def _by_hand(stylised, flows, valids, alpha):
    """The formula as written in the docs, step by step."""
    out = [stylised[0]]
    for t in range(1, stylised.shape[0]):
        warped = warp(out[-1][None], flows[t - 1 : t])[0]
        v = valids[t - 1]
        out.append(v * (alpha * warped + (1 - alpha) * stylised[t]) + (1 - v) * stylised[t])
    return torch.stack(out)


def test_blend_clip_equals_the_written_formula(clip):
    _, flicker, flows = clip
    library = blend_clip(flicker, flows.backward, flows.valid_backward, 0.6)
    assert torch.allclose(library, _by_hand(flicker, flows.backward, flows.valid_backward, 0.6), atol=1e-6)


def test_alpha_zero_returns_the_stylised_clip_bit_for_bit(clip):
    _, flicker, flows = clip
    assert torch.equal(blend_clip(flicker, flows.backward, flows.valid_backward, 0.0), flicker)
    assert torch.equal(blend_step(flicker[1:2], flicker[0:1], flows.backward[:1], flows.valid_backward[:1], 0), flicker[1:2])


def test_e_stab_of_the_blend_is_one_minus_alpha_squared_times_the_new_frames_difference(clip):
    _, flicker, flows = clip
    alpha = 0.7
    out = blend_clip(flicker, flows.backward, flows.valid_backward, alpha)
    previous = warped_previous(out, flows.backward)  # W(out_{t-1})
    v = flows.valid_backward.expand(-1, 3, -1, -1)
    innovation = ((flicker[1:] - previous) ** 2 * v).sum(dim=(1, 2, 3)) / v.sum(dim=(1, 2, 3))
    measured = stability_error(out, flows.backward, flows.valid_backward).per_pair
    assert torch.allclose(measured, (1 - alpha) ** 2 * innovation.double(), rtol=1e-4)


def test_invalid_pixels_keep_the_stylised_frame(clip):
    _, flicker, flows = clip
    out = blend_clip(flicker, flows.backward, flows.valid_backward, 0.9)
    invalid = (flows.valid_backward == 0).expand(-1, 3, -1, -1)
    assert invalid.any()
    assert torch.equal(out[1:][invalid], flicker[1:][invalid])
    assert not torch.equal(out[1:][~invalid], flicker[1:][~invalid])


def test_a_sample_outside_the_previous_frame_is_never_blended_in():
    stylised = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    flow = torch.zeros(1, 2, 6, 6)
    flow[:, 0] = 10.0  # every pixel reads far right of the frame
    out = blend_clip(stylised, flow, torch.ones(1, 1, 6, 6), 0.8)  # a careless all-ones mask
    assert torch.equal(out[1], stylised[1])


def test_alpha_one_with_a_still_scene_freezes_the_first_frame():
    stylised = torch.rand(4, 3, 5, 7, generator=torch.Generator().manual_seed(2))
    out = blend_clip(stylised, torch.zeros(3, 2, 5, 7), torch.ones(3, 1, 5, 7), 1.0)
    assert all(torch.equal(out[k], stylised[0]) for k in range(4))


def test_independent_flicker_keeps_one_minus_alpha_over_one_plus_alpha_of_its_variance():
    g = torch.Generator().manual_seed(4)
    frames, alpha = 400, 0.5
    noise = 0.5 + 0.1 * torch.randn(frames, 3, 8, 8, generator=g)
    out = blend_clip(noise, torch.zeros(frames - 1, 2, 8, 8), torch.ones(frames - 1, 1, 8, 8), alpha)
    ratio = out[50:].var(dim=0).mean() / noise[50:].var(dim=0).mean()  # after the start-up transient
    assert ratio.item() == pytest.approx((1 - alpha) / (1 + alpha), rel=0.1)


def test_blending_along_subpixel_motion_costs_sharpness_growing_with_alpha(clip):
    _, flicker, flows = clip
    kept = [sharpness_kept(blend_clip(flicker, flows.backward, flows.valid_backward, a), flicker)
            for a in (0.0, 0.4, 0.8)]
    assert kept[0] == 1.0 and kept[0] > kept[1] > kept[2]


def test_sharpness_is_the_mean_luminance_gradient_magnitude():
    ramp = torch.linspace(0, 1, 11).repeat(11, 1)  # d/dx = 0.1 everywhere, d/dy = 0
    frames = ramp.expand(1, 3, 11, 11)
    assert sharpness(frames) == pytest.approx(0.1, rel=1e-5)
    assert sharpness(torch.full((1, 3, 4, 4), 0.3)) == 0.0


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), "0.5", True, None])
def test_alpha_outside_zero_one_is_a_user_error(alpha):
    with pytest.raises(UserInputError, match="alpha must be a number in"):
        check_alpha(alpha)


def test_stream_blender_gives_the_same_frames_in_any_batching(clip):
    frames, flicker, _ = clip
    inputs = (frames * 255).round().byte().permute(0, 2, 3, 1).numpy()
    painted = (flicker * 255).round().byte().permute(0, 2, 3, 1).numpy()
    whole = StreamBlender(0.6)(inputs, painted)
    stream = StreamBlender(0.6)
    pieces = np.concatenate([stream(inputs[:2], painted[:2]), stream(inputs[2:3], painted[2:3]), stream(inputs[3:], painted[3:])])
    assert np.array_equal(whole, pieces)
    assert np.array_equal(whole[0], painted[0]) and not np.array_equal(whole[1:], painted[1:])
    assert StreamBlender(0.0)(inputs, painted) is painted


def test_stream_blender_estimates_flow_on_the_inputs_and_follows_the_motion():
    """A still texture, stylised with independent noise, blends into something steadier; a cut resets."""
    g = torch.Generator().manual_seed(5)
    scene = torch.rand(1, 3, 48, 64, generator=g).repeat(6, 1, 1, 1)
    painted = (scene + 0.15 * torch.randn(scene.shape, generator=g)).clamp(0, 1)
    to8 = lambda x: (x * 255).round().byte().permute(0, 2, 3, 1).numpy()  # noqa: E731
    blender = StreamBlender(0.8)
    out = blender(to8(scene), to8(painted))
    flicker = lambda v: float(np.abs(np.diff(v.astype(np.float32), axis=0)).mean())  # noqa: E731
    assert flicker(out) < 0.6 * flicker(to8(painted))
    blender.reset()
    assert np.array_equal(blender(to8(scene[:1]), to8(painted[:1])), to8(painted[:1]))
