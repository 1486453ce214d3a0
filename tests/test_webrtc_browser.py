"""The page at / in headless Chromium: it asks for the token, connects over WebRTC and plays the avatar.

Chromium's fake camera (``--use-fake-device-for-media-stream``) stands in for a webcam, the boundary this machine
cannot cross. All traffic stays on this machine; every wait has a deadline and only bounds the test.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import InvertStage

from mirage_desktop.config import Settings
from mirage_desktop.engine.pipeline import Engine
from mirage_desktop.engine.sources import DemoSource
from mirage_desktop.api.server import HttpServer

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
W, H = 320, 240
TOKEN = "browser-token-41d2"
WAIT_S = 60.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="headless Chromium is absent: install the Debian packages chromium and chromium-driver"),
]


@pytest.fixture
def engine() -> Iterator[Engine]:
    eng = Engine(DemoSource(W, H, fps=15), [InvertStage(enabled=True)])
    eng.start()
    yield eng
    eng.stop()


@pytest.fixture
def server(engine: Engine) -> Iterator[HttpServer]:
    srv = HttpServer(engine, Settings(output_width=W, output_height=H, token=TOKEN), host="127.0.0.1", port=0)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream",
                 "--use-fake-device-for-media-stream", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 "--autoplay-policy=no-user-gesture-required", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT_S)
    driver.set_script_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(condition: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


def page_status(driver: Any) -> str:
    return str(driver.execute_script("return document.body.dataset.state + ': ' + "
                                     "document.getElementById('status').textContent"))


def connect(driver: Any, server: HttpServer, token: str, camera: bool) -> None:
    driver.get(server.url)
    field = driver.find_element("id", "token")
    field.clear()
    field.send_keys(token)
    if camera:
        driver.find_element("id", "camera").click()
    driver.find_element("id", "connect").click()


def video_progress(driver: Any) -> dict[str, float]:
    return dict(driver.execute_script(
        "const v = document.getElementById('video');"
        "return {w: v.videoWidth, h: v.videoHeight, t: v.currentTime};"))


def test_page_plays_the_avatar_video(browser: Any, server: HttpServer) -> None:
    connect(browser, server, TOKEN, camera=False)
    first = wait_for(lambda: (p := video_progress(browser))["w"] > 0 and p,
                     f"video in the page ({page_status(browser)})")
    assert (first["w"], first["h"]) == (W, H)
    wait_for(lambda: video_progress(browser)["t"] > first["t"] + 0.5, "the video to keep playing")
    assert page_status(browser).startswith("connected")
    assert server.peers == 1
    browser.find_element("id", "hangup").click()
    wait_for(lambda: server.peers == 0, "the hang-up to reach the server")


def test_page_camera_drives_the_engine(browser: Any, server: HttpServer, engine: Engine) -> None:
    connect(browser, server, TOKEN, camera=True)
    wait_for(lambda: engine.source.describe().startswith("webrtc:"), f"the browser camera to drive "
             f"({page_status(browser)})")
    first = wait_for(lambda: (p := video_progress(browser))["w"] > 0 and p, "video in the page")
    wait_for(lambda: video_progress(browser)["t"] > first["t"] + 0.5, "the video to keep playing")
    browser.find_element("id", "hangup").click()
    wait_for(lambda: engine.source.describe() == "demo", "the engine's own source to come back")


def test_page_reports_a_wrong_token(browser: Any, server: HttpServer) -> None:
    connect(browser, server, "not-the-token", camera=False)
    status = wait_for(lambda: (s := page_status(browser)).startswith("idle: Could not connect") and s,
                      "the page to report the refusal")
    assert "Wrong token" in status
    assert server.peers == 0
