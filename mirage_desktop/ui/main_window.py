"""The main window: live preview, controls, latency panel and status bar around one running :class:`Engine`.

The window only shows and forwards. The engine runs in its own threads; frames reach the preview through a Qt
signal (at most one in flight), engine messages through another, and everything slow (opening the camera, probing
cameras, preparing an avatar, downloading models, starting outputs) runs on a :class:`WorkerPool` thread whose
result or exception comes back by signal. Errors a user can cause end up in a banner, never in a modal dialog.
"""

from __future__ import annotations

import logging
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QObject, Qt, QTimer, Signal, Slot
from PySide6.QtGui import (
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QGuiApplication,
    QKeySequence,
    QResizeEvent,
    QShortcut,
)
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QLabel,
    QMainWindow,
    QProgressDialog,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from mirage_desktop.config import Settings, bundled_avatar, save_settings
from mirage_desktop.stages.avatar.stage import AvatarStage
from mirage_desktop.stages.factory import build_engine, make_engine_source
from mirage_desktop.engine.outputs import CallbackOutput, Output
from mirage_desktop.engine.pipeline import Engine
from mirage_desktop.engine.sources import IMAGE_SUFFIXES, DemoSource, SourceError, list_cameras, load_image
from mirage_desktop.engine.stage import StageUnavailable
from mirage_desktop.outputs.virtual_camera import VirtualCameraOutput
from mirage_desktop.ui.banner import MessageBanner
from mirage_desktop.ui.controls import DOWNLOAD_HINT, STAGE_LABELS, VIDEO_FILE, ControlsPanel
from mirage_desktop.ui.latency_panel import UPDATE_INTERVAL_S, LatencyPanel
from mirage_desktop.ui.remote_dialog import choose_engine
from mirage_desktop.ui.remote_mode import RemoteMode
from mirage_desktop.ui.preview import FrameBridge, PreviewWidget
from mirage_desktop.ui.workers import Task, WorkerPool
from mirage_desktop.webrtc.server import HttpServer

logger = logging.getLogger(__name__)

#: Settings field behind each stage's checkbox.
STAGE_SETTINGS: dict[str, str] = {"scrfd": "enable_scrfd", "liveportrait": "enable_liveportrait"}
AVATAR_STAGE = "liveportrait"
IMAGE_FILTER = "Images (" + " ".join(f"*{s}" for s in sorted(IMAGE_SUFFIXES)) + ")"
VIDEO_FILTER = "Videos (*.mp4 *.mov *.avi *.mkv *.webm *.m4v);;All files (*)"
_DOWNLOAD_GROUP = re.compile(re.escape(DOWNLOAD_HINT) + r"\s+([a-z_]+)")


def download_group(stage_name: str, reason: str) -> str:
    """The model group a stage's reason asks for (Animate may ask for ``scrfd``), else the stage's own."""
    match = _DOWNLOAD_GROUP.search(reason)
    return match.group(1) if match else stage_name


def device_description(device: str) -> str:
    """"CUDA · <GPU name>" or "CPU"; reads torch only if it is already imported."""
    if device.startswith("cuda"):
        torch = sys.modules.get("torch")
        try:
            index = int(device.split(":", 1)[1]) if ":" in device else 0
            return f"CUDA · {torch.cuda.get_device_name(index)}" if torch is not None else "CUDA"
        except Exception:  # noqa: BLE001 - driver hiccup: the plain word is still true
            return "CUDA"
    return "CPU"


def unique_destination(folder: Path, name: str) -> Path:
    """``folder/name``, or ``stem-2.ext``, ``stem-3.ext``... when that name is taken."""
    candidate = folder / name
    stem, suffix = candidate.stem, candidate.suffix
    n = 2
    while candidate.exists():
        candidate = folder / f"{stem}-{n}{suffix}"
        n += 1
    return candidate


