"""The library's browser code in a real browser, headless Chromium.

* Notebook 07's TemporalExplorer in JupyterLab on 127.0.0.1: it opens a copy of notebook 07, runs every cell,
  moves the frame slider, switches the version and moves the consistency slider, and checks that the panel images
  and the consistency table follow and that nothing in the widget overflows horizontally at a 1400 px wide window.
* Notebook 08's Colab camera (``live.BrowserCamera``): the exact JavaScript it sends to Colab runs in a page
  served from 127.0.0.1 with Chromium's fake camera (a generated test pattern), through a stand-in for Colab's
  ``eval_js`` (evaluate in the page, wait for a promise, return the value); the frames it captures are decoded by
  the library's Python side. A second Chromium that refuses camera access checks the refusal's message.

Runs where Debian's ``chromium`` and ``chromium-driver`` are installed (``.ci/run`` installs them) and the
``selenium`` package is present; skipped otherwise. Nothing leaves the machine: the server listens on 127.0.0.1
with a random token, the browser starts with an empty profile and its network features off.
"""
from __future__ import annotations

import base64
import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "07_temporal_consistency.ipynb"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WINDOW = (1400, 1000)
#: Seconds the notebook may take to run up to the explorer (it trains the tutorial models if they are not cached).
RUN_TIMEOUT_S = 420

pytestmark = [
    pytest.mark.skipif(
        not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
        reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
    ),
]
webdriver = pytest.importorskip("selenium.webdriver", reason="needs the selenium package (the test extra)")

from selenium.common.exceptions import StaleElementReferenceException, TimeoutException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

EXPLORER = ".reconet-temporal-explorer"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, process: subprocess.Popen, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer {url} within {timeout_s} s")


