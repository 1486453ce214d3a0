"""The side panel: source, avatar, model switches, animation options, outputs and view options.

It only shows state and emits what the user asked for; :class:`~mirage_desktop.ui.main_window.MainWindow` talks to
the engine. Every control keeps keyboard focus off (``NoFocus``) so Space always means "Recalibrate".
"""

from __future__ import annotations

import logging
from pathlib import Path
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from mirage_desktop.engine.stage import StageStatus
from mirage_desktop.stages.specs import STAGE_SPECS, stage_spec
from mirage_desktop.ui.animation_panel import AnimationPanel
from mirage_desktop.ui.avatar_picker import AvatarPicker
from mirage_desktop.ui.inference import InferenceChooser

logger = logging.getLogger(__name__)

VIDEO_FILE = "__video_file__"


def source_label(spec: str) -> str:
    if spec == "demo":
        return "Demo (built-in)"
    if spec.isdigit():
        return f"Camera {spec}"
    return Path(spec).name or spec


def _no_focus(widget: QWidget) -> QWidget:
    widget.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    return widget


class Section(QFrame):
    """A titled card."""

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("section")
        self.body = QVBoxLayout(self)
        self.body.setContentsMargins(12, 10, 12, 12)
        self.body.setSpacing(8)
        heading = QLabel(title.upper())
        heading.setObjectName("sectionTitle")
        self.body.addWidget(heading)


class StageToggle(QWidget):
    """A model switch with the reason it cannot run, and a download button when models are missing."""

    toggled = Signal(str, bool)
    download_requested = Signal(str)

    def __init__(self, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.name = name
        spec = stage_spec(name)
        label, shortcut = spec.label, spec.shortcut
        self.checkbox = QCheckBox(label)
        _no_focus(self.checkbox)
        self.checkbox.setToolTip(f"Switch {label} on or off ({shortcut}); takes effect on the next frame")
        self.checkbox.toggled.connect(lambda on: self.toggled.emit(self.name, on))
        key = QLabel(shortcut)
        key.setObjectName("shortcut")
        self.reason = QLabel("")
        self.reason.setObjectName("reason")
        self.reason.setWordWrap(True)
        self.reason.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.reason.hide()
        self.download = QPushButton("Download models...")
        _no_focus(self.download)
        self.download.clicked.connect(lambda: self.download_requested.emit(self.name))
        self.download.hide()

        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.checkbox, 1)
        row.addWidget(key)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(row)
        layout.addWidget(self.reason)
        layout.addWidget(self.download, 0, Qt.AlignmentFlag.AlignLeft)

    def set_available(self, available: bool, why: str = "") -> None:
        self.checkbox.setEnabled(available)
        if not available:
            self._show_reason(why)

    def show_status(self, enabled: bool, status: StageStatus) -> None:
        """Reflect the stage (it may have switched itself off): its switch, its reason, and the download button
        when a model group would fix it."""
        if self.checkbox.isChecked() != enabled:
            self.checkbox.blockSignals(True)
            self.checkbox.setChecked(enabled)
            self.checkbox.blockSignals(False)
        self._show_reason("" if status.state == "off" else status.reason, status.model_group is not None)

    def _show_reason(self, reason: str, downloadable: bool = False) -> None:
        if reason != self.reason.text():
            self.reason.setText(reason)
        self.reason.setVisible(bool(reason))
        self.download.setVisible(downloadable)

    @property
    def reason_text(self) -> str:
        """The reason on show ("" when none)."""
        return self.reason.text() if not self.reason.isHidden() else ""


