"""The Outputs card's controller: virtual camera and WebRTC switches, the token's Copy and New token.

Starting an output is slow (a device to open, a port to bind), so the session's start runs on a worker thread;
this class shows "Starting...", then the outcome, and keeps the card in step with the outputs' live status.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QWidget

from mirage_desktop.outputs.virtual_camera import VirtualCameraOutput
from mirage_desktop.session import Session, SessionClosed
from mirage_desktop.ui.controls import ControlsPanel
from mirage_desktop.ui.workers import WorkerPool
from mirage_desktop.api.server import HttpServer


class OutputsController(QObject):
    """Connects the Outputs card to the session; ``save`` persists the settings after a change."""

    message = Signal(str, str)  # level, text

    def __init__(self, session: Session, controls: ControlsPanel, pool: WorkerPool, save: Callable[[], None],
                 parent: QWidget) -> None:
        super().__init__(parent)
        self.session = session
        self.controls = controls
        self._pool = pool
        self._save = save
        self._vcam_starting = False
        self._webrtc_starting = False
        controls.virtual_camera_toggled.connect(self.set_virtual_camera)
        controls.webrtc_toggled.connect(self.set_webrtc)
        controls.copy_token_requested.connect(self.copy_token)
        controls.rotate_token_requested.connect(self.rotate_token)
        controls.show_token(session.settings.token)
        controls.show_virtual_camera(False, "Off")
        controls.show_webrtc(False, "Off")

    def restore(self) -> None:
        """Switch back on what was on last time."""
        if self.session.settings.virtual_camera:
            self.set_virtual_camera(True)
        if self.session.settings.http_enabled:
            self.set_webrtc(True)

    # ------------------------------------------------------------------------------------------------ virtual camera
    @Slot(bool)
    def set_virtual_camera(self, on: bool) -> None:
        if not on:
            self.session.stop_virtual_camera()
            self.controls.show_virtual_camera(False, "Off")
            self._save()
            return
        if self.session.virtual_camera is not None or self._vcam_starting:
            return
        self._vcam_starting = True
        self.controls.show_virtual_camera(True, "Starting...")
        self._pool.run(self.session.start_virtual_camera, on_result=self._on_virtual_camera_started,
                       on_error=self._on_virtual_camera_failed)

    @Slot(object)
    def _on_virtual_camera_started(self, _output: VirtualCameraOutput) -> None:
        self._vcam_starting = False
        self._save()
        self.refresh()

    @Slot(object)
    def _on_virtual_camera_failed(self, exc: BaseException) -> None:
        self._vcam_starting = False
        if isinstance(exc, SessionClosed):  # the window is closing: nothing to tell
            return
        self._save()
        self.controls.show_virtual_camera(False, str(exc), error=True)
        self.message.emit("error", f"Virtual camera: {exc}")

    def virtual_camera_error(self) -> str:
        """The running virtual camera's error ("" when none or off), for the status bar."""
        text, error = self.session.virtual_camera_status()
        return text if error else ""

    def refresh(self) -> None:
        """Show the virtual camera's live status (it may fail or change device while running)."""
        if self.session.virtual_camera is not None:
            text, error = self.session.virtual_camera_status()
            self.controls.show_virtual_camera(True, text, error=error)

    # ------------------------------------------------------------------------------------------------ WebRTC
    @Slot(bool)
    def set_webrtc(self, on: bool) -> None:
        if not on:
            self.session.stop_http()
            self.controls.show_webrtc(False, "Off")
            self._save()
            return
        if self.session.server is not None or self._webrtc_starting:
            return
        self._webrtc_starting = True
        self.controls.show_webrtc(True, "Starting...")
        self._pool.run(self.session.start_http, on_result=self._on_webrtc_started, on_error=self._on_webrtc_failed)

    @Slot(object)
    def _on_webrtc_started(self, server: HttpServer) -> None:
        self._webrtc_starting = False
        self._save()
        url = server.url
        self.controls.show_webrtc(True, f'Serving at <a href="{url}">{url}</a>' if url else "On")

    @Slot(object)
    def _on_webrtc_failed(self, exc: BaseException) -> None:
        self._webrtc_starting = False
        if isinstance(exc, SessionClosed):
            return
        self._save()
        self.controls.show_webrtc(False, str(exc), error=True)
        self.message.emit("error", f"WebRTC: {exc}")

    # ------------------------------------------------------------------------------------------------ token
    @Slot()
    def copy_token(self) -> None:
        QGuiApplication.clipboard().setText(self.session.settings.token)
        self.message.emit("info", "Token copied to the clipboard.")

    @Slot()
    def rotate_token(self) -> None:
        self.controls.show_token(self.session.rotate_token())
        self._save()
        self.message.emit("info", "New token: viewers with the old one are refused from now on.")
