"""The main window: live preview, controls, latency panel and status bar around one :class:`Session`.

The window only shows and forwards; the session and its engine control do the work. The engine runs in its own
threads; frames reach the preview through a Qt signal (at most one in flight), engine messages through another, and
everything slow (opening the camera, probing cameras, preparing an avatar, downloading models, starting outputs, any
call to a remote engine) runs on a :class:`WorkerPool` thread whose result or exception comes back by signal. Errors
a user can cause end up in a banner, never in a modal dialog. The avatar gallery, the Outputs card, the Models and
Animation cards and the status bar have their own controllers (:mod:`.avatars`, :mod:`.outputs_panel`,
:mod:`.engine_actions`, :mod:`.status_bar`); the Engine... dialog is :mod:`.remote_dialog`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence, QResizeEvent, QShortcut
from PySide6.QtWidgets import QFileDialog, QFrame, QMainWindow, QScrollArea, QSplitter, QVBoxLayout, QWidget

from mirage_desktop.config import Settings, bundled_avatar
from mirage_desktop.engine.outputs import CallbackOutput
from mirage_desktop.engine.pipeline import Engine
from mirage_desktop.engine.sources import DemoSource, Source, SourceError, list_cameras
from mirage_desktop.session import Session
from mirage_desktop.stages.factory import make_engine_source
from mirage_desktop.stages.specs import STAGE_SPECS
from mirage_desktop.ui.avatars import AvatarController, dropped_image
from mirage_desktop.ui.banner import MessageBanner
from mirage_desktop.ui.controls import VIDEO_FILE, ControlsPanel
from mirage_desktop.ui.engine_actions import EngineActions
from mirage_desktop.ui.geometry import restore_geometry, save_geometry
from mirage_desktop.ui.audio_panel import AudioCard, AudioController
from mirage_desktop.ui.latency_panel import UPDATE_INTERVAL_S, LatencyPanel
from mirage_desktop.ui.outputs_panel import OutputsController
from mirage_desktop.ui.preview import FrameBridge, PreviewWidget
from mirage_desktop.ui.remote_dialog import choose_engine, remote_from_settings
from mirage_desktop.ui.status_bar import EngineStatus
from mirage_desktop.ui.system_check import show_system_check
from mirage_desktop.ui.workers import WorkerPool

logger = logging.getLogger(__name__)

VIDEO_FILTER = "Videos (*.mp4 *.mov *.avi *.mkv *.webm *.m4v);;All files (*)"
MARGINS = (12, 12, 12, 8)
#: A slider sends many changes a second: each applies at once, the settings file is written once it rests.
SAVE_DELAY_MS = 400


def source_or_demo(settings: Settings, spec: str) -> tuple[Source, str | None]:
    """The source for ``spec``, or the demo and a message saying why (the window always starts)."""
    try:
        return make_engine_source(settings, spec), None
    except SourceError as exc:
        return DemoSource(settings.output_width, settings.output_height, settings.fps), f"{exc} Showing the demo instead."


class EngineMessages(QObject):
    """The engine's listener: called on engine threads, re-emitted as a queued signal to the GUI thread."""

    message = Signal(str, str)

    def __call__(self, level: str, text: str) -> None:
        self.message.emit(level, text)


