"""Video I/O: probing, decoding, encoding, frame folders (the stylising pipeline: test_stylize.py)."""
from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from reconet_lib import codec, frame_folders, video, video_html
from reconet_lib.frames import pad_to_even
from reconet_lib.errors import UserInputError

from video_clips import H, T, W, ffmpeg_streams, frame_and_audio_times, leftovers, make_clip_with_audio, smooth_clip


# ---------------------------------------------------------------------------------------------- writing and reading


def test_h264_round_trip_keeps_frame_count_size_fps_and_content(tmp_path):
    clip = smooth_clip()
    out = codec.write_video(tmp_path / "clip.mp4", clip, fps=12)
    info = video.probe(out)
    assert (info.frame_count, info.size, info.fps, info.has_audio) == (T, (H, W), 12.0, False)
    assert ffmpeg_streams(out) == ["Video"]
    decoded = np.stack(list(video.read_frames(out)))
    assert decoded.shape == clip.shape and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - clip).mean() < 3.0
    assert leftovers(tmp_path) == []


def test_ntsc_frame_rate_is_kept_exactly(tmp_path):
    out = codec.write_video(tmp_path / "ntsc.mp4", smooth_clip(frames=3), fps=30000 / 1001)
    assert video.probe(out).fps == pytest.approx(30000 / 1001, abs=1e-9)


def test_write_video_copies_the_source_audio_track(tmp_path):
    source = make_clip_with_audio(tmp_path / "with_audio.mp4")
    assert ffmpeg_streams(source) == ["Video", "Audio"]
    out = codec.write_video(tmp_path / "out.mp4", video.read_frames(source), fps=10, audio_from=source)
    assert sorted(ffmpeg_streams(out)) == ["Audio", "Video"]
    info = video.probe(out)
    assert info.has_audio and info.frame_count == T
    assert leftovers(tmp_path) == []


def test_audio_from_a_silent_source_gives_a_video_without_audio(tmp_path):
    silent = codec.write_video(tmp_path / "silent.mp4", smooth_clip(), fps=10)
    out = codec.write_video(tmp_path / "out.mp4", smooth_clip(), fps=10, audio_from=silent)
    assert ffmpeg_streams(out) == ["Video"]


def test_pad_to_even_repeats_the_last_row_and_column():
    frame = np.arange(17 * 33 * 3, dtype=np.int64).reshape(17, 33, 3).astype(np.uint8)
    padded = pad_to_even(frame)
    assert padded.shape == (18, 34, 3)
    np.testing.assert_array_equal(padded[:17, :33], frame)
    np.testing.assert_array_equal(padded[17, :33], frame[16])
    np.testing.assert_array_equal(padded[:17, 33], frame[:, 32])
    even = frame[:16, :32]
    assert pad_to_even(even) is even


def test_odd_frame_size_is_padded_one_pixel_right_bottom_not_resized(tmp_path):
    # Grey content: yuv420p keeps brightness at full resolution, so only the geometry is being tested.
    y, x = np.mgrid[0:17, 0:33]
    grey = (6 * x + 3 * y).astype(np.uint8)
    clip = np.stack([np.dstack([grey] * 3)] * 4)
    out = codec.write_video(tmp_path / "odd.mp4", clip, fps=10)
    assert video.probe(out).size == (18, 34)
    decoded = np.stack(list(video.read_frames(out))).astype(int)
    assert decoded.shape == (4, 18, 34, 3)
    # Content stays where it was (a resize would shift the gradient by a fraction of a pixel everywhere).
    assert np.abs(decoded[:, :17, :33] - clip).mean() < 1.5
    assert np.abs(decoded[:, 17, :33] - clip[:, 16]).mean() < 1.5
    assert np.abs(decoded[:, :17, 33] - clip[:, :, 32]).mean() < 1.5


