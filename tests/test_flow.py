"""Tests of reconet_lib.flow: flow files, unknown values, resizing, flipping and the colour wheel."""
from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.utils
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from reconet_lib import flow as fl
from reconet_lib.errors import UserInputError
from reconet_lib.warp import warp

FAST = settings(max_examples=30, deadline=None)


def _flo_bytes(tag: bytes, width: int, height: int, values=()) -> bytes:
    return tag + struct.pack("<ii", width, height) + struct.pack(f"<{len(values)}f", *values)


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _finite_flows(max_side: int = 9):
    shapes = st.tuples(st.integers(1, max_side), st.integers(1, max_side), st.just(2))
    values = st.floats(-1e6, 1e6, allow_nan=False, width=32)
    return arrays(np.float32, shapes, elements=values)


# ------------------------------------------------------------------------------------------------ .flo


def test_flo_tag_bytes_are_the_float_202021_25():
    assert struct.unpack("<f", fl.FLO_TAG)[0] == fl.FLO_TAG_FLOAT == 202021.25


def test_flo_byte_layout_is_tag_width_height_then_interleaved_rows(tmp_path):
    # 2 rows x 3 columns; pixel (x, y) holds u = 10 y + x, v = -(10 y + x).
    values = []
    for y in range(2):
        for x in range(3):
            values += [10 * y + x, -(10 * y + x)]
    path = _write_bytes(tmp_path / "hand.flo", _flo_bytes(b"PIEH", 3, 2, values))
    flow = fl.read_flo(path)
    assert flow.shape == (2, 3, 2) and flow.dtype == np.float32
    assert flow[1, 2].tolist() == [12.0, -12.0]
    assert flow[0, 1].tolist() == [1.0, -1.0]
    fl.write_flo(tmp_path / "again.flo", flow)
    assert (tmp_path / "again.flo").read_bytes() == path.read_bytes()


@FAST
@given(_finite_flows())
def test_flo_round_trip_preserves_every_value(flow):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "f.flo"
        fl.write_flo(path, flow)
        back = fl.read_flo(path)
        assert os.path.getsize(path) == 12 + flow.size * 4
    assert back.shape == flow.shape and back.dtype == np.float32
    np.testing.assert_array_equal(back, flow)


def test_flo_unknown_values_read_back_as_nan_in_both_components(tmp_path):
    values = [1.0, 2.0, 1e10, 0.5, 3.0, -2e9, 4.0, 5.0]  # 1 row x 4 pixels; pixels 1 and 2 are unknown
    flow = fl.read_flo(_write_bytes(tmp_path / "u.flo", _flo_bytes(b"PIEH", 4, 1, values)))
    assert np.isnan(flow[0, 1]).all() and np.isnan(flow[0, 2]).all()
    assert flow[0, 0].tolist() == [1.0, 2.0] and flow[0, 3].tolist() == [4.0, 5.0]
    assert fl.unknown_mask(flow).tolist() == [[False, True, True, False]]


def test_flo_exactly_at_threshold_is_still_known(tmp_path):
    flow = fl.read_flo(_write_bytes(tmp_path / "t.flo", _flo_bytes(b"PIEH", 1, 1, [1e9, -1e9])))
    assert flow[0, 0].tolist() == [1e9, -1e9]


def test_write_flo_stores_non_finite_pixels_as_unknown(tmp_path):
    flow = np.zeros((2, 2, 2), np.float32)
    flow[0, 1, 0] = np.nan
    flow[1, 0, 1] = np.inf
    fl.write_flo(tmp_path / "n.flo", flow)
    raw = np.frombuffer((tmp_path / "n.flo").read_bytes()[12:], "<f4").reshape(2, 2, 2)
    assert raw[0, 1].tolist() == [1e10, 1e10] and raw[1, 0].tolist() == [1e10, 1e10]
    back = fl.read_flo(tmp_path / "n.flo")
    assert fl.unknown_mask(back).tolist() == [[False, True], [True, False]]