@pytest.fixture()
def lab(tmp_path):
    """A JupyterLab server on 127.0.0.1 whose root holds a copy of notebook 07 (outputs cleared)."""
    pytest.importorskip("jupyterlab", reason="needs JupyterLab")
    import nbformat

    from reconet_lib.config import data_dir

    root = tmp_path / "root"
    root.mkdir()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(nb, root / NOTEBOOK.name)

    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ)
    env.update({
        "RECONET_QUICK": "1",
        "RECONET_DATA": str(data_dir()),  # the same cache of tutorial checkpoints the notebooks use
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
    })
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ] + (["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])  # CI containers run as root
    log = open(tmp_path / "jupyterlab.log", "wb")
    process = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_for_server(f"{base}/api/status?token={token}", process)
        except (RuntimeError, TimeoutError) as exc:
            log.flush()
            tail = (tmp_path / "jupyterlab.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{exc}; its log ends:\n{tail}") from None
        yield f"{base}/lab/tree/{NOTEBOOK.name}?token={token}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _chromium(profile: Path, *flags: str):
    """Headless Chromium with an empty profile and its network features off, plus ``flags``."""
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                 f"--window-size={WINDOW[0]},{WINDOW[1]}", *flags):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.fixture()
def browser(tmp_path):
    driver = _chromium(tmp_path / "profile")
    try:
        yield driver
    finally:
        driver.quit()


def _click_menu(driver, menu: str, item: str) -> None:
    wait = WebDriverWait(driver, 30)
    wait.until(lambda d: [e for e in d.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-itemLabel") if e.text == menu])
    next(e for e in driver.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-itemLabel") if e.text == menu).click()
    entry = wait.until(lambda d: next(
        (e for e in d.find_elements(By.CSS_SELECTOR, ".lm-Menu-itemLabel") if e.text == item and e.is_displayed()), None))
    entry.click()


def _panel_sources(explorer) -> list[str]:
    """The ``src`` of every image in the explorer: the five panels, then the error plot."""
    return [img.get_attribute("src") for img in explorer.find_elements(By.CSS_SELECTOR, "img")]


def _wait_for_panels(browser, explorer, before: list[str], changed: tuple[int, ...], message: str) -> list[str]:
    """The panel sources once every panel in ``changed`` differs from ``before`` (up to 30 s; else fail with ``message``)."""
    def ready(_):
        now = _panel_sources(explorer)
        return now if all(now[i] != before[i] for i in changed) else None

    try:
        return WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException,)).until(ready)
    except TimeoutException:
        now = _panel_sources(explorer)
        pytest.fail(f"{message}: panels {[i for i in changed if now[i] == before[i]]} did not change within 30 s")


_OVERFLOW_JS = """
// The widget's containers (its own boxes and the output area around it); not the inside of the slider,
// whose handle is positioned outside its track on purpose.
const root = arguments[0];
const boxes = [root, ...root.querySelectorAll('.widget-box')];
const output = root.closest('.jp-OutputArea-output');
if (output) boxes.push(output);
return boxes.filter(e => e.scrollWidth > e.clientWidth)
            .map(e => `${e.tagName}.${[...e.classList].join('.')}: scrollWidth ${e.scrollWidth} > clientWidth ${e.clientWidth}`);
"""


@pytest.mark.slow
def test_explorer_in_jupyterlab_follows_the_slider_the_version_and_the_consistency_control_and_fits_1400_px(lab, browser):
    browser.get(lab)
    WebDriverWait(browser, 90).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-Cell"))
    # The kernel must be up before "Run All Cells": the toolbar's execution indicator reads idle.
    WebDriverWait(browser, 90).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, ".jp-Notebook-ExecutionIndicator[data-status='idle']"))
    for button in browser.find_elements(By.CSS_SELECTOR, ".jp-toast-button, .jp-Notification-Toast button"):
        if button.text.strip() == "No":  # "get notified about Jupyter news?": answer, so the toast covers nothing
            button.click()
    _click_menu(browser, "Run", "Run All Cells")
    try:
        explorer = WebDriverWait(browser, RUN_TIMEOUT_S).until(
            lambda d: next((e for e in d.find_elements(By.CSS_SELECTOR, EXPLORER) if len(_panel_sources(e)) == 6), None))
    except TimeoutException:
        errors = [e.text[:500] for e in browser.find_elements(By.CSS_SELECTOR, "[data-mime-type='application/vnd.jupyter.stderr']")]
        prompts = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".jp-CodeCell .jp-InputPrompt")]
        pytest.fail(f"the explorer did not appear within {RUN_TIMEOUT_S} s; cell errors: {errors}; "
                    f"code cell prompts (execution counts, [*] = running): {prompts}")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", explorer)
    WebDriverWait(browser, 30).until(lambda d: all(s and (s.startswith("blob:") or s.startswith("data:"))
                                                   for s in _panel_sources(explorer)))
    start = _panel_sources(explorer)
    overflow = browser.execute_script(_OVERFLOW_JS, explorer)
    assert overflow == [], "\n".join(overflow)

    # The slider: focus its handle and press the right arrow key, as a keyboard user would.
    handle = explorer.find_element(By.CSS_SELECTOR, ".widget-slider .noUi-handle")
    handle.click()
    handle.send_keys(Keys.ARROW_RIGHT)
    # The widget sends its images one by one, so each check waits for every panel it names to change (a panel that
    # never changes ends the wait with its message).
    moved = _wait_for_panels(browser, explorer, start, changed=(0, 1, 2, 3, 4), message="every panel shows the new frame")

    # The version buttons: choose the one that is not selected.
    buttons = explorer.find_elements(By.CSS_SELECTOR, ".widget-toggle-buttons button")
    assert len(buttons) == 2
    next(b for b in buttons if "mod-active" not in b.get_attribute("class")).click()
    toggled = _wait_for_panels(browser, explorer, moved, changed=(1, 4),
                               message="output and error panels show the other version")
    assert toggled[0] == moved[0], "the input panel does not depend on the version"

    # The consistency slider: three presses of the right arrow key (0.05 each) blend every version with its
    # previous output warped into the frame; output, warped-previous and error panels, the plot and the table
    # follow, while the input and the valid mask do not change.
    table = explorer.find_element(By.CSS_SELECTOR, ".reconet-consistency-table")
    assert "α = 0.00" in table.text and "sharpness kept" in table.text
    alpha = explorer.find_element(By.CSS_SELECTOR, ".reconet-consistency .noUi-handle")
    alpha.click()
    for _ in range(3):
        alpha.send_keys(Keys.ARROW_RIGHT)
    # the widget redraws its table as it updates: an element read mid-redraw is stale, so look again
    WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: "α = 0.15" in d.find_element(By.CSS_SELECTOR, ".reconet-consistency-table").text)
    blended = _wait_for_panels(browser, explorer, toggled, changed=(1, 2, 4, 5),
                               message="output, warped previous output, error panel and error plot follow alpha")
    assert blended[0] == toggled[0] and blended[3] == toggled[3], "input and valid mask do not depend on alpha"
    rows = WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: [row.text for row in explorer.find_elements(By.CSS_SELECTOR, ".reconet-consistency-table tr")])
    assert len(rows) == 3 and all("%" in row for row in rows[1:]), rows

    overflow = browser.execute_script(_OVERFLOW_JS, explorer)
    assert overflow == [], "\n".join(overflow)
    width = browser.execute_script("return document.documentElement.clientWidth")
    assert width <= WINDOW[0] and explorer.rect["x"] + explorer.rect["width"] <= width


# ------------------------------------------------------------------------------------------------ the Colab camera

