"""Optical-flow estimation: DIS accuracy and direction on exact synthetic ground truth, RAFT plumbing offline."""
from __future__ import annotations

import pytest
import torch

from reconet_lib import estimate
from reconet_lib.errors import UserInputError
from reconet_lib.estimate import estimate_flow, estimate_flows_and_valid, raft_flow
from reconet_lib.synthetic import SyntheticConfig, make_sequence

# Measured on make_sequence(SyntheticConfig(height=64, width=96, frames=3, seed=s)), s = 0, 1, 2, DIS "medium":
# mean end-point error on valid pixels 0.54, 0.40, 0.38 px for true motions of 1.6 to 2.6 px on average.
EPE_LIMIT = 0.75


@pytest.fixture(scope="module")
def pair():
    seq = make_sequence(SyntheticConfig(height=64, width=96, frames=2, seed=0))
    frames = seq.frames_tensor()
    flow_ab = torch.from_numpy(seq.flow_forward).permute(0, 3, 1, 2)
    valid_a = torch.from_numpy(~seq.occlusion_forward)[:, None]
    return frames[:1], frames[1:], flow_ab, valid_a


def _epe(flow, truth, valid):
    return (flow - truth).norm(dim=1, keepdim=True)[valid].mean().item()


def test_dis_recovers_the_exact_synthetic_flow(pair):
    a, b, truth, valid = pair
    flow = estimate_flow(a, b, method="dis")
    assert flow.shape == (1, 2, 64, 96) and flow.dtype == torch.float32
    assert _epe(flow, truth, valid) < EPE_LIMIT
    # and it is far better than knowing nothing (zero flow)
    assert _epe(flow, truth, valid) < 0.4 * _epe(torch.zeros_like(truth), truth, valid)


def test_dis_flow_points_from_a_to_b_not_backwards(pair):
    a, b, truth, valid = pair
    flow = estimate_flow(a, b)
    assert _epe(flow, truth, valid) < 0.3 * _epe(-flow, truth, valid)


def test_dis_of_a_known_integer_shift_has_the_right_sign():
    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.interpolate(torch.rand(1, 3, 12, 16, generator=g), size=(48, 64), mode="bicubic").clamp(0, 1)
    b = torch.roll(a, shifts=(1, 3), dims=(2, 3))  # the pixel at (x, y) of a is at (x + 3, y + 1) in b
    flow = estimate_flow(a, b)[..., 8:-8, 8:-8]
    assert flow[:, 0].median().item() == pytest.approx(3.0, abs=0.25)
    assert flow[:, 1].median().item() == pytest.approx(1.0, abs=0.25)


def test_dis_handles_a_batch_item_by_item(pair):
    a, b, _, _ = pair
    both = estimate_flow(torch.cat([a, b]), torch.cat([b, a]))
    assert torch.equal(both[:1], estimate_flow(a, b))
    assert torch.equal(both[1:], estimate_flow(b, a))


def test_flows_and_valid_mark_occluded_pixels_invalid(pair):
    a, b, truth, valid = pair
    flow_ab, flow_ba, valid_a = estimate_flows_and_valid(a, b)
    assert flow_ab.shape == flow_ba.shape == (1, 2, 64, 96)
    assert valid_a.shape == (1, 1, 64, 96) and set(valid_a.unique().tolist()) <= {0.0, 1.0}
    kept = valid_a[0, 0] > 0
    occluded = ~valid[0, 0]
    # the check keeps most truly visible pixels and drops a larger share of the truly occluded ones
    assert kept[~occluded].float().mean() > 0.6
    assert kept[occluded].float().mean() < kept[~occluded].float().mean()
    # on the pixels it keeps, the estimate is at least as good as overall
    assert _epe(flow_ab, truth, valid & (valid_a > 0)) <= _epe(flow_ab, truth, valid) + 1e-6


def test_estimate_flow_rejects_bad_input():
    a = torch.rand(1, 3, 16, 16)
    with pytest.raises(UserInputError, match="method"):
        estimate_flow(a, a, method="farneback")
    with pytest.raises(UserInputError, match="differ in shape"):
        estimate_flow(a, torch.rand(1, 3, 16, 17))
    with pytest.raises(UserInputError, match=r"\(B, 3, H, W\)"):
        estimate_flow(a[0], a[0])


def test_raft_without_weights_offline_explains_how_to_provide_them(monkeypatch, tmp_path):
    monkeypatch.delenv(estimate.RAFT_WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # an empty cache

    def no_network(*args, **kwargs):
        raise AssertionError("tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setenv("RECONET_OFFLINE", "1")  # the resource policy's opt-out: no download attempt
    estimate._load_raft_cached.cache_clear()
    a = torch.rand(1, 3, 16, 16)
    with pytest.raises(UserInputError, match=estimate.RAFT_WEIGHTS_ENV) as info:
        estimate_flow(a, a, method="raft")
    assert "raft_large_C_T_SKHT_V2" in str(info.value) and "dis" in str(info.value)


def test_raft_weights_env_pointing_nowhere_is_a_user_error(monkeypatch, tmp_path):
    monkeypatch.setenv(estimate.RAFT_WEIGHTS_ENV, str(tmp_path / "missing.pth"))
    with pytest.raises(UserInputError, match="not a file"):
        estimate_flow(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), method="raft_small")


def test_raft_loads_a_state_dict_from_the_env_file_and_rejects_the_wrong_size(monkeypatch, tmp_path):
    from torchvision.models.optical_flow import raft_small

    path = tmp_path / "raft_small.pth"
    torch.manual_seed(0)
    torch.save(raft_small(weights=None).state_dict(), path)
    monkeypatch.setenv(estimate.RAFT_WEIGHTS_ENV, str(path))
    estimate._load_raft_cached.cache_clear()
    model = estimate.load_raft("small")
    assert not model.training
    with pytest.raises(UserInputError, match="raft_small"):
        estimate.load_raft("large")
    estimate._load_raft_cached.cache_clear()


class _RecordingRaft(torch.nn.Module):
    """Stands in for RAFT: records its inputs and returns a flow that encodes pixel positions."""

    def forward(self, img1, img2, num_flow_updates=12):
        self.seen = (img1, img2, num_flow_updates)
        b, _, h, w = img1.shape
        xs = torch.arange(w, dtype=torch.float32).expand(b, h, w)
        ys = torch.arange(h, dtype=torch.float32)[:, None].expand(b, h, w)
        return [torch.zeros(b, 2, h, w), torch.stack([xs, ys], dim=1)]


def test_raft_input_is_in_minus_one_one_padded_to_multiples_of_8_and_cropped_back():
    model = _RecordingRaft()
    a = torch.rand(2, 3, 37, 141)
    b = torch.rand(2, 3, 37, 141)
    flow = raft_flow(model, a, b, updates=5)
    img1, img2, updates = model.seen
    assert updates == 5
    assert img1.shape == (2, 3, 128, 144)  # at least 128, multiples of 8
    assert torch.allclose(img1[..., :37, :141], a * 2 - 1) and torch.allclose(img2[..., :37, :141], b * 2 - 1)
    assert img1.min() >= -1 and img1.max() <= 1
    assert torch.equal(img1[..., 37:, :141], img1[..., 36:37, :141].expand(-1, -1, 128 - 37, -1))  # replicated
    # the last prediction, cropped at the top-left: positions are unchanged
    assert flow.shape == (2, 2, 37, 141)
    assert flow[0, 0, 5, 140] == 140 and flow[0, 1, 36, 3] == 36
