"""Live stylisation: a camera stream through a trained network, with its frame rate (network alone and end to end).

Cameras (each yields ``(H, W, 3)`` uint8 RGB frames from :meth:`Camera.read`, ``None`` when it has no more):

* :class:`OpenCVCamera`: a local camera through OpenCV (``cv2.VideoCapture(index)``);
* :class:`BrowserCamera`: on Google Colab, the camera of the *browser* (the notebook runs on a remote machine
  that has none): a little JavaScript shows the camera, draws a frame onto a canvas and hands it to Python
  through ``google.colab.output.eval_js`` as a JPEG data URL; its buttons choose the network and stop;
* :class:`VideoFileCamera`: a video file (or frame folder) played as a camera, so that headless runs (CI,
  nbval) run the same code.

:func:`open_camera` picks one (``"auto"``: the browser on Colab, else a local camera if one is there, else the
video file). :class:`LiveStylizer` stylises frame by frame with the network chosen by its toggle buttons and
shows the result with the frame rates; :func:`side_by_side` stylises a few frames with every network for a
static figure.
"""
from __future__ import annotations

import base64
import io
import json
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import cv2
import ipywidgets as widgets
import torch
from PIL import Image

from . import images
from .errors import UserInputError
from .precision import synchronize
from .sizes import Size, check_size, resolve_size
from .video import read_frames

CAMERA_KINDS = ("auto", "opencv", "browser", "file")


def _resize(frame: np.ndarray, size: Size | None) -> np.ndarray:
    if size is None:
        return frame
    h, w = resolve_size(size, frame.shape[:2])
    if (h, w) == frame.shape[:2]:
        return frame
    return images.resize_pixels(frame, (h, w))


class Camera:
    """A source of frames: :meth:`read` gives ``(H, W, 3)`` uint8 RGB or ``None``; :meth:`close` frees it.

    Attributes:
        kind: ``"opencv"``, ``"browser"`` or ``"file"``.
        choice: the network the camera's own controls chose (the browser camera's buttons), else None.
        stopped: True once the camera's own controls asked to stop.
    """

    kind = "none"
    choice: str | None = None
    stopped = False

    def read(self) -> np.ndarray | None:
        raise NotImplementedError

    def close(self) -> None:
        """Release the device or file (idempotent)."""

    def __enter__(self) -> "Camera":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoFileCamera(Camera):
    """A video file or frame folder played as a camera (:func:`reconet_lib.video.read_frames`).

    Args:
        source: video file, frame folder, or ``(T, H, W, 3)`` uint8 frames.
        size: resize each frame (``N`` = longer side, ``(h, w)`` exactly; :mod:`reconet_lib.sizes`).
        loop: start again at the end (a camera never runs out); False: ``read`` returns None at the end.
    """

    kind = "file"

    def __init__(self, source, *, size: Size | None = None, loop: bool = True):
        self.source, self.size, self.loop = source, check_size(size), loop
        self._read_frames = read_frames
        self._frames = read_frames(source, size=self.size)
        self._delivered = False

    def read(self) -> np.ndarray | None:
        frame = next(self._frames, None)
        if frame is None and self.loop and self._delivered:
            self._frames = self._read_frames(self.source, size=self.size)
            frame = next(self._frames, None)
        self._delivered |= frame is not None
        return frame

    def close(self) -> None:
        close = getattr(self._frames, "close", None)
        if close is not None:
            close()


def camera_available(index: int = 0) -> bool:
    """Whether OpenCV can open camera ``index``, asked without OpenCV's warnings on stderr.

    On Linux a missing ``/dev/video<index>`` answers no at once (no device is opened).
    """
    if sys.platform.startswith("linux") and not Path(f"/dev/video{index}").exists():
        return False
    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        capture = cv2.VideoCapture(index)
        ok = capture.isOpened()
        capture.release()
        return ok
    finally:
        cv2.utils.logging.setLogLevel(previous)


class OpenCVCamera(Camera):
    """A local camera through OpenCV.

    Args:
        index: the camera's number (0 = the default camera).
        size: resize each frame (see :class:`VideoFileCamera`).
    """

    kind = "opencv"

    def __init__(self, index: int = 0, *, size: Size | None = None):
        self.size = check_size(size)
        self._capture = cv2.VideoCapture(index)
        if not self._capture.isOpened():
            self._capture.release()
            raise UserInputError(f"OpenCV could not open camera {index}; check that it is connected and free, or use "
                                 "a video file as the camera: open_camera('file', video=PATH)")

    def read(self) -> np.ndarray | None:
        ok, frame = self._capture.read()
        if not ok:
            return None
        return _resize(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), self.size)

    def close(self) -> None:
        self._capture.release()


