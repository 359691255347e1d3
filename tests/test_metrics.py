"""Temporal error metrics (e_stab, E_warp), their ground truth, the version table and the evaluate command."""
from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reconet_lib import cli
from reconet_lib.errors import UserInputError
from reconet_lib.evaluate import evaluate_versions
from reconet_lib.metrics import (
    TemporalFlows,
    average_over_videos,
    error_maps,
    lai_valid_mask,
    load_frames,
    stability_error,
    temporal_errors,
    warping_error,
)
from reconet_lib.synthetic import SyntheticConfig, make_sequence, write_sintel_layout
from reconet_lib.warp import consistency_mask, inside_mask, warp


@pytest.fixture(scope="module")
def sequence():
    return make_sequence(SyntheticConfig(height=48, width=64, frames=4, seed=3))


# ------------------------------------------------------------------------------------- zero cases


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    frames=st.integers(2, 4),
    max_shift=st.floats(0.0, 3.0),
)
def test_e_stab_is_zero_for_outputs_made_by_exact_warping(seed, frames, max_shift):
    g = torch.Generator().manual_seed(seed)
    h, w = 5, 7
    flows = (torch.rand(frames - 1, 2, h, w, generator=g) * 2 - 1) * max_shift  # flow t -> t-1
    outputs = [torch.rand(1, 3, h, w, generator=g)]
    for t in range(1, frames):
        outputs.append(warp(outputs[-1], flows[t - 1 : t]))  # O_t = W(O_{t-1}) by construction
    outputs = torch.cat(outputs)
    valids = inside_mask(flows)
    result = stability_error(outputs, flows, valids)
    finite = result.per_pair[torch.isfinite(result.per_pair)]
    assert torch.all(finite == 0)


def test_static_video_has_zero_error_in_both_metrics():
    outputs = torch.rand(1, 3, 6, 9).expand(4, -1, -1, -1).contiguous()
    zeros = torch.zeros(3, 2, 6, 9)
    ones = torch.ones(3, 1, 6, 9)
    assert stability_error(outputs, zeros, ones).mean == 0.0
    assert warping_error(outputs, zeros, ones).mean == 0.0


def test_stylised_copy_of_a_translating_texture_scores_zero_with_ground_truth(sequence):
    # the synthetic frames are rendered, not warped, so their own error is small but not zero
    flows = TemporalFlows.from_synthetic(sequence)
    errors = temporal_errors(sequence.frames_tensor(), flows)
    assert 0 < errors["e_stab"].mean < 2e-3 and 0 < errors["E_warp"].mean < 2e-3
    assert errors["e_stab"].per_pair.shape == (3,)
    assert torch.all(errors["e_stab"].valid_fraction > 0.7)


# ----------------------------------------------------------------------------------- hand computed


def _hand_case():
    """3x4 images, two frames, flow t -> t-1 = one pixel to the right everywhere.

    O_0[c, y, x] = 0.1 x, so W(O_0)[y, x] = O_0[y, x + 1] = 0.1 (x + 1) for x <= 2; column x = 3 samples
    outside frame 0 (invalid). O_1 = 0.1 (x + 1) except: (y=0, x=0) channel 0 is 0.6 (+0.5), and (y=2, x=1)
    all channels are +0.3 but that pixel is marked invalid by hand.
    Valid pixels: 3 rows x 3 columns - 1 = 8; e_stab = 0.5^2 / (8 pixels x 3 channels) = 0.25 / 24.
    """
    x = torch.arange(4, dtype=torch.float32).view(1, 1, 1, 4).expand(1, 3, 3, 4)
    o0 = 0.1 * x
    o1 = 0.1 * (x + 1)
    o1 = o1.clone()
    o1[0, 0, 0, 0] += 0.5
    o1[0, :, 2, 1] += 0.3
    outputs = torch.cat([o0, o1])
    flow = torch.zeros(1, 2, 3, 4)
    flow[:, 0] = 1.0
    valid = inside_mask(flow)
    valid[0, 0, 2, 1] = 0.0
    return outputs, flow, valid