def test_frame_folder_is_read_in_natural_order_whatever_the_case_of_the_suffix(tmp_path):
    values = {"frame_10.png": 10, "frame_2.PNG": 2, "frame_1.bmp": 1, "frame_9.Png": 9, "frame_100.png": 100}
    for name, value in values.items():
        Image.fromarray(np.full((6, 5, 3), value, np.uint8)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not a frame")
    Image.fromarray(np.zeros((6, 5, 3), np.uint8)).save(tmp_path / ".hidden.png")
    frames = list(video.read_frames(tmp_path))
    assert [int(f[0, 0, 0]) for f in frames] == [1, 2, 9, 10, 100]
    info = video.probe(tmp_path)
    assert (info.frame_count, info.size, info.fps, info.has_audio) == (5, (6, 5), None, False)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=20, unique=True))
def test_natural_key_orders_numbered_frames_by_number(numbers):
    names = [f"frame_{n}.png" for n in numbers]
    assert sorted(names, key=frame_folders.natural_key) == [f"frame_{n}.png" for n in sorted(numbers)]


def test_grey_and_rgba_frames_become_rgb(tmp_path):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    rgba = np.dstack([np.full((3, 4), c, np.uint8) for c in (10, 20, 30, 40)])
    frames = list(video.read_frames([grey, rgba]))
    np.testing.assert_array_equal(frames[0], np.dstack([grey] * 3))
    np.testing.assert_array_equal(frames[1][1, 1], [10, 20, 30])
    Image.fromarray(grey, mode="L").save(tmp_path / "a_1.png")
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a_2.png")
    from_files = list(video.read_frames(tmp_path))
    np.testing.assert_array_equal(from_files[0], frames[0])
    np.testing.assert_array_equal(from_files[1], frames[1])


def test_read_frames_resizes_to_the_longer_side_or_to_height_width():
    clip = smooth_clip(frames=2)
    assert next(video.read_frames(clip, size=32)).shape == (24, 32, 3)
    assert next(video.read_frames(clip, size=(20, 30))).shape == (20, 30, 3)
    with pytest.raises(UserInputError, match="size"):
        next(video.read_frames(clip, size=0))


def test_frames_of_different_sizes_are_refused():
    frames = [np.zeros((4, 4, 3), np.uint8), np.zeros((4, 6, 3), np.uint8)]
    with pytest.raises(UserInputError, match="same size"):
        list(video.read_frames(frames))


def test_float_frames_are_refused_with_a_hint():
    with pytest.raises(UserInputError, match="uint8"):
        list(video.read_frames([np.zeros((4, 4, 3), np.float32)]))


@pytest.mark.parametrize("kind", ["missing", "empty_folder", "empty_file", "not_a_video"])
def test_bad_sources_raise_an_error_that_names_the_path(tmp_path, kind):
    path = tmp_path / kind
    if kind == "empty_folder":
        path.mkdir()
    elif kind == "empty_file":
        path = tmp_path / "empty.mp4"
        path.write_bytes(b"")
    elif kind == "not_a_video":
        path = tmp_path / "notes.mp4"
        path.write_text("this is text, not a video\n" * 20)
    with pytest.raises(UserInputError) as info:
        video.probe(path)
    assert str(path) in str(info.value)
    with pytest.raises(UserInputError):
        list(video.read_frames(path))


def test_empty_frame_list_is_refused():
    with pytest.raises(UserInputError, match="empty"):
        video.probe([])


def test_write_frames_writes_numbered_pngs_and_replaces_an_earlier_output(tmp_path):
    folder = tmp_path / "frames"
    frame_folders.write_frames(folder, smooth_clip(frames=3, height=7, width=9))
    assert sorted(p.name for p in folder.iterdir()) == ["frame_00001.png", "frame_00002.png", "frame_00003.png",
                                                       frame_folders.TIMES_NAME]
    np.testing.assert_array_equal(np.stack(list(video.read_frames(folder))), smooth_clip(frames=3, height=7, width=9))
    frame_folders.write_frames(folder, smooth_clip(frames=2))
    assert len(list(folder.iterdir())) == 2 + 1  # two frames and their times
    assert leftovers(tmp_path) == []