#: The browser side of :class:`BrowserCamera`: a preview with one button per network and a stop button
#: (``reconetCameraStart`` answers ``"ok"``, or ``"refused: <error>"`` when the browser gives no camera), and a
#: function that returns the current frame as a JPEG data URL with the buttons' state (``{"missing": true}`` in
#: a page where no camera was started). Checked in headless Chromium with its fake camera (tests/test_browser.py).
BROWSER_JS = r"""
window.reconetCameraStart = async function (names, width) {
  if (window.reconetCamera) return 'ok';
  const box = document.createElement('div');
  const video = document.createElement('video');
  video.playsInline = true; video.muted = true; video.style.width = width + 'px';
  const state = {video: video, box: box, choice: names[names.length - 1], stop: false};
  for (const name of names) {
    const button = document.createElement('button');
    button.textContent = name; button.onclick = () => { state.choice = name; };
    box.appendChild(button);
  }
  const stop = document.createElement('button');
  stop.textContent = 'stop'; stop.onclick = () => { state.stop = true; };
  box.appendChild(stop); box.appendChild(document.createElement('br')); box.appendChild(video);
  document.body.appendChild(box);
  try {  // no camera, access refused, or a page that is not a secure context (no navigator.mediaDevices)
    state.stream = await navigator.mediaDevices.getUserMedia({video: true});
  } catch (error) {
    box.remove();
    return 'refused: ' + (error && error.name ? error.name + ': ' + error.message : String(error));
  }
  video.srcObject = state.stream;
  await video.play();
  if (window.google && google.colab && google.colab.output) google.colab.output.setIframeHeight(document.documentElement.scrollHeight, true);
  window.reconetCamera = state;
  return 'ok';
};
window.reconetCameraGrab = function (width, quality) {
  const state = window.reconetCamera;
  if (!state) return JSON.stringify({missing: true});
  const video = state.video;
  const height = Math.round(video.videoHeight * width / video.videoWidth);
  const canvas = document.createElement('canvas');
  canvas.width = width; canvas.height = height;
  canvas.getContext('2d').drawImage(video, 0, 0, width, height);
  return JSON.stringify({image: canvas.toDataURL('image/jpeg', quality), choice: state.choice, stop: state.stop});
};
window.reconetCameraClose = function () {
  const state = window.reconetCamera;
  if (!state) return true;
  state.stream.getTracks().forEach(track => track.stop());
  state.box.remove();
  delete window.reconetCamera;
  return true;
};
"""


def decode_data_url(url: str) -> np.ndarray:
    """A ``data:image/...;base64,...`` URL -> ``(H, W, 3)`` uint8 RGB."""
    if not isinstance(url, str) or not url.startswith("data:image/") or ";base64," not in url:
        raise UserInputError("the browser sent no camera image (did it refuse camera access? allow it and rerun)")
    data = base64.b64decode(url.split(";base64,", 1)[1])
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB")).copy()


class BrowserCamera(Camera):
    """The browser's camera on Google Colab, through JavaScript (``google.colab.output.eval_js``).

    Each :meth:`read` asks the page for one frame (a JPEG data URL), so the frame rate includes the trip from the
    browser to the Colab machine. The page shows the camera with one button per network name (their choice is in
    :attr:`choice`) and a stop button (:attr:`stopped`). Colab runs each cell's JavaScript in that cell's output
    page, so a :meth:`read` in another cell than the one that opened the camera finds no camera there and opens it
    again in its own output (the grab asks first, it never fails on a page without the camera).

    Args:
        names: the network names for the page's buttons.
        width: width in pixels of the frames sent to Python.
        quality: JPEG quality in (0, 1].
        eval_js: the function that runs JavaScript in the page and returns its value (default: Colab's).
    """

    kind = "browser"

    def __init__(self, names=("reconet",), *, width: int = 320, quality: float = 0.8,
                 eval_js: Callable[[str], object] | None = None):
        if eval_js is None:
            try:
                from google.colab.output import eval_js  # in function: the module exists on Colab only
            except ImportError:
                raise UserInputError("the browser camera works on Google Colab only; locally use open_camera('opencv') "
                                     "or a video file: open_camera('file', video=PATH)") from None
        self._eval_js, self.width, self.quality = eval_js, int(width), float(quality)
        self.names = list(names)
        self.choice = self.names[-1]
        self._start()

    def _start(self) -> None:
        """Show the preview and buttons in the current page and open the camera there."""
        reply = self._eval_js(BROWSER_JS + f"\nwindow.reconetCameraStart({json.dumps(self.names)}, {self.width});")
        if reply != "ok":
            why = str(reply).removeprefix("refused: ")[:160]
            raise UserInputError(f"the browser gave no camera ({why}); allow camera access for this page and rerun, "
                                 "or play a video file as the camera: open_camera('file', video=PATH)")

    def _grab(self) -> dict:
        # Self-contained: in a page where BROWSER_JS never ran, it answers "missing" instead of failing.
        script = (f"window.reconetCameraGrab ? window.reconetCameraGrab({self.width}, {self.quality}) "
                  ": JSON.stringify({missing: true})")
        return json.loads(self._eval_js(script))

    def read(self) -> np.ndarray | None:
        if self.stopped:
            return None
        reply = self._grab()
        if reply.get("missing"):  # Colab gives each cell's output its own page: open the camera in this one
            self._start()
            reply = self._grab()
        self.choice, self.stopped = reply.get("choice", self.choice), bool(reply.get("stop"))
        return None if self.stopped else decode_data_url(reply.get("image"))

    def close(self) -> None:
        self._eval_js("window.reconetCameraClose && window.reconetCameraClose()")