def test_e_stab_matches_a_hand_computation():
    outputs, flow, valid = _hand_case()
    assert valid.sum() == 8
    result = stability_error(outputs, flow, valid)
    assert result.name == "e_stab" and not result.sqrt
    assert result.per_pair.tolist() == pytest.approx([0.25 / 24])
    assert result.mean == pytest.approx(0.25 / 24)
    assert result.valid_fraction.tolist() == pytest.approx([8 / 12])
    rooted = stability_error(outputs, flow, valid, sqrt=True)
    assert rooted.mean == pytest.approx(math.sqrt(0.25 / 24))


def test_error_map_holds_the_per_pixel_channel_mean_and_zero_where_invalid():
    outputs, flow, valid = _hand_case()
    maps = error_maps(outputs, flow, valid)
    expected = torch.zeros(1, 1, 3, 4)
    expected[0, 0, 0, 0] = 0.25 / 3
    assert torch.allclose(maps, expected, atol=1e-7)


def test_valid_mask_is_respected():
    outputs, flow, valid = _hand_case()
    base = stability_error(outputs, flow, valid).mean
    spoiled = outputs.clone()
    spoiled[1, :, 2, 1] = 1.0  # the hand-invalidated pixel
    spoiled[1, :, :, 3] = 0.0  # the out-of-frame column
    assert stability_error(spoiled, flow, valid).mean == pytest.approx(base)
    # and once the pixel counts, so does its error
    assert stability_error(spoiled, flow, inside_mask(flow)).mean > base


def test_pair_without_valid_pixels_is_nan_and_left_out_of_the_mean():
    outputs = torch.rand(3, 3, 4, 4)
    flows = torch.zeros(2, 2, 4, 4)
    valids = torch.ones(2, 1, 4, 4)
    valids[0] = 0
    result = stability_error(outputs, flows, valids)
    assert math.isnan(result.per_pair[0].item())
    assert result.mean == pytest.approx(result.per_pair[1].item())


def test_e_warp_compares_frame_t_minus_1_with_frame_t_warped_back():
    # frame 1 is frame 0 moved 2 pixels to the right: flow 0 -> 1 is +2, flow 1 -> 0 is -2
    g = torch.Generator().manual_seed(0)
    o0 = torch.rand(1, 3, 6, 12, generator=g)
    o1 = torch.zeros_like(o0)
    o1[..., 2:] = o0[..., :-2]
    outputs = torch.cat([o0, o1])
    fw = torch.zeros(1, 2, 6, 12)
    fw[:, 0] = 2.0
    bw = torch.zeros(1, 2, 6, 12)
    bw[:, 0] = -2.0
    assert warping_error(outputs, fw, inside_mask(fw)).mean == pytest.approx(0, abs=1e-12)  # grid_sample: to rounding
    assert stability_error(outputs, bw, inside_mask(bw)).mean == pytest.approx(0, abs=1e-12)
    # the other direction (or a negated flow) does not explain the motion
    assert warping_error(outputs, bw, inside_mask(bw)).mean > 0.01
    assert stability_error(outputs, fw, inside_mask(fw)).mean > 0.01


def _pan_case():
    """3x4 images, flow 0 -> 1 = one pixel to the right everywhere (the camera pans), flow 1 -> 0 = one to the left.

    O_1[c, y, x] = 0.1 x and O_0 = 0.1 (x + 1), so warp(O_1, flow)[y, x] = O_1[y, x + 1] = O_0[y, x] for x <= 2.
    Column x = 3 leaves frame 1: the library leaves it out (E_warp = 0); Lai et al.'s rule compares it with the
    border pixel O_1[y, 3] = 0.3 against O_0 = 0.4, so 3 rows x 3 channels of 0.1^2 over 12 pixels x 3 channels.
    """
    x = torch.arange(4, dtype=torch.float32).view(1, 1, 1, 4).expand(1, 3, 3, 4)
    outputs = torch.cat([0.1 * (x + 1), 0.1 * x])
    fw = torch.zeros(1, 2, 3, 4)
    fw[:, 0] = 1.0
    return outputs, fw, -fw


