"""Live stylisation (reconet_lib.live): cameras (file, OpenCV, browser through a stand-in eval_js) and the live loop."""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch

from reconet_lib import codec, live, video
from reconet_lib.errors import UserInputError

from video_clips import smooth_clip


@pytest.fixture(scope="module")
def models():
    from reconet_lib.network import ReCoNet

    torch.manual_seed(0)
    a = ReCoNet.from_preset("tiny").eval()
    torch.manual_seed(1)
    b = ReCoNet.from_preset("tiny").eval()
    return {"baseline": a, "reconet": b}


@pytest.fixture()
def clip_file(tmp_path):
    return codec.write_video(tmp_path / "camera.mp4", smooth_clip(frames=5), fps=10)


def test_video_file_camera_plays_the_file_and_loops_like_a_camera(clip_file):
    expected = list(video.read_frames(clip_file))
    with live.VideoFileCamera(clip_file) as camera:
        got = [camera.read() for _ in range(7)]
    assert all(np.array_equal(g, e) for g, e in zip(got[:5], expected))
    assert np.array_equal(got[5], expected[0]) and np.array_equal(got[6], expected[1])
    once = live.VideoFileCamera(clip_file, loop=False, size=32)
    shapes = []
    while (frame := once.read()) is not None:
        shapes.append(frame.shape)
    assert shapes == [(24, 32, 3)] * 5


def test_auto_camera_without_a_device_falls_back_to_the_file(clip_file, monkeypatch):
    monkeypatch.delenv("RECONET_CAMERA", raising=False)
    monkeypatch.setattr(live, "camera_available", lambda index=0: False)
    monkeypatch.setattr(live, "on_colab", lambda: False)
    assert live.open_camera(video=clip_file).kind == "file"
    with pytest.raises(UserInputError, match="no camera found"):
        live.open_camera()
    monkeypatch.setenv("RECONET_CAMERA", "file")
    assert live.open_camera(video=clip_file).kind == "file"
    with pytest.raises(UserInputError, match="unknown camera kind"):
        live.open_camera("webcam")


def test_a_missing_opencv_camera_is_a_user_error_naming_the_file_fallback():
    if live.camera_available(97):
        pytest.skip("this machine has a camera 97")
    with pytest.raises(UserInputError, match="video file as the camera"):
        live.OpenCVCamera(97)


def _data_url(frame: np.ndarray, fmt: str = "png") -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format=fmt)
    return f"data:image/{fmt};base64," + base64.b64encode(buffer.getvalue()).decode()


class _FakePage:
    """Stands in for Colab's eval_js: records the scripts, answers grabs with given frames and button states."""

    def __init__(self, frames, choices, stops):
        self.scripts, self.replies = [], [
            json.dumps({"image": _data_url(f), "choice": c, "stop": s}) for f, c, s in zip(frames, choices, stops)]

    def __call__(self, script):
        self.scripts.append(script)
        return self.replies.pop(0) if "reconetCameraGrab(" in script and "window.reconetCameraGrab =" not in script else "ok"


def test_browser_camera_decodes_the_pages_frames_and_follows_its_buttons():
    frames = smooth_clip(frames=3)
    page = _FakePage(frames, ["reconet", "baseline", "baseline"], [False, False, True])
    camera = live.BrowserCamera(["baseline", "reconet"], width=64, eval_js=page)
    assert "getUserMedia" in page.scripts[0] and '["baseline", "reconet"], 64' in page.scripts[0]
    assert np.array_equal(camera.read(), frames[0]) and camera.choice == "reconet"
    assert np.array_equal(camera.read(), frames[1]) and camera.choice == "baseline"
    assert camera.read() is None and camera.stopped
    assert camera.read() is None
    camera.close()
    assert "reconetCameraClose" in page.scripts[-1]


