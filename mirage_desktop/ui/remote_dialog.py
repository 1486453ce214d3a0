"""Engine: "This computer" or "Remote..." (URL, token, Test), remembered in the settings."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot
from PySide6.QtWidgets import (
    QButtonGroup, QDialog, QDialogButtonBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton, QRadioButton,
    QVBoxLayout, QWidget,
)

from mirage_desktop.config import Settings
from mirage_desktop.remote.control import RemoteControl, RemoteControlError
from mirage_desktop.remote.link import RemoteLink
from mirage_desktop.remote.target import RemoteUrlError, check_remote_url


def remote_from_settings(settings: Settings) -> tuple[RemoteLink | None, str]:
    """(link, "") when a remote engine is chosen, (None, "") for this computer, (None, why) for a bad URL."""
    try:
        return RemoteLink.from_settings(settings), ""
    except RemoteUrlError as exc:
        return None, f"Remote engine not used: {exc}"


def probe_remote(url: str, token: str) -> str:
    """One line for the dialog: the engine answers with the token, or why not. Blocking: run it off the GUI."""
    try:
        stages = RemoteControl(check_remote_url(url), token).stages()
    except (RemoteUrlError, RemoteControlError) as exc:
        return f"✗ {exc}"
    parts = [f"{s.get('label') or n}: {'on' if s.get('enabled') else 'off'}" for n, s in stages.items()]
    return "✓ The engine answers. " + ("; ".join(parts) if parts else "")


class _Signals(QObject):
    done = Signal(str)


class _TestRun(QRunnable):
    def __init__(self, url: str, token: str, signals: _Signals) -> None:
        super().__init__()
        self.url, self.token, self.signals = url, token, signals

    def run(self) -> None:
        self.signals.done.emit(probe_remote(self.url, self.token))


class EngineDialog(QDialog):
    """Where the animation runs. ``apply()`` writes the choice into the settings (the caller saves them)."""

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.setWindowTitle("Engine")
        self.local = QRadioButton("This computer")
        self.remote = QRadioButton("Remote...")
        group = QButtonGroup(self)
        group.addButton(self.local)
        group.addButton(self.remote)
        self.url = QLineEdit(settings.remote_url)
        self.url.setPlaceholderText("https://gpu.example.com:8765")
        self.token = QLineEdit(settings.remote_token)
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setPlaceholderText("the engine's token")
        self.test = QPushButton("Test")
        self.test_result = QLabel("")
        self.test_result.setWordWrap(True)
        self.test_result.setObjectName("engineTestResult")
        note = QLabel("The camera, preview, virtual camera and recorder stay on this computer; the animation runs "
                      "on the remote engine. The choice applies at once.")
        note.setWordWrap(True)

        form = QFormLayout()
        form.addRow("URL", self.url)
        row = QHBoxLayout()
        row.addWidget(self.token, 1)
        row.addWidget(self.test)
        form.addRow("Token", row)
        self.remote_box = QWidget()
        self.remote_box.setLayout(form)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.local)
        layout.addWidget(self.remote)
        layout.addWidget(self.remote_box)
        layout.addWidget(self.test_result)
        layout.addWidget(note)
        layout.addWidget(buttons)

        (self.remote if settings.remote_url else self.local).setChecked(True)
        self.remote.toggled.connect(self._show_remote)
        self._show_remote(self.remote.isChecked())
        self._signals = _Signals(self)
        self._signals.done.connect(self._on_tested)
        self.test.clicked.connect(self.run_test)
        self.setMinimumWidth(460)

    @Slot(bool)
    def _show_remote(self, on: bool) -> None:
        self.remote_box.setEnabled(on)

    @Slot()
    def run_test(self) -> None:
        self.test.setEnabled(False)
        self.test_result.setText("Testing...")
        QThreadPool.globalInstance().start(_TestRun(self.url.text().strip(), self.token.text().strip(),
                                                    self._signals))

    @Slot(str)
    def _on_tested(self, text: str) -> None:
        self.test.setEnabled(True)
        self.test_result.setText(text)

    def apply(self) -> Any:
        if self.remote.isChecked():
            self.settings.remote_url = self.url.text().strip()
            self.settings.remote_token = self.token.text().strip()
        else:
            self.settings.remote_url = ""  # the token stays remembered for the next time
        return self.settings


def choose_engine(window: Any) -> bool:
    """The window's Engine... action: ask, remember (saved at once), and switch the window's engine now when the
    choice changed (``window.switch_engine``)."""
    dialog = EngineDialog(window.settings, window)
    if dialog.exec() != QDialog.DialogCode.Accepted:
        return False
    before = (window.settings.remote_url, window.settings.remote_token)
    dialog.apply()
    window.save()
    where = window.settings.remote_url or "this computer"
    if (window.settings.remote_url, window.settings.remote_token) != before:
        window.switch_engine()
        window.show_message("info", f"Engine: {where}.")
    return True