def test_e_warp_lai_rule_keeps_out_of_frame_pixels_against_the_border_pixel_by_hand():
    outputs, fw, _ = _pan_case()
    ones = torch.ones(1, 1, 3, 4)
    assert warping_error(outputs, fw, ones).per_pair.tolist() == [0.0]  # the library drops column 3 itself
    kept = warping_error(outputs, fw, ones, out_of_frame="keep")
    assert kept.per_pair.tolist() == pytest.approx([9 * 0.1**2 / 36])
    assert kept.valid_fraction.tolist() == pytest.approx([1.0])
    # a pixel marked invalid stays invalid under Lai et al.'s rule: one of column 3's pixels dropped by hand
    ones[0, 0, 1, 3] = 0
    assert warping_error(outputs, fw, ones, out_of_frame="keep").per_pair.tolist() == pytest.approx([6 * 0.1**2 / 33])


def test_e_warp_lai_rule_reads_the_nearest_border_pixel_on_both_axes_and_far_outside():
    g = torch.Generator().manual_seed(1)
    outputs = torch.rand(2, 3, 4, 5, generator=g)
    fw = torch.zeros(1, 2, 4, 5)
    fw[:, 0], fw[:, 1] = -7.5, 30.0  # far left and below: every pixel samples the bottom-left corner
    expected = (outputs[0] - outputs[1, :, 3:4, 0:1]).pow(2).mean()
    kept = warping_error(outputs, fw, torch.ones(1, 1, 4, 5), out_of_frame="keep")
    assert kept.per_pair.tolist() == pytest.approx([float(expected)])


def test_e_warp_lai_rule_treats_unknown_flow_as_invalid_and_rejects_unknown_rules():
    outputs, fw, _ = _pan_case()
    fw[0, :, 0, 3] = math.nan
    kept = warping_error(outputs, fw, torch.ones(1, 1, 3, 4), out_of_frame="keep")
    assert kept.per_pair.tolist() == pytest.approx([6 * 0.1**2 / 33])
    with pytest.raises(UserInputError, match="out_of_frame"):
        warping_error(outputs, fw, torch.ones(1, 1, 3, 4), out_of_frame="lai")


def test_lai_valid_mask_is_the_consistency_check_without_the_frame_test():
    outputs, fw, bw = _pan_case()
    assert lai_valid_mask(fw, bw).sum() == 12  # a uniform pan is consistent everywhere, column 3 included
    assert consistency_mask(fw, bw).sum() == 9  # the library's check drops the column that leaves the frame
    spoiled = bw.clone()
    spoiled[0, 0, 1, 2] = 2.0  # flow 1 -> 0 at (y=1, x=2), where pixel (1, 1) of frame 0 lands, disagrees
    lai = lai_valid_mask(fw, spoiled)
    assert lai[0, 0, 1, 1] == 0 and lai.sum() == 11
    # Lai et al.'s pair of rules: their mask with their out-of-frame rule gives the hand-computed value
    assert warping_error(outputs, fw, lai_valid_mask(fw, bw), out_of_frame="keep").mean == pytest.approx(9 * 0.01 / 36)


def test_e_warp_is_e_stab_of_the_time_reversed_video(sequence):
    flows = TemporalFlows.from_synthetic(sequence)
    frames = sequence.frames_tensor()
    e_warp = warping_error(frames, flows.forward, flows.valid_forward)
    reversed_stab = stability_error(frames.flip(0), flows.forward.flip(0), flows.valid_forward.flip(0))
    assert torch.allclose(e_warp.per_pair, reversed_stab.per_pair.flip(0))