def test_browser_camera_opens_the_camera_again_in_a_page_that_has_none():
    # Colab runs each cell's JavaScript in that cell's own output page: a read in a later cell finds no camera.
    frame = smooth_clip(frames=1)[0]
    page = _FakePage([frame, frame], ["reconet", "reconet"], [False, False])
    page.replies.insert(0, json.dumps({"missing": True}))
    camera = live.BrowserCamera(["reconet"], width=64, eval_js=page)
    assert np.array_equal(camera.read(), frame)
    starts = [s for s in page.scripts if "window.reconetCameraStart(" in s and "getUserMedia" in s]
    assert len(starts) == 2  # once at creation, once in the page that had none


def test_a_camera_the_browser_refuses_is_one_line_saying_how_to_allow_it_or_use_a_file():
    def refusing(script):
        return "refused: NotAllowedError: Permission denied" if "reconetCameraStart(" in script else "ok"

    with pytest.raises(UserInputError) as info:
        live.BrowserCamera(["reconet"], eval_js=refusing)
    message = str(info.value)
    assert len(message.splitlines()) == 1
    for needle in ("NotAllowedError: Permission denied", "allow camera access", "open_camera('file', video=PATH)"):
        assert needle in message


def test_browser_camera_outside_colab_and_a_refused_camera_are_user_errors():
    with pytest.raises(UserInputError, match="Colab only"):
        live.BrowserCamera()
    with pytest.raises(UserInputError, match="allow it"):
        live.decode_data_url("data:,")


def test_live_stylizer_stylises_with_the_chosen_network_and_counts_frame_rates(models, clip_file):
    stylizer = live.LiveStylizer(models, live.VideoFileCamera(clip_file))
    widget = stylizer.widget
    assert stylizer.play(frames=2) == 2 and stylizer.current == "reconet"
    stylizer._toggle.value = "baseline"  # what a click on the toggle does
    frame, out = stylizer.step()
    expected, _ = live.stylise_frame(models["baseline"], frame, torch.device("cpu"))
    assert np.array_equal(out, expected)
    assert len(stylizer.rates["reconet"].total) == 2 and len(stylizer.rates["baseline"].total) == 1
    rate = stylizer.rates["reconet"]
    assert rate.network_fps > 0 and rate.end_to_end_fps > 0 and rate.network_fps >= rate.end_to_end_fps
    assert "baseline" in stylizer._status.value and "frames/s end to end" in stylizer._status.value
    assert bytes(stylizer._image.value)[:2] == b"\xff\xd8"  # a JPEG
    assert "reconet-live" in widget._dom_classes


def test_live_stylizer_background_stream_stops_cleanly(models, clip_file):
    stylizer = live.LiveStylizer(models, live.VideoFileCamera(clip_file))
    stylizer.start()
    import time

    deadline = time.monotonic() + 30
    while stylizer.frames < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    stylizer.stop()
    count = stylizer.frames
    time.sleep(0.2)
    assert count >= 3 and stylizer.frames == count


def test_side_by_side_runs_the_same_frames_through_every_network(models, clip_file):
    inputs, outputs, rates = live.side_by_side(models, live.VideoFileCamera(clip_file), frames=3)
    assert inputs.shape == (3, 48, 64, 3) and set(outputs) == {"baseline", "reconet"}
    assert not np.array_equal(outputs["baseline"], outputs["reconet"])
    assert all(len(r.total) == 3 for r in rates.values())


def test_an_error_in_the_background_stream_is_raised_by_stop(models):
    class Broken(live.Camera):
        kind = "file"

        def read(self):
            raise UserInputError("camera unplugged")

    stylizer = live.LiveStylizer(models, Broken())
    stylizer.widget
    stylizer.start()
    stylizer._thread.join(timeout=30)
    assert "camera unplugged" in stylizer._status.value
    with pytest.raises(UserInputError, match="camera unplugged"):
        stylizer.stop()
    stylizer.stop()  # raised once; a second stop is quiet