def on_colab() -> bool:
    """True inside a Google Colab kernel."""
    return "google.colab" in sys.modules


def open_camera(kind: str = "auto", *, video=None, index: int = 0, size: Size | None = None,
                names=("reconet",)) -> Camera:
    """Open a camera.

    Args:
        kind: ``"auto"`` (Colab: the browser; else a local camera when :func:`camera_available`; else the video
            file), ``"opencv"``, ``"browser"`` or ``"file"``. ``$RECONET_CAMERA`` overrides ``"auto"``.
        video: the video file (or frames) that ``"file"`` plays, and ``"auto"`` falls back to.
        index: the OpenCV camera number.
        size: resize frames (OpenCV and file cameras; the browser camera sends ``width`` 320).
        names: the network names (the browser camera's buttons).
    """
    if kind == "auto":
        kind = os.environ.get("RECONET_CAMERA", "auto") or "auto"
    if kind not in CAMERA_KINDS:
        raise UserInputError(f"unknown camera kind {kind!r}; choose one of {', '.join(CAMERA_KINDS)}")
    if kind == "auto":
        kind = "browser" if on_colab() else "opencv" if camera_available(index) else "file"
        if kind == "file" and video is None:
            raise UserInputError("no camera found and no video file given; pass video=PATH to play a file as the camera")
    if kind == "browser":
        return BrowserCamera(names)
    if kind == "opencv":
        return OpenCVCamera(index, size=size)
    if video is None:
        raise UserInputError("a file camera needs video=PATH (a video file or a folder of frames)")
    return VideoFileCamera(video, size=size)


# --------------------------------------------------------------------------------------------- stylising


class FrameRate:
    """Frames per second over the last ``window`` frames, for the network alone and end to end."""

    def __init__(self, window: int = 30):
        self.network: deque[float] = deque(maxlen=window)
        self.total: deque[float] = deque(maxlen=window)

    def add(self, network_seconds: float, total_seconds: float) -> None:
        self.network.append(network_seconds)
        self.total.append(total_seconds)

    @staticmethod
    def _fps(values) -> float:
        return len(values) / sum(values) if values and sum(values) > 0 else float("nan")

    @property
    def network_fps(self) -> float:
        """Frames per second of the network alone (forward pass, synchronised on a GPU)."""
        return self._fps(self.network)

    @property
    def end_to_end_fps(self) -> float:
        """Frames per second end to end: read, convert, stylise, convert back (and show, in the widget)."""
        return self._fps(self.total)

    def text(self) -> str:
        return (f"{self.end_to_end_fps:.1f} frames/s end to end, network alone {self.network_fps:.1f} frames/s "
                f"(last {len(self.total)} frames)")


def stylise_frame(model: torch.nn.Module, frame: np.ndarray, device: torch.device) -> tuple[np.ndarray, float]:
    """One ``(H, W, 3)`` uint8 frame through ``model``; returns the uint8 output and the network's seconds."""
    x = images.to_float(torch.from_numpy(np.require(frame, np.uint8, ["C", "W"])).to(device))[None]
    synchronize(device)
    start = time.perf_counter()
    with torch.inference_mode():
        y = model(x)
    synchronize(device)
    seconds = time.perf_counter() - start
    out = images.to_uint8(y[0])
    return out, seconds