def test_average_over_videos_weights_each_video_once():
    a = stability_error(torch.rand(3, 3, 4, 4), torch.zeros(2, 2, 4, 4), torch.ones(2, 1, 4, 4))
    b = stability_error(torch.rand(5, 3, 4, 4), torch.zeros(4, 2, 4, 4), torch.ones(4, 1, 4, 4))
    assert average_over_videos([a, b]) == pytest.approx((a.mean + b.mean) / 2)
    with pytest.raises(UserInputError):
        average_over_videos([a, warping_error(torch.rand(3, 3, 4, 4), torch.zeros(2, 2, 4, 4), torch.ones(2, 1, 4, 4))])


def test_shape_mistakes_are_user_errors():
    outputs = torch.rand(3, 3, 4, 4)
    with pytest.raises(UserInputError, match=r"\(T-1, 2, H, W\)"):
        stability_error(outputs, torch.zeros(3, 2, 4, 4), torch.ones(2, 1, 4, 4))
    with pytest.raises(UserInputError, match="at least 2 frames"):
        stability_error(outputs[:1], torch.zeros(0, 2, 4, 4), torch.ones(0, 1, 4, 4))
    with pytest.raises(UserInputError, match="float"):
        stability_error((outputs * 255).to(torch.uint8), torch.zeros(2, 2, 4, 4), torch.ones(2, 1, 4, 4))


# ------------------------------------------------------------------------------------ ground truth


def test_sintel_layout_gives_the_generator_s_ground_truth(sequence, tmp_path):
    write_sintel_layout(sequence, tmp_path, "scene")
    from_files = TemporalFlows.from_sintel(tmp_path, "scene")
    exact = TemporalFlows.from_synthetic(sequence)
    assert torch.equal(from_files.forward, exact.forward) and torch.equal(from_files.backward, exact.backward)
    assert torch.equal(from_files.valid_forward, exact.valid_forward)
    assert torch.equal(from_files.valid_backward, exact.valid_backward)


def test_sintel_without_backward_flow_computes_e_stab_time_reversed(sequence, tmp_path):
    write_sintel_layout(sequence, tmp_path, "scene")
    shutil.rmtree(tmp_path / "flow_backward")
    flows = TemporalFlows.from_sintel(tmp_path, "scene")
    assert flows.backward is None
    errors = temporal_errors(sequence.frames_tensor(), flows)
    assert errors["e_stab"].time_reversed and not errors["E_warp"].time_reversed
    assert torch.allclose(errors["e_stab"].per_pair, errors["E_warp"].per_pair)


def test_sintel_occlusion_png_white_means_invalid(sequence, tmp_path):
    import imageio.v3 as iio

    write_sintel_layout(sequence, tmp_path, "scene")
    occ = np.zeros((48, 64), np.uint8)
    occ[:10] = 255
    iio.imwrite(tmp_path / "occlusions" / "scene" / "frame_0001.png", occ)
    flows = TemporalFlows.from_sintel(tmp_path, "scene")
    assert flows.valid_forward[0, 0, :10].sum() == 0
    assert flows.valid_forward[0, 0, 10:].mean() > 0.5


def test_missing_ground_truth_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserInputError, match="flow"):
        TemporalFlows.from_sintel(tmp_path, "nothing")


def test_resized_flows_rescale_vectors_and_keep_masks_conservative(sequence):
    flows = TemporalFlows.from_synthetic(sequence)
    half = flows.resized((24, 32))
    assert half.forward.shape == (3, 2, 24, 32)
    assert torch.allclose(half.forward.mean(dim=(2, 3)), flows.forward.mean(dim=(2, 3)) / 2, atol=0.05)
    assert half.valid_forward.mean() <= flows.valid_forward.mean()


# --------------------------------------------------------------------------------- comparing versions