def test_write_frames_refuses_a_folder_with_other_files(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(UserInputError, match="other files"):
        frame_folders.write_frames(tmp_path, smooth_clip(frames=1))
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_failed_write_leaves_no_partial_file_under_the_final_name(tmp_path):
    def frames_then_failure():
        yield from smooth_clip(frames=3)
        raise RuntimeError("decoder crashed")

    with pytest.raises(RuntimeError, match="decoder crashed"):
        codec.write_video(tmp_path / "out.mp4", frames_then_failure(), fps=10)
    with pytest.raises(RuntimeError, match="decoder crashed"):
        frame_folders.write_frames(tmp_path / "frames", frames_then_failure())
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_previous_file(tmp_path):
    out = codec.write_video(tmp_path / "out.mp4", smooth_clip(), fps=10)
    before = out.read_bytes()
    with pytest.raises(UserInputError, match="same size"):
        codec.write_video(out, [smooth_clip()[0], np.zeros((8, 8, 3), np.uint8)], fps=10)
    assert out.read_bytes() == before and leftovers(tmp_path) == []


def test_write_video_refuses_other_suffixes_and_empty_input(tmp_path):
    with pytest.raises(UserInputError, match=".mp4"):
        codec.write_video(tmp_path / "out.avi", smooth_clip(), fps=10)
    with pytest.raises(UserInputError, match="no frames"):
        codec.write_video(tmp_path / "out.mp4", [], fps=10)
    assert list(tmp_path.iterdir()) == []


def test_show_video_embeds_the_mp4_as_base64(tmp_path):
    import base64

    out = codec.write_video(tmp_path / "clip.mp4", smooth_clip(frames=2), fps=10)
    html = video_html.show_video(out, width=320).data
    assert html.startswith('<video width="320" controls')
    payload = re.search(r'src="data:video/mp4;base64,([^"]+)"', html).group(1)
    assert base64.b64decode(payload) == out.read_bytes()


def test_probe_reads_the_container_exact_rate_count_and_audio(tmp_path):
    source = make_clip_with_audio(tmp_path / "ntsc.mp4", fps="30000/1001")
    info = video.probe(source)
    assert info.fps == 30000 / 1001 and info.frame_count == T and info.has_audio


def test_variable_frame_rate_video_decodes_every_frame_once(tmp_path):
    path = tmp_path / "vfr.mp4"
    subprocess.run(
        [codec.ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size={W}x{H}:rate=30",
         "-frames:v", "30", "-vf", "setpts='if(lt(N,10),N*3,30+(N-10)*0.5)/30/TB'", "-fps_mode", "vfr",
         "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)], check=True, capture_output=True)
    assert video.probe(path).frame_count == 30
    assert len(list(video.read_frames(path))) == 30  # no frame duplicated or dropped to reach a constant rate


def test_rotated_video_is_read_upright_at_the_size_probe_reports(tmp_path):
    plain = codec.write_video(tmp_path / "plain.mp4", smooth_clip(frames=2), fps=10)
    rotated = tmp_path / "rotated.mp4"
    made = subprocess.run([codec.ffmpeg_exe(), "-v", "error", "-y", "-display_rotation", "90", "-i", str(plain),
                           "-c", "copy", str(rotated)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("this ffmpeg cannot set a display rotation")
    assert video.probe(rotated).size == (W, H)
    assert next(video.read_frames(rotated)).shape == (W, H, 3)


def test_audio_an_mp4_cannot_hold_is_re_encoded_as_aac_at_full_length(tmp_path):
    source = tmp_path / "pcm.mov"
    subprocess.run([codec.ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size={W}x{H}:rate=10:d=1",
                    "-f", "lavfi", "-i", "sine=duration=2", "-c:v", "mjpeg", "-c:a", "pcm_s16le", str(source)],
                   check=True, capture_output=True)
    out = codec.write_video(tmp_path / "out.mp4", video.read_frames(source), fps=10, audio_from=source)
    import av

    with av.open(str(out)) as container:
        assert container.streams.audio[0].codec_context.name == "aac"
    assert frame_and_audio_times(out)[1] == pytest.approx(2.0, abs=0.05)
    assert leftovers(tmp_path) == []
