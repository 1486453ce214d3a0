"""The Audio card under Outputs: the "Mirage Microphone" switch, the real microphone, its level, the delay the voice
gets to match the video, and the user's offset; and its controller, which talks to the session.

Making the virtual microphone is slow (a sound server round trip, a driver to find), so it starts on a worker
thread; the card then follows the audio thread's own status and figures on every stats tick of the window.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QProgressBar, QSlider, QToolButton, QWidget

from mirage_desktop.audio.devices import DEFAULT, Microphone, list_microphones
from mirage_desktop.audio.output import MicrophoneOutput
from mirage_desktop.audio.virtual_mic import sound_server
from mirage_desktop.session import Session, SessionClosed
from mirage_desktop.ui.controls import Section
from mirage_desktop.ui.workers import WorkerPool

#: The offset slider's range (ms): earlier by up to a camera's typical lag, later by a few frames' worth.
OFFSET_RANGE_MS = (-200, 300)
METER_FLOOR_DB = -60
SAVE_DELAY_MS = 500


def delay_text(stats: dict[str, Any]) -> str:
    """"Voice delayed 62 ms to match the video" (or what keeps it from it)."""
    actual = stats.get("delay_actual_ms")
    if stats.get("status") != "running" or actual is None:
        return str(stats.get("message") or "Starting...")
    wanted, shortest = stats.get("delay_target_ms"), stats.get("min_delay_ms")
    if wanted is not None and shortest is not None and wanted < shortest - 5:
        return f"Voice delayed {actual:.0f} ms, as little as the sound allows (the video: {wanted:.0f} ms)"
    return f"Voice delayed {actual:.0f} ms to match the video"


class AudioCard(Section):
    """The widgets; signals say what the user asked for."""

    enabled_toggled = Signal(bool)
    microphone_chosen = Signal(str)
    offset_changed = Signal(int)
    rescan_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Audio", parent)
        self.enabled = QCheckBox("Mirage Microphone")
        self.enabled.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.enabled.setToolTip("Your microphone, delayed to match the avatar's video: pick 'Mirage Microphone' "
                                "as the microphone in Zoom or Meet")
        self.enabled.toggled.connect(self.enabled_toggled)
        self.status = QLabel("Off")
        self.status.setObjectName("outputStatus")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.microphone = QComboBox()
        self.microphone.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.microphone.setToolTip("Your real microphone")
        self.microphone.activated.connect(lambda i: self.microphone_chosen.emit(str(self.microphone.itemData(i))))
        self.rescan = QToolButton()
        self.rescan.setText("⟳")
        self.rescan.setToolTip("Look for microphones again")
        self.rescan.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.rescan.clicked.connect(self.rescan_requested)
        row = QHBoxLayout()
        row.addWidget(self.microphone, 1)
        row.addWidget(self.rescan)
        self.level = QProgressBar()
        self.level.setRange(METER_FLOOR_DB, 0)
        self.level.setValue(METER_FLOOR_DB)
        self.level.setTextVisible(False)
        self.level.setFixedHeight(6)
        self.level.setToolTip("The microphone's level")
        self.offset = QSlider(Qt.Orientation.Horizontal)
        self.offset.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.offset.setRange(*OFFSET_RANGE_MS)
        self.offset.setSingleStep(5)
        self.offset.setPageStep(20)
        self.offset.setToolTip("Shift the voice against the video (positive: later), e.g. for a camera's own lag")
        self.offset_label = QLabel()
        self.offset_label.setObjectName("hint")
        self.offset.valueChanged.connect(self._on_offset)
        offset_row = QHBoxLayout()
        offset_row.addWidget(QLabel("Offset"))
        offset_row.addWidget(self.offset, 1)
        offset_row.addWidget(self.offset_label)
        self.body.addWidget(self.enabled)
        self.body.addWidget(self.status)
        self.body.addLayout(row)
        self.body.addWidget(self.level)
        self.body.addLayout(offset_row)
        self.show_offset(0)

    def _on_offset(self, value: int) -> None:
        self.offset_label.setText(f"{value:+d} ms")
        self.offset_changed.emit(value)

    def show_offset(self, value: float) -> None:
        self.offset.blockSignals(True)
        self.offset.setValue(int(round(value)))
        self.offset.blockSignals(False)
        self.offset_label.setText(f"{int(round(value)):+d} ms")

    def set_microphones(self, microphones: list[Microphone], current: str) -> None:
        """The chooser: the system default first, then every microphone found (``current`` kept even if gone)."""
        self.microphone.clear()
        default = next((m.description for m in microphones if m.default), "")
        self.microphone.addItem(f"System default{f' ({default})' if default else ''}", DEFAULT)
        for m in microphones:
            self.microphone.addItem(m.description, m.name)
            self.microphone.setItemData(self.microphone.count() - 1, m.name, Qt.ItemDataRole.ToolTipRole)
        if self.microphone.findData(current) < 0:
            self.microphone.addItem(f"{current} (not found)", current)
        self.microphone.setCurrentIndex(self.microphone.findData(current))

    def show_state(self, on: bool, text: str, error: bool = False, level_db: float | None = None) -> None:
        self.enabled.blockSignals(True)
        self.enabled.setChecked(on)
        self.enabled.blockSignals(False)
        self.status.setText(text)
        self.status.setToolTip(text)
        self.status.setProperty("error", error)
        self.status.style().polish(self.status)
        self.level.setValue(int(max(METER_FLOOR_DB, min(0.0, level_db if level_db is not None else -120.0))))


class AudioController(QObject):
    """Connects the Audio card to the session; ``save`` persists the settings after a change."""

    message = Signal(str, str)  # level, text

    def __init__(self, session: Session, card: AudioCard, pool: WorkerPool, save: Callable[[], None],
                 parent: QWidget) -> None:
        super().__init__(parent)
        self.session = session
        self.card = card
        self._pool = pool
        self._save = save
        self._starting = False
        self._save_soon = QTimer(self)  # the slider moves in many small steps: one save once it rests
        self._save_soon.setSingleShot(True)
        self._save_soon.setInterval(SAVE_DELAY_MS)
        self._save_soon.timeout.connect(save)
        card.enabled_toggled.connect(self.set_enabled)
        card.microphone_chosen.connect(self.choose_microphone)
        card.offset_changed.connect(self.set_offset)
        card.rescan_requested.connect(self.rescan)
        card.show_offset(session.settings.audio_offset_ms)
        card.show_state(False, "Off")
        self.rescan()

    def restore(self) -> None:
        """Switch the Mirage Microphone back on if it was on last time."""
        if self.session.settings.virtual_microphone:
            self.set_enabled(True)

    @Slot()
    def rescan(self) -> None:
        server = sound_server()
        try:
            microphones = list_microphones(server)
        finally:
            if server is not None:
                server.close()
        self.card.set_microphones(microphones, self.session.settings.microphone)

    @Slot(bool)
    def set_enabled(self, on: bool) -> None:
        if not on:
            self.session.stop_microphone()
            self.card.show_state(False, "Off")
            self._save()
            return
        if self.session.microphone is not None or self._starting:
            return
        self._starting = True
        self.card.show_state(True, "Starting...")
        self._pool.run(self.session.start_microphone, on_result=self._on_started, on_error=self._on_failed)

    @Slot(object)
    def _on_started(self, _output: MicrophoneOutput) -> None:
        self._starting = False
        self._save()
        self.refresh()

    @Slot(object)
    def _on_failed(self, exc: BaseException) -> None:
        self._starting = False
        if isinstance(exc, SessionClosed):
            return
        self._save()
        self.card.show_state(False, str(exc), error=True)
        self.message.emit("error", f"Mirage Microphone: {exc}")

    @Slot(str)
    def choose_microphone(self, spec: str) -> None:
        self.session.set_microphone_device(spec)
        self._save()

    @Slot(int)
    def set_offset(self, offset_ms: int) -> None:
        self.session.set_audio_offset(offset_ms)  # heard at once
        self._save_soon.start()

    def refresh(self) -> None:
        """Show the audio thread's live state (called on the window's stats tick)."""
        output = self.session.microphone
        if output is None:
            return
        stats = output.stats()
        self.card.show_state(True, delay_text(stats), error=stats.get("status") == "waiting",
                             level_db=stats.get("level_dbfs"))