def test_table_reports_input_beside_versions_and_a_flickering_version_scores_worse(sequence):
    frames = sequence.frames_tensor()
    g = torch.Generator().manual_seed(1)
    flicker = (frames + 0.1 * torch.randn(frames.shape, generator=g)).clamp(0, 1)
    table = evaluate_versions(frames, {"same": frames, "flicker": flicker}, flows=TemporalFlows.from_synthetic(sequence))
    assert table.names == ["input", "same", "flicker"]
    for metric in ("e_stab", "E_warp"):
        assert table.value(metric, "same") == pytest.approx(table.value(metric, "input"))
        assert table.ratio(metric, "same") == pytest.approx(1.0)
        assert table.ratio(metric, "flicker") > 5
    text = table.to_text()
    assert "e_stab" in text and "E_warp" in text and "flicker" in text and "ratio to input" in text
    assert len(table.rows()) == 6


def test_estimated_flows_come_from_the_input_not_the_output(sequence, monkeypatch):
    from reconet_lib import estimate

    frames = sequence.frames_tensor()
    noise = torch.rand_like(frames)
    seen = []
    real = estimate.estimate_flows_and_valid

    def spy(a, b, **kwargs):
        seen.append((a, b))
        return real(a, b, **kwargs)

    monkeypatch.setattr(estimate, "estimate_flows_and_valid", spy)
    table = evaluate_versions(sequence.frames, {"noise": noise}, method="dis")
    assert len(seen) == 1 and torch.equal(seen[0][0], frames[1:]) and torch.equal(seen[0][1], frames[:-1])
    assert table.flow_source.startswith("estimated (dis)")
    assert table.ratio("e_stab", "noise") > 5


def test_versions_must_have_the_input_s_length(sequence):
    frames = sequence.frames_tensor()
    with pytest.raises(UserInputError, match="frames"):
        evaluate_versions(frames, {"short": frames[:-1]}, flows=TemporalFlows.from_synthetic(sequence))


def test_load_frames_accepts_tensors_uint8_arrays_and_resizes():
    frames = np.random.default_rng(0).integers(0, 256, (3, 8, 10, 3), dtype=np.uint8)
    tensor = load_frames(frames)
    assert tensor.shape == (3, 3, 8, 10) and tensor.dtype == torch.float32
    assert tensor.max() <= 1 and torch.equal(load_frames(tensor), tensor)
    assert load_frames(tensor, (4, 5)).shape == (3, 3, 4, 5)
    assert load_frames(list(frames), (4, 5)).shape == (3, 3, 4, 5)


# ----------------------------------------------------------------------------------------- command


def test_evaluate_command_prints_a_table_with_ground_truth_and_estimated_flows(sequence, tmp_path, capsys):
    from reconet_lib.frame_folders import write_frames

    write_sintel_layout(sequence, tmp_path / "sintel", "scene")
    clip = tmp_path / "sintel" / "clean" / "scene"
    noisy = np.clip(sequence.frames.astype(np.int16) + np.random.default_rng(0).integers(-40, 40, sequence.frames.shape), 0, 255)
    write_frames(tmp_path / "noisy", list(noisy.astype(np.uint8)))
    assert cli.main(["evaluate", str(clip), str(clip), str(tmp_path / "noisy"), "--names", "copy", "noisy",
                     "--flow", f"gt:{tmp_path / 'sintel' / 'scene'}"]) == 0
    out = capsys.readouterr().out
    assert "copy" in out and "noisy" in out and "ground truth" in out
    assert cli.main(["evaluate", str(clip), str(tmp_path / "noisy"), "--size", "32x24"]) == 0
    out = capsys.readouterr().out
    assert "estimated (dis)" in out and "noisy" in out