#: Chromium's fake camera (a generated, moving test pattern), and camera access granted without a prompt.
FAKE_CAMERA = ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")
#: What Colab's ``eval_js`` does with a script: evaluate it in the page's global scope and answer its value,
#: after waiting for it if it is a promise (a thrown error becomes an error in Python).
_EVAL_JS = """
const done = arguments[arguments.length - 1];
try {
  Promise.resolve((0, eval)(arguments[0])).then(value => done({value: value}), error => done({error: String(error)}));
} catch (error) {
  done({error: String(error)});
}
"""


@pytest.fixture()
def blank_page(tmp_path):
    """``http://127.0.0.1:<port>/`` serving an empty page: a secure context, as Colab's https output pages are."""
    import functools
    import http.server
    import threading

    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("<!doctype html><html><head><title>camera</title></head><body></body></html>")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # no request log on stderr
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=tmp_path / "www"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def _eval_js(driver):
    """A stand-in for ``google.colab.output.eval_js`` that runs scripts in ``driver``'s page."""
    def eval_js(script: str):
        driver.set_script_timeout(30)
        reply = driver.execute_async_script(_EVAL_JS, script)
        if "error" in reply:
            raise RuntimeError(f"JavaScript error: {reply['error']}")
        return reply["value"]

    return eval_js


@pytest.fixture()
def camera_browser(tmp_path):
    driver = _chromium(tmp_path / "camera-profile", *FAKE_CAMERA)
    try:
        yield driver
    finally:
        driver.quit()


def test_colab_camera_script_captures_jpeg_frames_of_the_requested_width_that_python_decodes(camera_browser, blank_page):
    from PIL import Image

    from reconet_lib import live

    driver, eval_js = camera_browser, _eval_js(camera_browser)
    driver.get(blank_page)
    camera = live.BrowserCamera(["baseline", "reconet"], width=160, quality=0.8, eval_js=eval_js)
    video_w, video_h = driver.execute_script("const v = document.querySelector('video'); return [v.videoWidth, v.videoHeight];")
    assert video_w > 160 and video_h > 0, "the fake camera is streaming"
    height = round(video_h * 160 / video_w)

    # What the page sends: a JPEG data URL of the requested width, the aspect ratio kept.
    raw = json.loads(eval_js("window.reconetCameraGrab(160, 0.8)"))
    assert raw["image"].startswith("data:image/jpeg;base64,") and raw["choice"] == "reconet" and raw["stop"] is False
    with Image.open(io.BytesIO(base64.b64decode(raw["image"].split(",", 1)[1]))) as image:
        assert (image.format, image.size, image.mode) == ("JPEG", (160, height), "RGB")

    # What Python makes of it: (H, W, 3) uint8 RGB frames with picture in them, and the stream moves.
    first = camera.read()
    assert first.shape == (height, 160, 3) and first.dtype == np.uint8
    assert first.min() < 64 and first.max() > 192 and first.std() > 10, "a picture, not a blank frame"
    time.sleep(0.3)
    second = camera.read()
    assert second.shape == first.shape and not np.array_equal(first, second), "live frames, not one frozen frame"

    # The page's buttons: a network, then stop.
    buttons = {b.text: b for b in driver.find_elements(By.CSS_SELECTOR, "button")}
    assert sorted(buttons) == ["baseline", "reconet", "stop"]
    buttons["baseline"].click()
    assert camera.read() is not None and camera.choice == "baseline"
    buttons["stop"].click()
    assert camera.read() is None and camera.stopped

    camera.close()
    assert driver.execute_script("return [document.querySelectorAll('video').length, window.reconetCamera === undefined]") == [0, True]


def test_colab_camera_reopens_in_a_fresh_page_as_a_later_cells_output(camera_browser, blank_page):
    from reconet_lib import live

    driver, eval_js = camera_browser, _eval_js(camera_browser)
    driver.get(blank_page)
    camera = live.BrowserCamera(["reconet"], width=96, eval_js=eval_js)
    driver.get(blank_page)  # a new document: no camera, no functions (what another cell's output page has)
    assert driver.execute_script("return typeof window.reconetCameraGrab") == "undefined"
    frame = camera.read()
    assert frame.shape[1] == 96 and frame.shape[2] == 3 and frame.std() > 10
    assert driver.execute_script("return document.querySelectorAll('video').length") == 1
    camera.close()


def test_colab_camera_refused_by_the_browser_is_one_line_saying_how_to_allow_it(tmp_path, blank_page):
    from reconet_lib import live
    from reconet_lib.errors import UserInputError

    driver = _chromium(tmp_path / "deny-profile", "--use-fake-device-for-media-stream", "--deny-permission-prompts")
    try:
        driver.get(blank_page)
        with pytest.raises(UserInputError) as info:
            live.BrowserCamera(["reconet"], eval_js=_eval_js(driver))
        assert driver.execute_script("return document.querySelectorAll('video, button').length") == 0, "no preview left"
    finally:
        driver.quit()
    message = str(info.value)
    assert len(message.splitlines()) == 1 and "NotAllowedError" in message and "allow camera access" in message
