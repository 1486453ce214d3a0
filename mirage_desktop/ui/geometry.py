"""Where the window was: its geometry and the splitter's state, kept in ``settings.ui`` as base64 strings."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QByteArray
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QMainWindow, QSplitter

#: Size of a first window, shrunk to 92% of a smaller screen.
DEFAULT_SIZE = (1360, 860)


def _decode(value: Any) -> QByteArray | None:
    return QByteArray.fromBase64(value.encode("ascii")) if isinstance(value, str) and value else None


def _encode(data: QByteArray) -> str:
    return bytes(data.toBase64().data()).decode("ascii")


def restore_geometry(window: QMainWindow, splitter: QSplitter, ui: dict[str, Any]) -> None:
    """The saved geometry and splitter, or a default size that fits the primary screen."""
    geometry = _decode(ui.get("geometry"))
    if geometry is None or not window.restoreGeometry(geometry):
        screen = QGuiApplication.primaryScreen()
        available = screen.availableGeometry() if screen is not None else None
        width, height = DEFAULT_SIZE
        if available is not None and available.width() > 0:
            width = min(width, int(available.width() * 0.92))
            height = min(height, int(available.height() * 0.92))
        window.resize(width, height)
    state = _decode(ui.get("splitter"))
    if state is not None:
        splitter.restoreState(state)


def save_geometry(window: QMainWindow, splitter: QSplitter, ui: dict[str, Any]) -> None:
    ui["geometry"] = _encode(window.saveGeometry())
    ui["splitter"] = _encode(splitter.saveState())