class LiveStylizer:
    """Stylise a camera frame by frame with one of several networks, switchable while it runs.

    Args:
        models: ``{name: network}`` (e.g. ``{"baseline": ..., "reconet": ...}``), each taking and returning
            ``(B, 3, H, W)`` images in [0, 1] (eval mode).
        camera: a :class:`Camera`.
        device: where the networks run (they are moved there).
        window: frames over which the frame rates are averaged.
    """

    def __init__(self, models: Mapping[str, torch.nn.Module], camera: Camera, *, device="cpu", window: int = 30):
        if not models:
            raise UserInputError("give at least one network, e.g. {'reconet': model}")
        self.device = torch.device(device)
        self.models = {name: m.to(self.device).eval() for name, m in models.items()}
        self.camera = camera
        self.current = list(self.models)[-1]
        self.rates = {name: FrameRate(window) for name in self.models}
        self.frames = 0
        self._widget = None

    def select(self, name: str) -> None:
        """Stylise with the network called ``name`` from the next frame on."""
        if name not in self.models:
            raise UserInputError(f"unknown network {name!r}; choose one of {list(self.models)}")
        self.current = name
        if self._widget is not None and self._toggle.value != name:
            self._toggle.value = name

    def step(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Read one frame, stylise it with the current network and update the widget; None when the camera ends."""
        start = time.perf_counter()
        frame = self.camera.read()
        if frame is None:
            return None
        if self.camera.choice in self.models and self.camera.choice != self.current:
            self.select(self.camera.choice)  # the browser camera's own buttons
        name = self.current
        out, seconds = stylise_frame(self.models[name], frame, self.device)
        if self._widget is not None:
            self._image.value = _jpeg(out)
        self.rates[name].add(seconds, time.perf_counter() - start)
        self.frames += 1
        if self._widget is not None:
            self._status.value = f"<b>{name}</b>: {self.rates[name].text()}"
        return frame, out

    def play(self, *, frames: int | None = None, seconds: float | None = None) -> int:
        """Run :meth:`step` until ``frames`` frames or ``seconds`` seconds (or the camera ends); returns the count.

        It runs in the foreground: on Colab the page's buttons switch the network meanwhile; in Jupyter, the
        toggle buttons take effect between calls (or use :meth:`start` for a background loop).
        """
        if frames is None and seconds is None:
            raise UserInputError("play needs frames=N or seconds=S (use start() for an open-ended stream)")
        done, end = 0, time.perf_counter() + seconds if seconds is not None else float("inf")
        while (frames is None or done < frames) and time.perf_counter() < end:
            if self.step() is None:
                break
            done += 1
        return done

    def start(self) -> None:
        """Stream in a background thread (local cameras), so the toggle switches the network live; :meth:`stop` ends it."""
        self.stop()
        self._stop = threading.Event()
        self.error = None

        def loop():
            try:
                while not self._stop.is_set() and self.step() is not None:
                    pass
            except Exception as exc:  # kept for stop() to raise in the notebook, and shown in the widget
                self.error = exc
                if self._widget is not None:
                    self._status.value = f"<b>stopped</b>: {type(exc).__name__}: {exc}"

        self._thread = threading.Thread(target=loop, name="reconet-live", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the background stream (if any), wait for it, and raise the error that ended it early (if one did)."""
        thread = getattr(self, "_thread", None)
        if thread is not None:
            self._stop.set()
            thread.join()
            self._thread = None
        error, self.error = getattr(self, "error", None), None
        if error is not None:
            raise error

    @property
    def widget(self):
        """Toggle buttons (which network), the stylised frame and the frame rates (ipywidgets)."""
        if self._widget is None:
            self._toggle = widgets.ToggleButtons(options=list(self.models), value=self.current, description="network")
            self._toggle.style.button_width = "auto"
            self._toggle.observe(lambda change: self.select(change["new"]), names="value")
            self._image = widgets.Image(format="jpeg", layout=widgets.Layout(width="100%", max_width="640px",
                                                                              height="auto"))
            self._status = widgets.HTML(layout=widgets.Layout(width="auto"))
            self._widget = widgets.VBox([self._toggle, self._image, self._status], layout=widgets.Layout(width="100%"))
            self._widget.add_class("reconet-live")
        return self._widget


def _jpeg(frame: np.ndarray, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="jpeg", quality=quality)
    return buffer.getvalue()


def side_by_side(models: Mapping[str, torch.nn.Module], camera: Camera, *, frames: int = 4,
                 device="cpu") -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, FrameRate]]:
    """The same ``frames`` camera frames through every network (for a static figure in headless runs).

    Returns:
        ``(inputs, outputs, rates)``: ``(N, H, W, 3)`` uint8 inputs, ``{name: (N, H, W, 3)}`` outputs and
        ``{name: FrameRate}`` (end to end here = the network plus the conversions, the camera read excluded).
    """
    device = torch.device(device)
    inputs = []
    for _ in range(frames):
        frame = camera.read()
        if frame is None:
            break
        inputs.append(frame)
    if not inputs:
        raise UserInputError("the camera gave no frame")
    outputs, rates = {}, {}
    for name, model in models.items():
        model = model.to(device).eval()
        rates[name] = FrameRate(len(inputs))
        stylised = []
        for frame in inputs:
            start = time.perf_counter()
            out, seconds = stylise_frame(model, frame, device)
            rates[name].add(seconds, time.perf_counter() - start)
            stylised.append(out)
        outputs[name] = np.stack(stylised)
    return np.stack(inputs), outputs, rates