class MainWindow(QMainWindow):
    def __init__(
        self,
        settings: Settings,
        *,
        source: str | None = None,
        settings_path: Path | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.settings = settings
        self.messages: list[tuple[str, str]] = []  # every message shown, oldest first
        self.pool = WorkerPool(parent=self)
        self._shut_down = False
        self._was_maximized = False
        self._first_run = "geometry" not in settings.ui
        settings.ensure_token()

        self.setWindowTitle("Mirage")
        self.setAcceptDrops(True)

        # ---- session and engine (here, or on the remote engine the settings choose)
        self.settings_path = settings_path
        self.bridge = FrameBridge(self)
        self._engine_messages = EngineMessages(self)
        self._engine_messages.message.connect(self.show_message)
        self._pending_message = self._open_session(source or settings.source)

        # ---- widgets
        self.preview = PreviewWidget(self.bridge)
        self.preview.activated.connect(self.toggle_full_screen)
        self.latency = LatencyPanel()
        self.controls = ControlsPanel(settings.avatar_dir, bundled_avatar())
        self.avatar_picker = self.controls.avatar_picker
        self.animation = self.controls.animation
        self._build_layout()
        self.banner = MessageBanner(self.preview_frame)
        self.status = EngineStatus(self.statusBar(), self.session.control.status_text())
        self.status_reason, self.status_device = self.status.reason, self.status.device
        self.status_fps, self.status_dropped = self.status.fps, self.status.dropped

        self._save_timer = QTimer(self)
        self._save_timer.setSingleShot(True)
        self._save_timer.setInterval(SAVE_DELAY_MS)
        self._save_timer.timeout.connect(self.save)

        self.avatars = AvatarController(self.session, self.avatar_picker, self.pool, self.save, self)
        self.avatars.message.connect(self.show_message)
        self.outputs = OutputsController(self.session, self.controls, self.pool, self.save, self)
        self.outputs.message.connect(self.show_message)
        audio_card = AudioCard()
        self.controls.add_card(audio_card)  # under Outputs
        self.audio = AudioController(self.session, audio_card, self.pool, self.save, self)
        self.audio.message.connect(self.show_message)
        self.engine_actions = EngineActions(self.session, self.controls, self.preview, self.pool, self.save,
                                     self._save_timer.start, self.show_message, self)
        self._connect_controls()
        self._build_shortcuts()
        self.menuBar().addAction("Engine...", lambda: choose_engine(self))  # this computer or a remote engine
        self.menuBar().addMenu("Help").addAction(  # mirage doctor's report, with Copy report
            "System check...", lambda: show_system_check(self, self.settings, self.pool, self.settings_path))
        self._show_initial_state()
        self._restore_ui_state()

        self._stats_timer = QTimer(self)
        self._stats_timer.setInterval(int(UPDATE_INTERVAL_S * 1000))
        self._stats_timer.timeout.connect(self.refresh_stats)

    def _open_session(self, spec: str) -> str | None:
        """A session on ``spec`` (the demo if it cannot be opened) and the engine choice of the settings, with the
        preview and the message listener on its engine; the message to show at start, if any."""
        engine_source, message = source_or_demo(self.settings, spec)
        remote, problem = remote_from_settings(self.settings)
        self.session = Session(self.settings, engine_source, settings_path=self.settings_path, remember=True,
                               remote=remote)
        self.engine: Engine = self.session.engine
        self.engine.add_output(CallbackOutput(self.bridge.offer, name="preview"))
        self.engine.add_listener(self._engine_messages)
        return problem or message

    def switch_engine(self) -> None:
        """Apply the Engine choice now: close this session (outputs, server, engine) off the GUI thread, open one
        on the chosen engine with the same source, and bring the outputs back as they were."""
        old = self.session
        old.engine.remove_listener(self._engine_messages)
        self._stats_timer.stop()
        self.preview.clear("Switching the engine...")

        def reopen(_result: object) -> None:
            if self._shut_down:
                return
            message = self._open_session(self.settings.source)
            for controller in (self.avatars, self.outputs, self.engine_actions, self.audio):
                controller.session = self.session
            if message:
                self.show_message("error", message)
            self._show_initial_state()
            self.status.forget_refusal()
            self.status_device.setText(self.session.control.status_text())
            self.pool.run(self.session.start, on_result=self._on_engine_started, on_error=self._on_engine_failed)
            self._stats_timer.start()
            self.outputs.restore()
            self.audio.restore()

        def close_failed(exc: BaseException) -> None:
            self.show_message("warning", f"Closing the previous engine: {exc}")
            reopen(None)

        self.pool.run(old.close, on_result=reopen, on_error=close_failed)

    # ================================================================================================ building
    def _build_layout(self) -> None:
        self.preview_frame = QFrame()
        self.preview_frame.setObjectName("previewFrame")
        frame_layout = QVBoxLayout(self.preview_frame)
        frame_layout.setContentsMargins(1, 1, 1, 1)
        frame_layout.addWidget(self.preview)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.setSpacing(10)
        left_layout.addWidget(self.preview_frame, 1)
        left_layout.addWidget(self.latency)
        self.latency.setFixedHeight(210)

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(self.controls)
        scroll.setMinimumWidth(330)
        scroll.setMaximumWidth(420)
        self.sidebar = scroll
        self.sidebar.setObjectName("sidebar")

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(scroll)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 0)
        self.splitter.setChildrenCollapsible(False)

        central = QWidget()
        central.setObjectName("central")
        layout = QVBoxLayout(central)
        layout.setContentsMargins(*MARGINS)
        layout.addWidget(self.splitter)
        self.setCentralWidget(central)
        self._central_layout = layout

    def _connect_controls(self) -> None:
        c = self.controls
        c.source_chosen.connect(self.choose_source)
        c.rescan_requested.connect(self.scan_cameras)
        c.inset_toggled.connect(self.set_inset_visible)
        c.animation.expanded_changed.connect(self._on_animation_folded)

    def _build_shortcuts(self) -> None:
        actions = self.engine_actions
        bindings: dict[str, Callable[[], object]] = {
            spec.shortcut: partial(actions.toggle_stage, spec.name) for spec in STAGE_SPECS}
        bindings.update({
            "Space": actions.recalibrate,
            "Ctrl+O": self.avatars.ask_add_portrait,
            "F11": self.toggle_full_screen,
            "Escape": self.leave_full_screen,
            "Ctrl+Q": self.close,
        })
        bindings.update({str(n): partial(self.avatars.pick_number, n) for n in range(1, 10)})
        self.shortcuts: dict[str, QShortcut] = {}
        for keys, slot in bindings.items():
            shortcut = QShortcut(QKeySequence(keys), self)
            shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
            shortcut.activated.connect(slot)
            self.shortcuts[keys] = shortcut

    def _show_initial_state(self) -> None:
        self.controls.set_sources([], self.settings.source if self.engine.source.name != "demo" else "demo")
        self.avatar_picker.refresh(self.settings.avatar)
        self.engine_actions.show_initial_state()

    # ================================================================================================ lifecycle
    def start(self) -> None:
        """Open the source and start the engine off the GUI thread; probe cameras; restore outputs."""
        if self._pending_message is not None:
            self.show_message("error", self._pending_message)
            self._pending_message = None
        elif self._first_run:
            self.show_message(
                "info",
                "Welcome to Mirage. This is the built-in demo: pick your camera on the right, then switch on face "
                "detection (Ctrl+1) and animation (Ctrl+2).",
                15_000,
            )
        self.pool.run(self.session.start, on_result=self._on_engine_started, on_error=self._on_engine_failed)
        self.scan_cameras()
        self._stats_timer.start()
        self.outputs.restore()
        self.audio.restore()

    @Slot(object)
    def _on_engine_started(self, _result: object) -> None:
        logger.info("Engine running on %s from %s", self.engine.device, self.engine.source.describe())

    @Slot(object)
    def _on_engine_failed(self, exc: BaseException) -> None:
        if self._shut_down:
            return
        if isinstance(self.engine.source, DemoSource):
            self.preview.clear(f"The demo source failed: {exc}")
            self.show_message("error", f"Cannot start: {exc}")
            return
        self.show_message("error", f"{exc} Showing the demo instead.")
        self.session.use_demo()
        self.controls.show_source("demo")
        self.pool.run(self.session.start, on_result=self._on_engine_started, on_error=self._on_engine_failed)

    def shutdown(self) -> None:
        """Save, stop the workers, then the session (server, engine, camera, outputs). Idempotent."""
        if self._shut_down:
            return
        self._shut_down = True
        self._stats_timer.stop()
        self._save_timer.stop()
        self._save_ui_state()
        self.save()
        self.engine.remove_listener(self._engine_messages)
        self.engine_actions.cancel_download()
        if not self.pool.shutdown(10_000):
            logger.warning("Background tasks still running at exit")
        self.session.close()
        logger.info("Window closed; engine stopped")

    def closeEvent(self, event: QCloseEvent) -> None:
        self.shutdown()
        event.accept()

    def save(self) -> None:
        try:
            self.session.save()
        except OSError as exc:
            self.show_message("warning", f"Could not save the settings: {exc}")

    # ================================================================================================ messages
    @Slot(str, str)
    def show_message(self, level: str, text: str, duration_ms: int | None = None) -> None:
        """A non-blocking banner over the preview; the newest message replaces the previous one."""
        self.messages.append((level, text))
        del self.messages[:-200]
        self.banner.show_message(level, text, duration_ms)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        banner = getattr(self, "banner", None)  # resize events may come while __init__ builds the window
        if banner is not None and banner.isVisible():
            banner.place()

    # ================================================================================================ stats
    @Slot()
    def refresh_stats(self) -> None:
        """About twice a second: one stats snapshot for the plots, switches and status bar."""
        control = self.session.control
        stats = control.stats()
        self.latency.update_stats(stats)
        reason = self.engine_actions.refresh(stats)
        refusal = self.status.new_refusal(control.refusal())
        if refusal:
            self.show_message("error", refusal)
        if not reason and not self.engine.running and self.engine.finished.is_set():
            reason = "The source stopped; choose another one."
        avatar = self.session.avatar_stage
        self.preview.animating = avatar is not None and avatar.enabled and avatar.status().state == "ready"
        vcam_error = self.outputs.virtual_camera_error()
        if not reason and vcam_error:
            reason = f"Virtual camera: {vcam_error}"
        self.outputs.refresh()
        self.audio.refresh()
        self.status.show(stats, reason, control.status_text())

    # ================================================================================================ source
    @Slot()
    def scan_cameras(self) -> None:
        self.controls.rescan.setEnabled(False)
        self.pool.run(list_cameras, on_result=self._on_cameras, on_error=self._on_cameras_failed)

    @Slot(object)
    def _on_cameras(self, cameras: list[int]) -> None:
        self.controls.rescan.setEnabled(True)
        current = self.controls.current_source()
        self.controls.set_sources(list(cameras), current if current != VIDEO_FILE else self.settings.source)

    @Slot(object)
    def _on_cameras_failed(self, exc: BaseException) -> None:
        self.controls.rescan.setEnabled(True)
        self.show_message("warning", f"Could not list the cameras: {exc}")

    @Slot(str)
    def choose_source(self, spec: str) -> None:
        if spec == VIDEO_FILE:
            name, _ = QFileDialog.getOpenFileName(self, "Choose a video file", str(Path.home()), VIDEO_FILTER)
            if not name:
                self.controls.show_source(self.settings.source)
                return
            spec = name
        try:
            self.session.set_source(spec)  # the capture thread opens it; a failure comes back as a message
        except SourceError as exc:
            self.show_message("error", str(exc))
            self.controls.show_source(self.settings.source)
            return
        self.controls.show_source(spec)
        self.save()

    @Slot(bool)
    def _on_animation_folded(self, expanded: bool) -> None:
        self.settings.ui["animation_open"] = bool(expanded)

    # ================================================================================================ avatar
    def add_portrait(self, path: Path) -> None:
        """Copy a portrait into the avatar folder and make it the avatar (checked off the GUI thread)."""
        self.avatars.add_portrait(path)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if dropped_image(event.mimeData()) is not None:
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        path = dropped_image(event.mimeData())
        if path is not None:
            event.acceptProposedAction()
            self.avatars.add_portrait(path)

    # ================================================================================================ view
    @Slot(bool)
    def set_inset_visible(self, visible: bool) -> None:
        self.preview.set_inset_visible(visible)
        self.settings.ui["camera_inset"] = bool(visible)
        self.save()

    @Slot()
    def toggle_full_screen(self) -> None:
        if self.isFullScreen():
            self.leave_full_screen()
            return
        self._was_maximized = self.isMaximized()
        self.sidebar.hide()
        self.latency.hide()
        self.statusBar().hide()
        self._central_layout.setContentsMargins(0, 0, 0, 0)
        self.showFullScreen()

    @Slot()
    def leave_full_screen(self) -> None:
        if not self.isFullScreen():
            return
        self.sidebar.show()
        self.latency.show()
        self.statusBar().show()
        self._central_layout.setContentsMargins(*MARGINS)
        if self._was_maximized:
            self.showMaximized()
        else:
            self.showNormal()

    def _restore_ui_state(self) -> None:
        inset = bool(self.settings.ui.get("camera_inset", True))
        self.controls.show_inset.blockSignals(True)
        self.controls.show_inset.setChecked(inset)
        self.controls.show_inset.blockSignals(False)
        self.preview.set_inset_visible(inset)
        self.animation.set_expanded(bool(self.settings.ui.get("animation_open", True)))
        restore_geometry(self, self.splitter, self.settings.ui)

    def _save_ui_state(self) -> None:
        if self.isFullScreen():
            self.leave_full_screen()
        save_geometry(self, self.splitter, self.settings.ui)
        self.settings.ui["camera_inset"] = self.preview.inset_visible