def test_unknown_mask_and_known_valid_on_tensors():
    flow = torch.zeros(2, 2, 3, 4)
    flow[0, 0, 1, 2] = float("nan")
    flow[1, 1, 0, 0] = 5e9
    mask = fl.unknown_mask(flow)
    assert mask.shape == (2, 3, 4) and mask.sum() == 2 and mask[0, 1, 2] and mask[1, 0, 0]
    valid = fl.known_valid(flow)
    assert valid.shape == (2, 1, 3, 4) and valid.dtype == torch.float32
    assert torch.equal(valid[:, 0], (~mask).float())


@pytest.mark.parametrize("length", [0, 3, 4, 11])
def test_read_flo_rejects_a_truncated_header(tmp_path, length):
    path = _write_bytes(tmp_path / "short.flo", _flo_bytes(b"PIEH", 2, 2)[:length])
    with pytest.raises(fl.FlowFormatError, match="truncated .flo header") as info:
        fl.read_flo(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("tag", [b"HEIP", b"\x00\x00\x00\x00", b"PF\n1"])
def test_read_flo_rejects_a_wrong_tag(tmp_path, tag):
    path = _write_bytes(tmp_path / "tag.flo", _flo_bytes(tag, 1, 1, [0.0, 0.0]))
    with pytest.raises(fl.FlowFormatError, match="not a Middlebury .flo file") as info:
        fl.read_flo(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("width, height", [(0, 2), (2, 0), (-1, 2), (2, -5), (-(2**31), -(2**31))])
def test_read_flo_rejects_non_positive_dimensions(tmp_path, width, height):
    path = _write_bytes(tmp_path / "dims.flo", _flo_bytes(b"PIEH", width, height, [0.0] * 8))
    with pytest.raises(fl.FlowFormatError, match="must be positive"):
        fl.read_flo(path)


def test_read_flo_rejects_absurd_dimensions_without_allocating(tmp_path):
    path = _write_bytes(tmp_path / "huge.flo", _flo_bytes(b"PIEH", 2**31 - 1, 2**31 - 1, [0.0] * 2))
    with pytest.raises(fl.FlowFormatError, match="implausible size"):
        fl.read_flo(path)


def test_read_flo_checks_the_file_size_before_reading_large_declared_data(tmp_path):
    # Plausible dimensions (60000 x 60000 would need 28.8 GB) but a 20-byte file: rejected from the file size.
    path = _write_bytes(tmp_path / "big.flo", _flo_bytes(b"PIEH", 60000, 60000, [0.0] * 2))
    with pytest.raises(fl.FlowFormatError, match="truncated .flo data"):
        fl.read_flo(path)


@pytest.mark.parametrize("missing", [1, 4, 15])
def test_read_flo_rejects_truncated_data(tmp_path, missing):
    data = _flo_bytes(b"PIEH", 2, 2, [1.0] * 8)
    path = _write_bytes(tmp_path / "cut.flo", data[: len(data) - missing])
    with pytest.raises(fl.FlowFormatError, match="truncated .flo data") as info:
        fl.read_flo(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("extra", [b"\x00", b"\x00" * 4, b"garbage!"])
def test_read_flo_rejects_trailing_bytes(tmp_path, extra):
    path = _write_bytes(tmp_path / "long.flo", _flo_bytes(b"PIEH", 2, 1, [1.0] * 4) + extra)
    with pytest.raises(fl.FlowFormatError, match=f"{len(extra)} unexpected trailing bytes"):
        fl.read_flo(path)


def test_flow_format_error_is_a_user_input_value_error():
    assert issubclass(fl.FlowFormatError, UserInputError) and issubclass(fl.FlowFormatError, ValueError)


def test_read_flo_of_a_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        fl.read_flo(tmp_path / "nope.flo")


@pytest.mark.parametrize(
    "bad",
    [np.zeros((3, 4)), np.zeros((3, 4, 3)), np.zeros((2, 3, 4)), np.zeros((0, 4, 2)), np.zeros((2, 2, 2), complex)],
)
def test_write_flo_refuses_arrays_that_are_not_h_w_2_flows(tmp_path, bad):
    with pytest.raises(UserInputError):
        fl.write_flo(tmp_path / "bad.flo", bad)
    assert not (tmp_path / "bad.flo").exists()


def test_write_flo_refuses_tensors_and_points_to_flow_to_numpy(tmp_path):
    with pytest.raises(UserInputError, match="flow_to_numpy"):
        fl.write_flo(tmp_path / "t.flo", torch.zeros(1, 2, 3, 4))


def test_write_flo_is_atomic_a_failed_rename_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "keep.flo"
    fl.write_flo(path, np.ones((2, 2, 2), np.float32))
    before = path.read_bytes()

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(fl.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        fl.write_flo(path, np.zeros((5, 5, 2), np.float32))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.flo"]  # no temporary file left behind


def test_write_flo_creates_missing_folders(tmp_path):
    path = tmp_path / "a" / "b" / "f.flo"
    fl.write_flo(path, np.zeros((1, 1, 2), np.float32))
    assert fl.read_flo(path).shape == (1, 1, 2)


# ------------------------------------------------------------------------------------------------ .pfm


def test_pfm_little_endian_grey_file_written_by_hand_is_read_bottom_up(tmp_path):
    # The image is [[0, 1, 2], [10, 11, 12]] (2 rows); the file stores the bottom row first.
    header = b"Pf\n3 2\n-1.0\n"
    payload = struct.pack("<6f", 10, 11, 12, 0, 1, 2)
    path = _write_bytes(tmp_path / "grey.pfm", header + payload)
    image = fl.read_pfm(path)
    assert image.dtype == np.float32 and image.shape == (2, 3)
    assert image.tolist() == [[0, 1, 2], [10, 11, 12]]
    fl.write_pfm(tmp_path / "again.pfm", image)
    assert (tmp_path / "again.pfm").read_bytes() == header + payload


def test_pfm_big_endian_colour_file_written_by_hand_is_read_bottom_up(tmp_path):
    # 1 column, 2 rows, 3 channels: top pixel (1, 2, 3), bottom pixel (4, 5, 6); big-endian (positive scale).
    header = b"PF\n1 2\n1.0\n"
    payload = struct.pack(">6f", 4, 5, 6, 1, 2, 3)
    path = _write_bytes(tmp_path / "colour.pfm", header + payload)
    image = fl.read_pfm(path)
    assert image.shape == (2, 1, 3) and image.dtype == np.float32
    assert image[:, 0].tolist() == [[1, 2, 3], [4, 5, 6]]
    fl.write_pfm(tmp_path / "again.pfm", image, byteorder="big")
    assert (tmp_path / "again.pfm").read_bytes() == header + payload


def test_pfm_scale_magnitude_is_ignored_and_crlf_header_is_accepted(tmp_path):
    path = _write_bytes(tmp_path / "s.pfm", b"Pf\r\n1 1\r\n-255.0\r\n" + struct.pack("<f", 7.5))
    assert fl.read_pfm(path).tolist() == [[7.5]]


@FAST
@given(
    arrays(
        np.float32,
        st.tuples(st.integers(1, 7), st.integers(1, 7)).flatmap(
            lambda hw: st.sampled_from([hw, hw + (3,)])
        ),
        elements=st.floats(-(2.0**100), 2.0**100, allow_nan=False, width=32),
    ),
    st.sampled_from(["little", "big"]),
)
def test_pfm_round_trip_in_both_byte_orders(image, byteorder):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.pfm"
        fl.write_pfm(path, image, byteorder=byteorder)
        back = fl.read_pfm(path)
    np.testing.assert_array_equal(back, image)
    assert back.dtype == np.float32


@pytest.mark.parametrize(
    "data, message",
    [
        (b"P6\n1 1\n255\n" + b"\x00" * 3, "not a PFM file"),
        (b"PF\n", "truncated or malformed PFM header"),
        (b"PF\n1 1\n", "truncated or malformed PFM header"),
        (b"Pf", "truncated or malformed PFM header"),
        (b"Pf\n" + b"1" * 300, "truncated or malformed PFM header"),
        (b"Pf\nthree 2\n-1.0\n", "size line"),
        (b"Pf\n1 2 3\n-1.0\n", "size line"),
        (b"Pf\n1 1\nabc\n" + b"\x00" * 4, "not a number"),
        (b"Pf\n1 1\n0.0\n" + b"\x00" * 4, "non-zero"),
        (b"Pf\n0 1\n-1.0\n", "must be positive"),
        (b"Pf\n-3 1\n-1.0\n", "must be positive"),
        (b"Pf\n100000 100000\n-1.0\n", "implausible size"),
        (b"Pf\n2 2\n-1.0\n" + b"\x00" * 15, "truncated PFM data"),
        (b"PF\n2 2\n-1.0\n" + b"\x00" * 16, "truncated PFM data"),
        (b"Pf\n1 1\n-1.0\n" + b"\x00" * 5, "1 unexpected trailing bytes"),
        (b"\xff\xfe\n1 1\n-1.0\n", "not ASCII"),
    ],
)
def test_read_pfm_rejects_malformed_files(tmp_path, data, message):
    path = _write_bytes(tmp_path / "bad.pfm", data)
    with pytest.raises(fl.FlowFormatError, match=message) as info:
        fl.read_pfm(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("bad", [np.zeros((2, 2, 2)), np.zeros((2, 2, 4)), np.zeros(5), np.zeros((0, 3))])
def test_write_pfm_refuses_unsupported_shapes(tmp_path, bad):
    with pytest.raises(UserInputError):
        fl.write_pfm(tmp_path / "bad.pfm", bad)


# ------------------------------------------------------------------------------------------------ read_flow


def test_read_flow_keeps_the_first_two_channels_of_a_scene_flow_pfm(tmp_path):
    data = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    fl.write_pfm(tmp_path / "sf.pfm", data)
    flow = fl.read_flow(tmp_path / "sf.pfm")
    assert flow.shape == (2, 3, 2)
    np.testing.assert_array_equal(flow, data[..., :2])


def test_write_flow_and_read_flow_round_trip_both_formats(tmp_path):
    flow = np.random.default_rng(0).normal(size=(4, 5, 2)).astype(np.float32)
    flow[1, 2] = np.nan
    for name in ("f.flo", "f.PFM"):
        fl.write_flow(tmp_path / name, flow)
        np.testing.assert_array_equal(fl.read_flow(tmp_path / name), flow)  # NaN compares equal here


def test_read_flow_rejects_grey_pfm_and_unknown_suffixes(tmp_path):
    fl.write_pfm(tmp_path / "grey.pfm", np.zeros((2, 2), np.float32))
    with pytest.raises(fl.FlowFormatError, match="greyscale"):
        fl.read_flow(tmp_path / "grey.pfm")
    (tmp_path / "f.png").write_bytes(b"")
    with pytest.raises(fl.FlowFormatError, match="unknown flow file type"):
        fl.read_flow(tmp_path / "f.png")


# ------------------------------------------------------------------------------------------------ tensors


def test_flow_to_tensor_and_back_keep_channel_order():
    flow = np.zeros((3, 4, 2), np.float32)
    flow[..., 0] = 1.5  # u
    flow[..., 1] = -2.0  # v
    tensor = fl.flow_to_tensor(flow)
    assert tensor.shape == (1, 2, 3, 4) and tensor.dtype == torch.float32
    assert torch.all(tensor[:, 0] == 1.5) and torch.all(tensor[:, 1] == -2.0)
    np.testing.assert_array_equal(fl.flow_to_numpy(tensor), flow)
    np.testing.assert_array_equal(fl.flow_to_numpy(tensor[0]), flow)


def test_flow_to_numpy_refuses_a_batch_of_several_flows():
    with pytest.raises(UserInputError, match="one flow"):
        fl.flow_to_numpy(torch.zeros(2, 2, 3, 4))


# ------------------------------------------------------------------------------------------------ geometry


@pytest.mark.parametrize("mode", ["bilinear", "nearest", "area"])
def test_resize_flow_scales_u_by_width_ratio_and_v_by_height_ratio(mode):
    flow = torch.empty(1, 2, 8, 10)
    flow[:, 0], flow[:, 1] = 2.0, 3.0
    if mode == "area":  # area averaging only shrinks: 8x10 -> 4x5
        out = fl.resize_flow(flow, (4, 5), mode=mode)
        expected_u, expected_v = 1.0, 1.5
    else:
        out = fl.resize_flow(flow, (16, 5), mode=mode)
        expected_u, expected_v = 1.0, 6.0
    assert out.shape[-2:] == ((4, 5) if mode == "area" else (16, 5))
    torch.testing.assert_close(out[:, 0], torch.full_like(out[:, 0], expected_u))
    torch.testing.assert_close(out[:, 1], torch.full_like(out[:, 1], expected_v))


@FAST
@given(st.integers(1, 12), st.integers(1, 12), st.integers(1, 12), st.integers(1, 12), st.floats(-20, 20), st.floats(-20, 20))
def test_resize_flow_of_a_translation_is_the_scaled_translation(h, w, new_h, new_w, u, v):
    flow = torch.tensor([u, v], dtype=torch.float32).view(1, 2, 1, 1).expand(2, 2, h, w)
    out = fl.resize_flow(flow, (new_h, new_w))
    assert out.shape == (2, 2, new_h, new_w)
    expected = torch.tensor([u * new_w / w, v * new_h / h], dtype=torch.float32).view(1, 2, 1, 1)
    torch.testing.assert_close(out, expected.expand_as(out), rtol=1e-5, atol=1e-5)


def test_resize_flow_moves_a_point_to_the_resized_position():
    # Pixel centre x maps to (x + 0.5) * s - 0.5 under align_corners=False; a uniform flow of 4 px at width 8 is
    # 8 px at width 16, and the image-space displacement of every point doubles with it.
    flow = torch.zeros(1, 2, 4, 8)
    flow[:, 0] = 4.0
    big = fl.resize_flow(flow, (8, 16))
    image = torch.arange(16.0).view(1, 1, 1, 16).expand(1, 1, 8, 16)
    warped = warp(image, big)
    assert warped[0, 0, 3, 2].item() == 10.0  # pixel x = 2 reads x + 8


def test_resize_flow_rejects_bad_sizes_and_shapes():
    with pytest.raises(UserInputError):
        fl.resize_flow(torch.zeros(1, 2, 4, 4), (0, 3))
    with pytest.raises(UserInputError):
        fl.resize_flow(torch.zeros(1, 3, 4, 4), (2, 2))
    with pytest.raises(UserInputError):
        fl.resize_flow(torch.zeros(1, 2, 4, 4), (2, 2), mode="bicubic-ish")


def test_hflip_flow_mirrors_the_field_and_negates_u_only():
    flow = torch.zeros(1, 2, 2, 3)
    flow[0, 0, 0, 0] = 1.0  # u at the top-left pixel
    flow[0, 1, 1, 0] = 2.0  # v at the bottom-left pixel
    out = fl.hflip_flow(flow)
    assert out[0, 0, 0, 2].item() == -1.0 and out[0, 1, 1, 2].item() == 2.0
    assert out.abs().sum().item() == 3.0
    torch.testing.assert_close(fl.hflip_flow(out), flow)


@FAST
@given(st.integers(0, 10_000), st.integers(3, 10), st.integers(3, 10), st.floats(0.0, 4.0))
def test_warping_flipped_frames_with_the_flipped_flow_equals_flipping_the_warp(seed, h, w, amplitude):
    g = torch.Generator().manual_seed(seed)
    image_b = torch.rand(1, 3, h, w, generator=g)
    flow = (torch.rand(1, 2, h, w, generator=g) * 2 - 1) * amplitude
    warped, valid = warp(image_b, flow, return_valid=True)
    warped_flipped, valid_flipped = warp(image_b.flip(-1), fl.hflip_flow(flow), return_valid=True)
    inside = valid.flip(-1) * valid_flipped  # pixels whose samples land inside the frame in both pictures
    torch.testing.assert_close(warped_flipped * inside, warped.flip(-1) * inside, rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------------ colour


def test_wheel_has_55_hues_in_the_middlebury_segments():
    hues = fl.wheel_hues()
    assert hues.shape == (55, 3)
    assert hues[0].tolist() == [255, 0, 0]  # red
    assert hues[15].tolist() == [255, 255, 0]  # yellow starts the YG segment
    assert hues[21].tolist() == [0, 255, 0]  # green starts GC
    assert hues[25].tolist() == [0, 255, 255]  # cyan starts CB
    assert hues[36].tolist() == [0, 0, 255]  # blue starts BM
    assert hues[49].tolist() == [255, 0, 255]  # magenta starts MR


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_flow_to_rgb_matches_torchvision_flow_to_image(seed):
    g = torch.Generator().manual_seed(seed)
    flow = torch.randn(2, 2, 17, 23, generator=g) * (1 + 10 * seed)
    flow[0, :, 0, :5] = 0.0  # exact zeros and axis-aligned directions (signed zero matters for atan2)
    flow[1, 0, 3, :4] = torch.tensor([1.0, -1.0, 0.0, 0.0])
    flow[1, 1, 3, :4] = torch.tensor([0.0, 0.0, 1.0, -1.0])
    ours = fl.flow_to_rgb(flow)
    theirs = torchvision.utils.flow_to_image(flow)
    assert ours.dtype == torch.uint8 and ours.shape == theirs.shape == (2, 3, 17, 23)
    assert (ours.int() - theirs.int()).abs().max().item() <= 1
    # In practice they agree bit for bit; allow one level for float round-off on other platforms.
    assert (ours != theirs).float().mean().item() < 0.01
    torch.testing.assert_close(fl.flow_to_rgb(flow[0]), torchvision.utils.flow_to_image(flow[0]), atol=1, rtol=0)


def test_flow_to_rgb_of_numpy_returns_h_w_3_uint8_equal_to_the_tensor_path():
    flow = np.random.default_rng(3).normal(size=(5, 6, 2)).astype(np.float32)
    image = fl.flow_to_rgb(flow)
    assert image.shape == (5, 6, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, fl.flow_to_rgb(fl.flow_to_tensor(flow))[0].permute(1, 2, 0).numpy())


def test_flow_to_rgb_directions_zero_flow_and_unknown_pixels():
    flow = torch.tensor([[1.0, 0.0, 0.0, 0.0, float("nan")], [0.0, 0.0, 1.0, 0.0, 0.0]]).view(1, 2, 1, 5)
    image = fl.flow_to_rgb(flow, max_magnitude=1.0)[0, :, 0].T.tolist()
    assert image[0] == [255, 0, 0]  # motion to the right is red
    assert image[1] == [255, 255, 255]  # no motion is white
    assert image[2] == [255, 229, 0]  # motion down is yellow
    assert image[4] == [0, 0, 0]  # unknown flow is black


def test_flow_to_rgb_max_magnitude_sets_saturation_and_darkens_larger_motion():
    flow = torch.zeros(1, 2, 1, 3)
    flow[0, 0] = torch.tensor([2.5, 5.0, 10.0])  # half, full and twice the range, all to the right
    image = fl.flow_to_rgb(flow, max_magnitude=5.0)[0, :, 0].T.tolist()
    assert image[0] == [255, 127, 127] and image[1] == [255, 0, 0] and image[2] == [191, 0, 0]


def test_flow_to_rgb_ignores_unknown_pixels_when_normalising():
    flow = torch.zeros(1, 2, 1, 2)
    flow[0, 0, 0, 0] = 3.0
    flow[0, 0, 0, 1] = 1e10  # unknown
    image = fl.flow_to_rgb(flow)
    assert image[0, :, 0, 0].tolist() == [255, 0, 0] and image[0, :, 0, 1].tolist() == [0, 0, 0]


def test_color_wheel_legend_is_white_in_the_centre_and_outside_and_red_to_the_right():
    wheel = fl.color_wheel(21)
    assert wheel.shape == (21, 21, 3) and wheel.dtype == np.uint8
    assert wheel[10, 10].tolist() == [255, 255, 255]
    assert wheel[10, 20].tolist() == [255, 0, 0]
    assert wheel[0, 0].tolist() == [255, 255, 255]  # outside the disc
    assert wheel[20, 10].tolist() == [255, 229, 0]  # bottom: downward motion


@pytest.mark.parametrize("height, width", [(1, 1), (1, 5), (3, 1)])
def test_tiny_pfm_flows_read_as_writable_arrays_with_unknown_values_marked(tmp_path, height, width):
    """A one-row PFM used to come back as a read-only view of the file's bytes, and marking unknowns then failed."""
    image = np.zeros((height, width, 3), np.float32)
    image[0, 0, 0] = 2e9  # unknown
    path = tmp_path / "tiny.pfm"
    fl.write_pfm(path, image)
    flow = fl.read_flow(path)
    assert flow.shape == (height, width, 2) and flow.flags.writeable
    assert np.isnan(flow[0, 0]).all() and not np.isnan(flow.reshape(-1, 2)[1:]).any()
    assert fl.read_pfm(path).flags.writeable
