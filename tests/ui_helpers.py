"""Opening the real window for the UI tests: settings kept small (320x240, CPU, folders in tmp_path), the window
shown and started, and the settings file it saved."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before anything imports Qt

from mirage_desktop.config import Settings, load_settings
from mirage_desktop.ui.app import create_application
from mirage_desktop.ui.main_window import MainWindow

WAIT_MS = 20_000


def window_settings(tmp_path: Path) -> Settings:
    """What the app would load, at 320x240 to keep the CPU low, with folders in tmp_path."""
    settings = load_settings()
    settings.output_width, settings.output_height, settings.fps = 320, 240, 15.0
    settings.avatar_dir = tmp_path / "avatars"
    settings.device = "cpu"
    return settings


def open_window(qtbot, settings: Settings, painted: int = 3) -> MainWindow:  # type: ignore[no-untyped-def]
    """The window on ``settings``, shown, started and painted ``painted`` frames; closed (and its engine stopped)
    at teardown even when a test fails."""
    create_application()
    window = MainWindow(settings)
    qtbot.addWidget(window)
    if "geometry" not in settings.ui:
        window.resize(1100, 760)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    window.start()
    qtbot.waitUntil(lambda: window.preview.painted >= painted, timeout=WAIT_MS)
    return window


def settings_path() -> Path:
    return Path(os.environ["MIRAGE_SETTINGS"])


def saved_settings() -> dict:
    """The settings file as the window last wrote it ({} before the first save)."""
    path = settings_path()
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
