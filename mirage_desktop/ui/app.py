"""Starts the desktop app: the QApplication, the dark theme, the window with its engine, and the event loop."""

from __future__ import annotations

import logging
import signal
import sys

from PySide6.QtCore import QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from mirage_desktop.config import Settings, bundled_resource
from mirage_desktop.ui.main_window import MainWindow
from mirage_desktop.ui.theme import apply_dark_theme

logger = logging.getLogger(__name__)

APP_NAME = "Mirage"


def create_application(argv: list[str] | None = None) -> QApplication:
    """The one QApplication (reused when one exists, as under pytest-qt), named and themed."""
    app = QApplication.instance()
    if app is None:
        app = QApplication(argv if argv is not None else sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName(APP_NAME)
    app.setApplicationDisplayName(APP_NAME)
    app.setOrganizationName(APP_NAME)
    app.setDesktopFileName("mirage")
    icon = bundled_resource("icon.png")
    if icon.exists():
        app.setWindowIcon(QIcon(str(icon)))
    apply_dark_theme(app)
    return app


def run_gui(settings: Settings, source: str | None = None) -> int:
    """Open the window on ``source`` (default: the saved one) and run until it closes; returns the exit code."""
    app = create_application()
    window = MainWindow(settings, source=source)
    window.show()
    window.start()
    # Ctrl+C in the terminal (or a polite kill) closes the window like Ctrl+Q: settings saved, camera released.
    # Python runs signal handlers only between bytecodes, so a cheap timer lets it in while Qt waits for events.
    previous = {sig: signal.signal(sig, lambda *_: window.close()) for sig in (signal.SIGINT, signal.SIGTERM)}
    wake = QTimer()
    wake.start(250)
    wake.timeout.connect(lambda: None)
    try:
        code = app.exec()
    finally:
        wake.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        window.shutdown()  # also when the loop ended without a close event (session logout, quit())
    logger.info("Mirage window exited with %s", code)
    return int(code)
