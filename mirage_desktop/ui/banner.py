"""Non-blocking messages: a banner over the top of the preview that fades away by itself. Never a modal dialog."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QWidget

#: How long each level stays up, in milliseconds.
DURATION_MS = {"info": 4000, "warning": 8000, "error": 12000}


class MessageBanner(QFrame):
    """Shows the latest message; a newer one replaces it. Clicking the cross hides it early."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        self.level = "info"
        self._label = QLabel("")
        self._label.setWordWrap(True)
        self._label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton()
        close.setObjectName("bannerClose")
        close.setText("✕")
        close.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        close.clicked.connect(self.hide)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(14, 8, 8, 8)
        layout.setSpacing(8)
        layout.addWidget(self._label, 1)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.hide)
        self.hide()

    def text(self) -> str:
        return self._label.text()

    def show_message(self, level: str, text: str, duration_ms: int | None = None) -> None:
        self.level = level if level in DURATION_MS else "info"
        self.setProperty("level", self.level)
        self.style().unpolish(self)
        self.style().polish(self)
        self._label.setText(text)
        self.place()
        self.show()
        self.raise_()
        self._timer.start(duration_ms or DURATION_MS[self.level])

    def place(self) -> None:
        """Centre along the top of the parent, at most 640 px wide."""
        parent = self.parentWidget()
        if parent is None:
            return
        width = max(200, min(640, parent.width() - 32))
        layout = self.layout()
        height = layout.totalHeightForWidth(width) if layout is not None and layout.hasHeightForWidth() else -1
        self.setFixedSize(width, height if height > 0 else self.sizeHint().height())
        self.move((parent.width() - self.width()) // 2, 16)