class ControlsPanel(QWidget):
    """Everything the user sets, grouped in cards."""

    source_chosen = Signal(str)  # "demo", a camera index, a file path, or VIDEO_FILE
    rescan_requested = Signal()
    stage_toggled = Signal(str, bool)
    download_requested = Signal(str)
    recalibrate_requested = Signal()
    virtual_camera_toggled = Signal(bool)
    webrtc_toggled = Signal(bool)
    copy_token_requested = Signal()
    rotate_token_requested = Signal()
    inset_toggled = Signal(bool)

    def __init__(self, avatar_dir: Path, bundled_avatar: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("controls")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(10)

        # Source
        source = Section("Camera")
        self.source_combo = QComboBox()
        _no_focus(self.source_combo)
        self.source_combo.setToolTip("The video that drives the avatar")
        self.source_combo.activated.connect(self._on_source_activated)
        self.rescan = QToolButton()
        self.rescan.setText("⟳")
        self.rescan.setToolTip("Look for cameras again")
        _no_focus(self.rescan)
        self.rescan.clicked.connect(self.rescan_requested)
        row = QHBoxLayout()
        row.addWidget(self.source_combo, 1)
        row.addWidget(self.rescan)
        source.body.addLayout(row)
        self.show_inset = QCheckBox("Show camera inset")
        _no_focus(self.show_inset)
        self.show_inset.setChecked(True)
        self.show_inset.toggled.connect(self.inset_toggled)
        source.body.addWidget(self.show_inset)
        layout.addWidget(source)

        # Avatar
        avatar = Section("Avatar")
        self.avatar_picker = AvatarPicker(avatar_dir, bundled_avatar)
        avatar.body.addWidget(self.avatar_picker)
        layout.addWidget(avatar)

        # Models
        models = Section("Models")
        self.stages: dict[str, StageToggle] = {}
        for spec in STAGE_SPECS:
            toggle = StageToggle(spec.name)
            toggle.toggled.connect(self.stage_toggled)
            toggle.download_requested.connect(self.download_requested)
            self.stages[spec.name] = toggle
            models.body.addWidget(toggle)
        self.recalibrate = QPushButton("Recalibrate")
        _no_focus(self.recalibrate)
        self.recalibrate.setToolTip("Take your current pose as the neutral pose (Space)")
        self.recalibrate.clicked.connect(self.recalibrate_requested)
        recal_row = QHBoxLayout()
        recal_row.addWidget(self.recalibrate)
        key = QLabel("Space")
        key.setObjectName("shortcut")
        recal_row.addStretch(1)
        recal_row.addWidget(key)
        models.body.addLayout(recal_row)
        self.inference = InferenceChooser()
        models.body.addWidget(self.inference)
        layout.addWidget(models)

        # Animation (folds away)
        self.animation = AnimationPanel()
        layout.addWidget(self.animation)

        # Outputs
        outputs = Section("Outputs")
        self.virtual_camera = QCheckBox("Virtual camera")
        _no_focus(self.virtual_camera)
        self.virtual_camera.setToolTip("Send the avatar to the 'Mirage' camera that video-call apps can pick")
        self.virtual_camera.toggled.connect(self.virtual_camera_toggled)
        self.virtual_camera_status = QLabel("Off")
        self.virtual_camera_status.setObjectName("outputStatus")
        self.virtual_camera_status.setWordWrap(True)
        self.virtual_camera_status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        outputs.body.addWidget(self.virtual_camera)
        outputs.body.addWidget(self.virtual_camera_status)

        self.webrtc = QCheckBox("WebRTC")
        _no_focus(self.webrtc)
        self.webrtc.setToolTip("Serve the avatar to browsers and OBS over WebRTC (WHEP), protected by the token")
        self.webrtc.toggled.connect(self.webrtc_toggled)
        self.webrtc_status = QLabel("Off")
        self.webrtc_status.setObjectName("outputStatus")
        self.webrtc_status.setWordWrap(True)
        self.webrtc_status.setOpenExternalLinks(True)
        self.webrtc_status.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.token = QLineEdit()
        self.token.setReadOnly(True)
        self.token.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.token.setToolTip("The token a viewer needs (Authorization: Bearer ...)")
        self.copy_token = QPushButton("Copy")
        _no_focus(self.copy_token)
        self.copy_token.clicked.connect(self.copy_token_requested)
        self.rotate_token = QPushButton("New token")
        _no_focus(self.rotate_token)
        self.rotate_token.setToolTip("Replace the token; viewers with the old one are refused from now on")
        self.rotate_token.clicked.connect(self.rotate_token_requested)
        token_row = QHBoxLayout()
        token_row.setSpacing(6)
        token_label = QLabel("Token")
        token_label.setObjectName("hint")
        token_row.addWidget(token_label)
        token_row.addWidget(self.token, 1)
        token_row.addWidget(self.copy_token)
        token_row.addWidget(self.rotate_token)
        outputs.body.addWidget(self.webrtc)
        outputs.body.addWidget(self.webrtc_status)
        outputs.body.addLayout(token_row)
        layout.addWidget(outputs)
        layout.addStretch(1)
        self._cards = layout

    def add_card(self, card: QWidget) -> None:
        """Another card at the end of the panel (above its closing stretch): the Audio card under Outputs."""
        self._cards.insertWidget(self._cards.count() - 1, card)

    # ------------------------------------------------------------------------------------------------ source
    def set_sources(self, cameras: list[int], current: str) -> None:
        """Fill the chooser: demo, the cameras found, the current file (if any), then "Video file..."."""
        specs = ["demo", *(str(c) for c in cameras)]
        if current not in specs:
            specs.append(current)
        self.source_combo.blockSignals(True)
        self.source_combo.clear()
        for spec in specs:
            label = source_label(spec)
            if spec.isdigit() and int(spec) not in cameras:
                label += " (not found)"
            self.source_combo.addItem(label, spec)
            if spec not in ("demo",) and not spec.isdigit():
                self.source_combo.setItemData(self.source_combo.count() - 1, spec, Qt.ItemDataRole.ToolTipRole)
        self.source_combo.insertSeparator(self.source_combo.count())
        self.source_combo.addItem("Video file...", VIDEO_FILE)
        self.source_combo.setCurrentIndex(max(0, self.source_combo.findData(current)))
        self.source_combo.blockSignals(False)

    def current_source(self) -> str:
        return str(self.source_combo.currentData())

    def show_source(self, spec: str) -> None:
        index = self.source_combo.findData(spec)
        if index < 0:
            cameras = [int(self.source_combo.itemData(i)) for i in range(self.source_combo.count())
                       if str(self.source_combo.itemData(i)).isdigit()]
            self.set_sources(cameras, spec)
        else:
            self.source_combo.setCurrentIndex(index)

    def _on_source_activated(self, index: int) -> None:
        self.source_chosen.emit(str(self.source_combo.itemData(index)))

    # ------------------------------------------------------------------------------------------------ outputs
    def show_token(self, token: str) -> None:
        """Only the start of the token is on screen (screen shares); Copy puts the whole of it on the clipboard."""
        self.token.setText(f"{token[:6]}…" if token else "")
    @staticmethod
    def _set_checked_quietly(box: QCheckBox, on: bool) -> None:
        box.blockSignals(True)
        box.setChecked(on)
        box.blockSignals(False)

    @staticmethod
    def _short(text: str, limit: int = 110) -> str:
        """The panel shows the gist; the tooltip (and the banner) carry the whole message with its fix."""
        return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"

    def show_virtual_camera(self, on: bool, status: str, error: bool = False) -> None:
        self._set_checked_quietly(self.virtual_camera, on)
        self.virtual_camera_status.setText(self._short(status))
        self.virtual_camera_status.setToolTip(status)
        self.virtual_camera_status.setProperty("error", error)
        self.virtual_camera_status.style().polish(self.virtual_camera_status)

    def show_webrtc(self, on: bool, status: str, error: bool = False) -> None:
        self._set_checked_quietly(self.webrtc, on)
        self.webrtc_status.setText(status if "<a " in status else self._short(status))
        self.webrtc_status.setToolTip("" if "<a " in status else status)
        self.webrtc_status.setProperty("error", error)
        self.webrtc_status.style().polish(self.webrtc_status)
