"""The Sintel layout module: names, numbering, step direction, mask polarity and readers."""
import numpy as np
import pytest
import torch

from reconet_lib import sintel
from reconet_lib.errors import UserInputError
from reconet_lib.synthetic import SyntheticConfig, make_sequence, write_sintel_layout
from reconet_lib.warp import warp


def test_file_names_count_frames_from_one_and_flows_are_stored_under_their_source_frame(tmp_path):
    assert sintel.frame_name(1) == "frame_0001.png"
    assert sintel.flow_path(tmp_path, "s", 3) == tmp_path / "flow" / "s" / "frame_0003.flo"
    assert sintel.flow_path(tmp_path, "s", 3, step=-1) == tmp_path / "flow_backward" / "s" / "frame_0003.flo"
    assert sintel.occlusion_path(tmp_path, "s", 2, step=-1) == tmp_path / "occlusions_backward" / "s" / "frame_0002.png"
    with pytest.raises(UserInputError):
        sintel.frame_name(0)
    with pytest.raises(UserInputError):
        sintel.flow_path(tmp_path, "s", 1, step=2)


def test_scene_files_lists_forward_flows_for_1_to_t_minus_1_and_backward_for_2_to_t():
    files = sintel.scene_files(4, passes=("clean",))
    assert files["clean"] == ["frame_0001.png", "frame_0002.png", "frame_0003.png", "frame_0004.png"]
    assert files["flow"] == ["frame_0001.flo", "frame_0002.flo", "frame_0003.flo"]
    assert files["flow_backward"] == ["frame_0002.flo", "frame_0003.flo", "frame_0004.flo"]
    assert "flow_backward" not in sintel.scene_files(4, backward=False)


def test_white_mask_pixels_are_invalid(tmp_path):
    occluded = np.zeros((5, 6), dtype=bool)
    occluded[1, 2] = True
    sintel.write_png(tmp_path / "m.png", sintel.mask_png(occluded))
    valid = sintel.read_mask(tmp_path / "m.png")
    assert valid.shape == (1, 5, 6) and valid.dtype == torch.float32
    assert valid[0, 1, 2] == 0 and valid.sum() == 29


def test_missing_mask_is_a_clear_error_not_an_all_valid_mask(tmp_path):
    with pytest.raises(sintel.LayoutFileMissing, match="occluded pixels would be trusted"):
        sintel.read_valid(tmp_path, "s", 1)


def test_generator_layout_reads_back_exactly_in_both_steps(tmp_path):
    seq = make_sequence(SyntheticConfig(height=24, width=32, frames=3, objects=1))
    write_sintel_layout(seq, tmp_path, scene="a")
    assert sintel.frame_numbers(tmp_path / "clean" / "a") == [1, 2, 3]
    for k in (1, 2):
        image = sintel.read_image(sintel.image_path(tmp_path, "clean", "a", k))
        assert image.shape == (3, 24, 32) and image.dtype == torch.float32 and float(image.max()) <= 1.0
        assert torch.equal(image, seq.frames_tensor()[k - 1])
        assert torch.equal(sintel.read_flow(tmp_path, "a", k).permute(1, 2, 0), torch.from_numpy(seq.flow_forward[k - 1]))
        assert torch.equal(sintel.read_valid(tmp_path, "a", k)[0].bool(), torch.from_numpy(seq.valid_forward[k - 1]))
        back = sintel.read_flow(tmp_path, "a", k + 1, step=-1)
        assert torch.equal(back.permute(1, 2, 0), torch.from_numpy(seq.flow_backward[k - 1]))
        assert torch.equal(sintel.read_valid(tmp_path, "a", k + 1, step=-1)[0].bool(),
                           torch.from_numpy(seq.valid_backward[k - 1]))


def test_time_reversed_sintel_pair_lines_up_where_valid(tmp_path):
    seq = make_sequence(SyntheticConfig(height=32, width=40, frames=2, objects=1))
    write_sintel_layout(seq, tmp_path, scene="a")
    current = sintel.read_image(sintel.image_path(tmp_path, "clean", "a", 1))[None]
    previous = sintel.read_image(sintel.image_path(tmp_path, "clean", "a", 2))[None]
    flow, valid = sintel.read_flow(tmp_path, "a", 1)[None], sintel.read_valid(tmp_path, "a", 1)[None]
    aligned = (valid * (warp(previous, flow) - current).abs()).sum() / valid.sum()
    unaligned = (valid * (previous - current).abs()).sum() / valid.sum()
    assert aligned < 0.5 * unaligned


def test_invalid_folder_masks_the_forward_step_only(tmp_path):
    seq = make_sequence(SyntheticConfig(height=8, width=8, frames=2, objects=0, camera_pan=0.0, camera_zoom=0.0,
                                        camera_rotation=0.0))
    write_sintel_layout(seq, tmp_path, scene="a")
    invalid = np.zeros((8, 8), dtype=bool)
    invalid[0, 0] = True
    (tmp_path / "invalid" / "a").mkdir(parents=True)
    sintel.write_png(sintel.invalid_path(tmp_path, "a", 1), sintel.mask_png(invalid))
    assert sintel.read_valid(tmp_path, "a", 1)[0, 0, 0] == 0
    assert sintel.read_valid(tmp_path, "a", 2, step=-1)[0, 0, 0] == 1