def test_evaluate_command_missing_input_is_a_one_line_error(tmp_path, capsys):
    assert cli.main(["evaluate", str(tmp_path / "missing"), str(tmp_path / "also_missing")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and len(err.strip().splitlines()) == 1


def test_evaluate_command_rejects_bad_options(sequence, tmp_path, capsys):
    write_sintel_layout(sequence, tmp_path, "scene")
    clip = str(tmp_path / "clean" / "scene")
    assert cli.main(["evaluate", clip, clip, "--flow", "farneback"]) == 2
    assert "--flow" in capsys.readouterr().err
    assert cli.main(["evaluate", clip, clip, "--names", "a", "b"]) == 2
    assert "--names" in capsys.readouterr().err
    assert cli.main(["evaluate", clip, clip, "--flow", f"gt:{tmp_path / 'other'}"]) == 2
    assert "flow" in capsys.readouterr().err


def _panning_scene(root, h=4, w=6, backward=True):
    """A two-frame Sintel-layout scene whose camera pans one pixel: frame 2 = frame 1 moved right by 1."""
    from reconet_lib import sintel
    from reconet_lib.flow import write_flo

    rng = np.random.default_rng(5)
    first = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    second = np.concatenate([rng.integers(0, 256, (h, 1, 3), dtype=np.uint8), first[:, :-1]], axis=1)
    folders = {"clean": None, sintel.flow_folder(1): None, sintel.occlusion_folder(1): None}
    if backward:
        folders.update({sintel.flow_folder(-1): None, sintel.occlusion_folder(-1): None})
    for folder in folders:
        (root / folder / "scene").mkdir(parents=True)
    sintel.write_png(sintel.image_path(root, "clean", "scene", 1), first)
    sintel.write_png(sintel.image_path(root, "clean", "scene", 2), second)
    shift = np.zeros((h, w, 2), np.float32)
    shift[..., 0] = 1.0
    write_flo(sintel.flow_path(root, "scene", 1, 1), shift)
    sintel.write_png(sintel.occlusion_path(root, "scene", 1, 1), sintel.mask_png(np.zeros((h, w), bool)))
    if backward:
        write_flo(sintel.flow_path(root, "scene", 2, -1), -shift)
        sintel.write_png(sintel.occlusion_path(root, "scene", 2, -1), sintel.mask_png(np.zeros((h, w), bool)))
    return first.astype(np.float64) / 255, second.astype(np.float64) / 255


def _table_value(out: str, metric: str) -> float:
    """The input column's value of ``metric`` in an evaluate table."""
    row = next(line for line in out.splitlines() if line.startswith(metric))
    return float(row.split()[-2])


def test_evaluate_lai_flag_matches_a_hand_computation_on_a_panning_clip(tmp_path, capsys):
    first, second = _panning_scene(tmp_path)
    clip = str(tmp_path / "clean" / "scene")
    gt = f"gt:{tmp_path / 'scene'}"
    assert cli.main(["evaluate", clip, clip, "--names", "copy", "--flow", gt]) == 0
    out = capsys.readouterr().out
    # The library's rule drops frame 1's last column (its flow leaves the frame): what is left matches exactly.
    assert _table_value(out, "E_warp") == 0.0 and "Lai" not in out
    assert cli.main(["evaluate", clip, clip, "--names", "copy", "--flow", gt, "--lai"]) == 0
    out = capsys.readouterr().out
    # Lai et al.'s rule keeps every pixel (the flow is consistent) and compares the last column of frame 1
    # with the border pixel of frame 2 (its last column, which shows frame 1's second-to-last column).
    h, w, _ = first.shape
    by_hand = ((first[:, -1] - second[:, -1]) ** 2).sum() / (h * w * 3)
    assert by_hand > 0.001
    assert _table_value(out, "E_warp") == pytest.approx(by_hand, abs=2e-6)
    assert _table_value(out, "e_stab") == 0.0
    assert "Lai et al.'s released rule" in out


def test_evaluate_lai_flag_without_backward_flows_is_a_one_line_error(tmp_path, capsys):
    _panning_scene(tmp_path, backward=False)
    clip = str(tmp_path / "clean" / "scene")
    assert cli.main(["evaluate", clip, clip, "--flow", f"gt:{tmp_path / 'scene'}", "--lai"]) == 2
    err = capsys.readouterr().err
    assert "both directions" in err and len(err.strip().splitlines()) == 1
