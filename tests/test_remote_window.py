"""The window on a remote engine (pytest-qt, offscreen): the Engine dialog's Test, and the window driving a real
engine behind a real HttpServer on the loopback, its switches acting there. Screenshots go to MIRAGE_SCREENSHOTS
when set (to look at them), else to tmp_path."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mirage_desktop.config import Settings, load_settings
from mirage_desktop.engine.pipeline import Engine
from mirage_desktop.engine.sources import DemoSource
from mirage_desktop.stages.factory import build_stages
from mirage_desktop.ui.app import create_application
from mirage_desktop.ui.main_window import MainWindow
from mirage_desktop.ui.remote_dialog import EngineDialog
from mirage_desktop.api.server import HttpServer

TOKEN = "window-remote-token-3"
WAIT_MS = 30_000


@pytest.fixture()
def remote_server(tmp_path: Path) -> Iterator[HttpServer]:
    settings = Settings(output_width=320, output_height=240, token=TOKEN, models_dir=tmp_path / "no-models",
                        device="cpu")
    engine = Engine(DemoSource(320, 240, fps=15), build_stages(settings))
    engine.start()
    server = HttpServer(engine, settings, host="127.0.0.1", port=0)
    server.start()
    yield server
    server.stop()
    engine.stop()


def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("MIRAGE_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_engine_dialog_tests_the_remote_and_remembers_the_choice(qtbot, remote_server: HttpServer,  # type: ignore[no-untyped-def]
                                                                 tmp_path: Path) -> None:
    create_application()
    settings = load_settings()
    dialog = EngineDialog(settings)
    qtbot.addWidget(dialog)
    assert dialog.local.isChecked() and not dialog.remote_box.isEnabled()
    dialog.remote.setChecked(True)
    dialog.url.setText(remote_server.url)
    dialog.token.setText("wrong")
    dialog.test.click()
    qtbot.waitUntil(lambda: "refused the token" in dialog.test_result.text(), timeout=WAIT_MS)
    dialog.token.setText(TOKEN)
    dialog.test.click()
    qtbot.waitUntil(lambda: "The engine answers" in dialog.test_result.text(), timeout=WAIT_MS)
    assert "off" in dialog.test_result.text()
    dialog.show()
    qtbot.waitExposed(dialog)
    dialog.grab().save(str(shots(tmp_path) / "engine_dialog.png"))
    dialog.apply()
    assert settings.remote_url == remote_server.url and settings.remote_token == TOKEN


def test_the_window_runs_on_the_remote_engine_and_its_switches_act_there(qtbot, remote_server: HttpServer,  # type: ignore[no-untyped-def]
                                                                         tmp_path: Path) -> None:
    create_application()
    settings = load_settings()
    settings.output_width, settings.output_height, settings.fps = 320, 240, 15.0
    settings.avatar_dir = tmp_path / "avatars"
    settings.remote_url, settings.remote_token = remote_server.url, TOKEN
    window = MainWindow(settings)
    qtbot.addWidget(window)
    window.resize(1100, 760)
    window.show()
    qtbot.waitExposed(window)
    window.start()
    assert window.session.remote is not None and [s.name for s in window.engine.stages] == ["remote"]
    client = window.session.remote.client
    qtbot.waitUntil(lambda: client.round_trip.count >= 5 and client.remote_stats is not None, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: "Round trip" in window.status_device.text(), timeout=WAIT_MS)
    # the model switch acts on the remote engine, and the window shows the remote's answer (with its reason)
    remote_scrfd = remote_server.engine.stage("scrfd")
    assert not remote_scrfd.enabled
    window.controls.stages["scrfd"].checkbox.setChecked(True)
    qtbot.waitUntil(lambda: remote_scrfd.enabled, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.latency.updates >= 6 and "remote" in window.latency.series, timeout=WAIT_MS)
    qtbot.wait(2500)  # a couple of refreshes, so the screenshot shows the remote's reason
    window.grab().save(str(shots(tmp_path) / "window_remote.png"))
    assert window.session.control.stage_enabled("scrfd") is True

    # the Animation options act on the remote's avatar stage too, under the same names
    def options() -> Any:
        return remote_server.engine.stage("liveportrait").options  # type: ignore[attr-defined]

    window.animation.controls["relative_motion"].click(False)
    qtbot.waitUntil(lambda: options().relative_motion is False, timeout=WAIT_MS)
    window.animation.controls["driving_multiplier"].slider.setValue(150)
    qtbot.waitUntil(lambda: options().driving_multiplier == 1.5, timeout=WAIT_MS)