def prepare_avatar(path: Path, stage: AvatarStage | None, copy_to: Path | None = None) -> tuple[Path, str]:
    """Worker thread: check the image, copy it into the avatar folder if asked, hand it to the avatar stage.

    Returns (the avatar's path, a note when the stage could not take it yet). Raises with a user-facing message when
    the image is unusable; a copy made here is removed again, so a bad portrait leaves nothing behind.
    """
    load_image(path)  # SourceError naming the file when it is not an image
    target = path
    if copy_to is not None:
        copy_to.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, copy_to)
        target = copy_to
    if stage is None:
        return target, ""
    try:
        stage.set_avatar(target)
    except StageUnavailable as exc:  # models missing: keep the choice, the stage uses it once it can run
        return target, str(exc)
    except BaseException:
        if copy_to is not None:
            copy_to.unlink(missing_ok=True)
        raise
    return target, ""


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
        self.settings_path = settings_path
        self.messages: list[tuple[str, str]] = []  # every message shown, oldest first
        self.pool = WorkerPool(parent=self)
        self._shut_down = False
        self._cameras: list[int] = []
        self._virtual_camera: Output | None = None
        self._webrtc: Any = None
        self._download: Task | None = None
        self._was_maximized = False
        self._first_run = "geometry" not in settings.ui
        settings.ensure_token()

        self.setWindowTitle("Mirage")
        self.setAcceptDrops(True)

        # ---- engine (here, or the remote stage of a remote engine: mirage_desktop.ui.remote_mode)
        self.remote, remote_problem = RemoteMode.from_settings(settings)
        self.engine = self._build_engine(source or settings.source)
        if remote_problem:
            self._pending_message = ("error", remote_problem)
        self.bridge = FrameBridge(self)
        self.engine.add_output(CallbackOutput(self.bridge.offer, name="preview"))
        self._engine_messages = EngineMessages(self)
        self._engine_messages.message.connect(self.show_message)
        self.engine.add_listener(self._engine_messages)

        # ---- widgets
        self.preview = PreviewWidget(self.bridge)
        self.preview.activated.connect(self.toggle_full_screen)
        self.latency = LatencyPanel()
        self.controls = ControlsPanel(settings.avatar_dir, bundled_avatar())
        self.avatar_picker = self.controls.avatar_picker
        self._build_layout()
        self.banner = MessageBanner(self.preview_frame)
        self._build_status_bar()
        self._connect_controls()
        self._build_shortcuts()
        self.menuBar().addAction("Engine...", lambda: choose_engine(self))  # this computer or a remote engine
        self._show_initial_state()
        self._restore_ui_state()

        self._stats_timer = QTimer(self)
        self._stats_timer.setInterval(int(UPDATE_INTERVAL_S * 1000))
        self._stats_timer.timeout.connect(self.refresh_stats)

    # ================================================================================================ building
    def _build_engine(self, spec: str) -> Engine:
        settings = self.settings
        try:
            source = make_engine_source(settings, spec)
        except SourceError as exc:
            self._pending_message = ("error", f"{exc} Showing the demo instead.")
            source = DemoSource(settings.output_width, settings.output_height, settings.fps)
        else:
            self._pending_message: tuple[str, str] | None = None
        engine = self.remote.build_engine(source) if self.remote is not None else build_engine(settings, source)
        for stage in engine.stages:
            field = STAGE_SETTINGS.get(stage.name)
            if field is not None:
                engine.set_stage_enabled(stage.name, bool(getattr(settings, field)))
        return engine

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
        layout.setContentsMargins(12, 12, 12, 8)
        layout.addWidget(self.splitter)
        self.setCentralWidget(central)
        self._central_layout = layout

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        bar.setSizeGripEnabled(False)
        self.status_reason = QLabel("")
        self.status_reason.setObjectName("statusReason")
        self.status_device = QLabel(device_description(self.engine.device))
        self.status_fps = QLabel("– fps")
        self.status_dropped = QLabel("0 dropped")
        bar.addWidget(self.status_reason, 1)
        bar.addPermanentWidget(self.status_device)
        bar.addPermanentWidget(self.status_fps)
        bar.addPermanentWidget(self.status_dropped)

    def _connect_controls(self) -> None:
        c = self.controls
        c.source_chosen.connect(self.choose_source)
        c.rescan_requested.connect(self.scan_cameras)
        c.stage_toggled.connect(self.set_stage_enabled)
        c.download_requested.connect(self.download_models)
        c.recalibrate_requested.connect(self.recalibrate)
        c.virtual_camera_toggled.connect(self.set_virtual_camera)
        c.webrtc_toggled.connect(self.set_webrtc)
        c.copy_token_requested.connect(self.copy_token)
        c.rotate_token_requested.connect(self.rotate_token)
        c.inset_toggled.connect(self.set_inset_visible)
        self.avatar_picker.chosen.connect(self.choose_avatar)
        self.avatar_picker.add_requested.connect(self.ask_add_portrait)

    def _build_shortcuts(self) -> None:
        bindings = {
            "Ctrl+1": lambda: self.toggle_stage("scrfd"),
            "Ctrl+2": lambda: self.toggle_stage("liveportrait"),
            "Space": self.recalibrate,
            "Ctrl+O": self.ask_add_portrait,
            "F11": self.toggle_full_screen,
            "Escape": self.leave_full_screen,
            "Ctrl+Q": self.close,
        }
        self.shortcuts: dict[str, QShortcut] = {}
        for keys, slot in bindings.items():
            shortcut = QShortcut(QKeySequence(keys), self)
            shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
            shortcut.activated.connect(slot)
            self.shortcuts[keys] = shortcut

    def _show_initial_state(self) -> None:
        names = {stage.name for stage in self.engine.stages} | (set(STAGE_SETTINGS) if self.remote else set())
        for name, toggle in self.controls.stages.items():
            if name in names:
                toggle.update_from(self._stage_entry(name))
            else:
                toggle.set_available(False, "Not available in this build.")
        self.controls.set_sources([], self.settings.source if self.engine.source.name != "demo" else "demo")
        self.avatar_picker.refresh(self.settings.avatar)
        self.controls.show_token(self.settings.token)
        self.controls.show_virtual_camera(False, "Off")
        self.controls.show_webrtc(False, "Off")

    def _stage_entry(self, name: str) -> dict[str, Any]:
        if self.remote is not None:
            return self.remote.stage_entry(name)
        stage = self.engine.stage(name)
        return {"enabled": stage.enabled, "reason": stage.reason, "label": stage.label}

    # ================================================================================================ lifecycle
    def start(self) -> None:
        """Open the source and start the engine off the GUI thread; probe cameras; restore outputs."""
        if self._pending_message is not None:
            self.show_message(*self._pending_message)
            self._pending_message = None
        elif self._first_run:
            self.show_message(
                "info",
                "Welcome to Mirage. This is the built-in demo: pick your camera on the right, then switch on face "
                "detection (Ctrl+1) and animation (Ctrl+2).",
                15_000,
            )
        self.pool.run(self.engine.start, on_result=self._on_engine_started, on_error=self._on_engine_failed)
        self.scan_cameras()
        self._stats_timer.start()
        if self.settings.virtual_camera:
            self.set_virtual_camera(True)
        if self.settings.http_enabled:
            self.set_webrtc(True)

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
        s = self.settings
        self.engine.source = DemoSource(s.output_width, s.output_height, s.fps)
        self.controls.show_source("demo")
        self.pool.run(self.engine.start, on_result=self._on_engine_started, on_error=self._on_engine_failed)

    def shutdown(self) -> None:
        """Save, stop the workers, the outputs and the engine (which releases the camera). Idempotent."""
        if self._shut_down:
            return
        self._shut_down = True
        self._stats_timer.stop()
        self._save_ui_state()
        self.save()
        self.engine.remove_listener(self._engine_messages)
        if self._download is not None:
            self._download.cancel()
        if not self.pool.shutdown(10_000):
            logger.warning("Background tasks still running at exit")
        self._stop_webrtc()
        self.engine.stop()  # closes the source and every output, the virtual camera included
        if self.remote is not None:
            self.remote.client.stop()
        self._virtual_camera = None
        logger.info("Window closed; engine stopped")

    def closeEvent(self, event: QCloseEvent) -> None:
        self.shutdown()
        event.accept()

    def save(self) -> None:
        try:
            save_settings(self.settings, self.settings_path)
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
        """About twice a second: one ``engine.stats()`` snapshot for the plots, switches and status bar."""
        stats = self.engine.stats()
        if self.remote is not None:
            self.remote.decorate(stats)
        self.latency.update_stats(stats)
        stages = stats.get("stages", {})
        reason = ""
        for name, toggle in self.controls.stages.items():
            entry = stages.get(name)
            if entry is None:
                continue
            toggle.update_from(entry)
            if entry.get("enabled") and entry.get("reason") and not reason:
                reason = f"{entry.get('label') or name}: {entry['reason']}"
        if not reason and not self.engine.running and self.engine.finished.is_set():
            reason = "The source stopped; choose another one."
        vcam_error = self._virtual_camera_error()
        if not reason and vcam_error:
            reason = f"Virtual camera: {vcam_error}"
        if self._virtual_camera is not None:
            if vcam_error:
                self.controls.show_virtual_camera(True, vcam_error, error=True)
            else:
                self.controls.show_virtual_camera(True, self._virtual_camera_status())
        if self.remote is not None:  # where the device would be: the round trip to the remote engine
            self.status_device.setText(self.remote.round_trip_text())
        self.status_reason.setText(reason)
        self.status_reason.setToolTip(reason)
        self.status_fps.setText(f"{stats.get('fps_out', 0.0):.1f} fps")
        self.status_dropped.setText(f"{stats.get('dropped', 0)} dropped")

    # ================================================================================================ source
    @Slot()
    def scan_cameras(self) -> None:
        self.controls.rescan.setEnabled(False)
        self.pool.run(list_cameras, on_result=self._on_cameras, on_error=self._on_cameras_failed)

    @Slot(object)
    def _on_cameras(self, cameras: list[int]) -> None:
        self._cameras = list(cameras)
        self.controls.rescan.setEnabled(True)
        current = self.controls.current_source()
        self.controls.set_sources(self._cameras, current if current != VIDEO_FILE else self.settings.source)

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
            source = make_engine_source(self.settings, spec)
        except SourceError as exc:
            self.show_message("error", str(exc))
            self.controls.show_source(self.settings.source)
            return
        self.engine.set_source(source)  # the capture thread opens it; a failure comes back as a message
        self.settings.source = spec
        self.controls.show_source(spec)
        self.save()

    # ================================================================================================ stages
    def _has_stage(self, name: str) -> bool:
        return any(stage.name == name for stage in self.engine.stages)

    @Slot(str, bool)
    def set_stage_enabled(self, name: str, enabled: bool) -> None:
        if self.remote is not None:
            self.remote.set_stage(self.pool, name, enabled, self.show_message)
            return
        if not self._has_stage(name):
            self.show_message("warning", f"{STAGE_LABELS.get(name, (name,))[0]} is not available in this build.")
            self.controls.stages[name].update_from({"enabled": False, "reason": ""})
            return
        self.engine.set_stage_enabled(name, enabled)
        field = STAGE_SETTINGS.get(name)
        if field is not None:
            setattr(self.settings, field, bool(enabled))
        self.controls.stages[name].update_from(self._stage_entry(name))
        self.save()

    def toggle_stage(self, name: str) -> None:
        toggle = self.controls.stages[name]
        if toggle.checkbox.isEnabled():
            toggle.checkbox.toggle()  # emits toggled -> set_stage_enabled
        else:
            self.set_stage_enabled(name, True)

    def _avatar_stage(self) -> AvatarStage | None:
        stage = self.engine.stage(AVATAR_STAGE) if self._has_stage(AVATAR_STAGE) else None
        return stage if isinstance(stage, AvatarStage) else None

    @Slot()
    def recalibrate(self) -> None:
        if self.remote is not None:
            self.remote.recalibrate(self.pool, self.show_message)
            return
        stage = self._avatar_stage()
        if stage is None:
            self.show_message("warning", "Recalibrate needs Animate (LivePortrait), which is not available in this build.")
            return
        if not stage.enabled:
            self.show_message("info", "Switch on Animate (LivePortrait) (Ctrl+2) first: Recalibrate sets its neutral pose.")
            return
        try:
            stage.recalibrate()
        except Exception as exc:  # noqa: BLE001 - shown to the user; the video goes on
            self.show_message("error", f"Recalibrate failed: {exc}")
            return
        self.show_message("info", "Recalibrated: your current pose is the neutral pose now.")

    @Slot(str)
    def download_models(self, name: str) -> None:
        """Run the model download for one stage in a worker, with a cancellable progress dialog."""
        try:
            from mirage_desktop.models.download import download
        except ImportError:
            self.show_message("warning", f"The model downloader is not in this build; run `{DOWNLOAD_HINT}` in a terminal.")
            return
        if self._download is not None:
            return
        label = STAGE_LABELS.get(name, (name,))[0]
        reason = self.engine.stage(name).reason if self._has_stage(name) else ""
        group = download_group(name, reason)
        dialog = QProgressDialog(f"Downloading the {group} models for {label}...", "Cancel", 0, 0, self)
        dialog.setWindowTitle("Download models")
        dialog.setMinimumDuration(0)
        dialog.setAutoClose(False)
        dialog.setAutoReset(False)
        dialog.setMinimumWidth(420)
        task = Task(download, group, self.settings.models_dir, name="download")
        task.kwargs.update(progress=task.report, cancel=task.cancel_event)
        dialog.canceled.connect(task.cancel)
        self._download = task
        self._download_dialog = dialog

        def on_progress(value: Any) -> None:
            done, total, text = _progress_parts(value)
            if total:
                dialog.setMaximum(1000)
                dialog.setValue(int(1000 * min(1.0, done / total)))
            if text:
                dialog.setLabelText(text)

        def finish() -> None:
            self._download = None
            dialog.canceled.disconnect(task.cancel)  # closing the dialog emits canceled: not a user's cancel
            dialog.close()
            dialog.deleteLater()

        def on_done(report: Any) -> None:
            finish()
            if getattr(report, "cancelled", task.cancel_event.is_set()):
                self.show_message("info", "Download cancelled; the next download resumes where it stopped.")
                return
            failed = getattr(report, "failed", [])
            if failed:
                self.show_message("error", "Download failed: " + "; ".join(str(err) for _entry, err in failed))
                return
            if self._has_stage(name):
                self.engine.stage(name).reset()
            self.set_stage_enabled(name, True)
            self.show_message("info", f"Models for {label} are ready.")

        def on_error(exc: BaseException) -> None:
            cancelled = task.cancel_event.is_set()
            finish()
            if cancelled:
                self.show_message("info", "Download cancelled.")
            else:
                self.show_message("error", f"Download failed: {exc}")

        dialog.show()
        self.pool.submit(task, on_result=on_done, on_error=on_error, on_progress=on_progress)

    # ================================================================================================ avatar
    @Slot()
    def ask_add_portrait(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Add a portrait", str(Path.home()), IMAGE_FILTER)
        if name:
            self.add_portrait(Path(name))

    def add_portrait(self, path: Path) -> None:
        """Copy a portrait into the avatar folder and make it the avatar (checked off the GUI thread)."""
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            self.show_message(
                "error", f"{path.name} is not a supported image; use one of {', '.join(sorted(IMAGE_SUFFIXES))}."
            )
            return
        avatar_dir = self.settings.avatar_dir
        inside = path.resolve().parent == avatar_dir.resolve() if avatar_dir.exists() else False
        copy_to = None if inside else unique_destination(avatar_dir, path.name)
        self._set_avatar(path, copy_to)

    @Slot(object)
    def choose_avatar(self, path: Path) -> None:
        self._set_avatar(path, None)

    def _set_avatar(self, path: Path, copy_to: Path | None) -> None:
        self.avatar_picker.set_busy(f"Preparing {path.name}...")
        if self.remote is not None:
            self.pool.run(self.remote.upload_avatar, path, on_result=self._on_avatar_ready,
                          on_error=self._on_avatar_failed)
            return
        self.pool.run(
            prepare_avatar, path, self._avatar_stage(), copy_to,
            on_result=self._on_avatar_ready, on_error=self._on_avatar_failed,
        )

    @Slot(object)
    def _on_avatar_ready(self, result: tuple[Path, str]) -> None:
        path, note = result
        self.avatar_picker.set_busy("")
        self.settings.avatar = None if path == bundled_avatar() else path
        self.save()
        self.avatar_picker.refresh(path)
        if note:
            self.show_message("warning", f"Avatar {path.name} saved; it is used once Animate can run: {note}")
        else:
            self.show_message("info", f"Avatar: {path.stem}")

    @Slot(object)
    def _on_avatar_failed(self, exc: BaseException) -> None:
        self.avatar_picker.set_busy("")
        self.avatar_picker.refresh(self.settings.avatar)  # the old avatar stays
        self.show_message("error", f"That portrait cannot be used: {exc}")

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self._dropped_image(event) is not None:
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        path = self._dropped_image(event)
        if path is not None:
            event.acceptProposedAction()
            self.add_portrait(path)

    @staticmethod
    def _dropped_image(event: QDragEnterEvent | QDropEvent) -> Path | None:
        mime = event.mimeData()
        if not mime.hasUrls():
            return None
        for url in mime.urls():
            if url.isLocalFile():
                path = Path(url.toLocalFile())
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    return path
        return None

    # ================================================================================================ outputs
    def _virtual_camera_error(self) -> str:
        output = self._virtual_camera
        if output is None:
            return ""
        error = getattr(output, "error", None)
        return str(error) if error else ""

    def _virtual_camera_status(self) -> str:
        """"Sending to /dev/video10 (v4l2loopback)", "starting", or the status word the output reports."""
        output = self._virtual_camera
        if output is None:
            return "Off"
        status = str(getattr(output, "status", "") or "on")
        device, backend = getattr(output, "device", None), getattr(output, "backend", None)
        if status == "running" and device:
            return f"Sending to {device}" + (f" ({backend})" if backend else "")
        return status.capitalize()

    @Slot(bool)
    def set_virtual_camera(self, on: bool) -> None:
        if not on:
            output, self._virtual_camera = self._virtual_camera, None
            if output is not None:
                self.engine.remove_output(output)  # also closes it
            self.settings.virtual_camera = False
            self.controls.show_virtual_camera(False, "Off")
            self.save()
            return
        if self._virtual_camera is not None:
            return
        s = self.settings
        output = VirtualCameraOutput(s.output_width, s.output_height, s.fps)
        self.controls.show_virtual_camera(True, "Starting...")
        self.pool.run(
            output.start,
            on_result=lambda _r: self._on_virtual_camera_started(output),
            on_error=lambda exc: self._on_virtual_camera_failed(output, exc),
        )

    def _on_virtual_camera_started(self, output: Output) -> None:
        if self._shut_down:
            output.close()
            return
        self._virtual_camera = output
        self.engine.add_output(output)
        self.settings.virtual_camera = True
        self.save()
        self.controls.show_virtual_camera(True, self._virtual_camera_status())

    def _on_virtual_camera_failed(self, output: Output, exc: BaseException) -> None:
        try:
            output.close()
        except Exception:
            logger.exception("Closing the virtual camera failed")
        self.settings.virtual_camera = False
        self.save()
        self.controls.show_virtual_camera(False, str(exc), error=True)
        self.show_message("error", f"Virtual camera: {exc}")

    @Slot(bool)
    def set_webrtc(self, on: bool) -> None:
        if not on:
            self._stop_webrtc()
            self.settings.http_enabled = False
            self.controls.show_webrtc(False, "Off")
            self.save()
            return
        if self._webrtc is not None:
            return
        server = HttpServer(self.engine, self.settings)
        self.controls.show_webrtc(True, "Starting...")
        self.pool.run(
            server.start,
            on_result=lambda _r: self._on_webrtc_started(server),
            on_error=lambda exc: self._on_webrtc_failed(exc),
        )

    def _on_webrtc_started(self, server: Any) -> None:
        if self._shut_down:
            server.stop()
            return
        self._webrtc = server
        self.settings.http_enabled = True
        self.save()
        url = str(getattr(server, "url", ""))
        self.controls.show_webrtc(True, f'Serving at <a href="{url}">{url}</a>' if url else "On")

    def _on_webrtc_failed(self, exc: BaseException) -> None:
        self.settings.http_enabled = False
        self.save()
        self.controls.show_webrtc(False, str(exc), error=True)
        self.show_message("error", f"WebRTC: {exc}")

    def _stop_webrtc(self) -> None:
        server, self._webrtc = self._webrtc, None
        if server is not None:
            try:
                server.stop()
            except Exception:
                logger.exception("Stopping the WebRTC server failed")

    @Slot()
    def copy_token(self) -> None:
        QGuiApplication.clipboard().setText(self.settings.token)
        self.show_message("info", "Token copied to the clipboard.")

    @Slot()
    def rotate_token(self) -> None:
        self.settings.token = ""
        self.settings.ensure_token()
        self.controls.show_token(self.settings.token)
        self.save()
        self.show_message("info", "New token: viewers with the old one are refused from now on.")

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
        self._central_layout.setContentsMargins(12, 12, 12, 8)
        if self._was_maximized:
            self.showMaximized()
        else:
            self.showNormal()

    def _restore_ui_state(self) -> None:
        ui = self.settings.ui
        inset = bool(ui.get("camera_inset", True))
        self.controls.show_inset.blockSignals(True)
        self.controls.show_inset.setChecked(inset)
        self.controls.show_inset.blockSignals(False)
        self.preview.set_inset_visible(inset)
        geometry = ui.get("geometry")
        restored = False
        if isinstance(geometry, str) and geometry:
            restored = self.restoreGeometry(QByteArray.fromBase64(geometry.encode("ascii")))
        if not restored:
            screen = QGuiApplication.primaryScreen()
            available = screen.availableGeometry() if screen is not None else None
            width, height = 1360, 860
            if available is not None and available.width() > 0:
                width = min(width, int(available.width() * 0.92))
                height = min(height, int(available.height() * 0.92))
            self.resize(width, height)
        splitter = ui.get("splitter")
        if isinstance(splitter, str) and splitter:
            self.splitter.restoreState(QByteArray.fromBase64(splitter.encode("ascii")))

    def _save_ui_state(self) -> None:
        if self.isFullScreen():
            self.leave_full_screen()
        ui = self.settings.ui
        ui["geometry"] = bytes(self.saveGeometry().toBase64().data()).decode("ascii")
        ui["splitter"] = bytes(self.splitter.saveState().toBase64().data()).decode("ascii")
        ui["camera_inset"] = self.preview.inset_visible


def _progress_parts(value: Any) -> tuple[float, float, str]:
    """(done, total, text) from a downloader ProgressEvent, a fraction, a (done, total) pair, or a dict."""
    if hasattr(value, "overall_done") and hasattr(value, "entry"):
        entry = getattr(value.entry, "local_path", "")
        text = f"{value.phase} {entry} ({value.file_index + 1} of {max(1, value.file_count)})"
        if value.message:
            text += f"\n{value.message}"
        return float(value.overall_done), float(value.overall_total or 0), text
    if isinstance(value, (int, float)):
        return float(value), 1.0, ""
    if isinstance(value, tuple) and len(value) >= 2:
        text = str(value[2]) if len(value) > 2 else ""
        return float(value[0] or 0), float(value[1] or 0), text
    if isinstance(value, dict):
        done = value.get("done", value.get("bytes_done", 0)) or 0
        total = value.get("total", value.get("bytes_total", 0)) or 0
        return float(done), float(total), str(value.get("message") or value.get("file") or "")
    return 0.0, 0.0, str(value)
