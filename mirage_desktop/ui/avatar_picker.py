"""Choose the portrait to animate: thumbnails of the user's avatar folder plus the bundled portrait."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QIcon, QImage, QImageReader, QPainter, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from mirage_desktop.engine.sources import IMAGE_SUFFIXES

logger = logging.getLogger(__name__)

THUMBNAIL = 64
_PATH_ROLE = Qt.ItemDataRole.UserRole
#: The number keys 1-9 pick the first nine portraits; their thumbnails wear the digit.
NUMBERED = 9


def portrait_files(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name (missing folder: none)."""
    if not folder.is_dir():
        return []
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda p: p.name.lower(),
    )


def thumbnail(path: Path, size: int = THUMBNAIL) -> QPixmap | None:
    """A square, centre-cropped thumbnail decoded at reduced size (cheap even for large photos)."""
    reader = QImageReader(str(path))
    reader.setAutoTransform(True)
    full = reader.size()
    if full.isValid() and full.width() > 0 and full.height() > 0:
        scale = size / min(full.width(), full.height())
        reader.setScaledSize(QSize(max(size, round(full.width() * scale)), max(size, round(full.height() * scale))))
    image: QImage = reader.read()
    if image.isNull():
        logger.info("Skipping %s in the avatar list: %s", path, reader.errorString())
        return None
    side = min(image.width(), image.height())
    crop = image.copy(QRect((image.width() - side) // 2, (image.height() - side) // 2, side, side))
    return QPixmap.fromImage(
        crop.scaled(size, size, Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.SmoothTransformation)
    )


def with_badge(pixmap: QPixmap, number: int) -> QPixmap:
    """``pixmap`` with ``number`` in a small dark tag in its top-left corner (the key that picks it)."""
    badged = QPixmap(pixmap)
    painter = QPainter(badged)
    try:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        font = QFont(painter.font())
        font.setPixelSize(11)
        font.setBold(True)
        painter.setFont(font)
        box = QRectF(3, 3, 15, 15)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(12, 13, 16, 200))
        painter.drawRoundedRect(box, 4, 4)
        painter.setPen(QColor("#e8eaf0"))
        painter.drawText(box, Qt.AlignmentFlag.AlignCenter, str(number))
    finally:
        painter.end()
    return badged


def _same(a: Path | None, b: Path | None) -> bool:
    if a is None or b is None:
        return False
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return a == b


class AvatarPicker(QWidget):
    """A grid of portrait thumbnails and an "Add portrait..." button. Emits what the user picked; the window acts."""

    chosen = Signal(object)  # Path
    add_requested = Signal()

    def __init__(self, avatar_dir: Path, bundled: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.avatar_dir = avatar_dir
        self.bundled = bundled
        self._current: Path | None = None
        self._updating = False

        self.list = QListWidget()
        self.list.setObjectName("avatarList")
        self.list.setViewMode(QListView.ViewMode.IconMode)
        self.list.setIconSize(QSize(THUMBNAIL, THUMBNAIL))
        self.list.setGridSize(QSize(THUMBNAIL + 14, THUMBNAIL + 14))
        self.list.setResizeMode(QListView.ResizeMode.Adjust)
        self.list.setMovement(QListView.Movement.Static)
        self.list.setWrapping(True)
        self.list.setUniformItemSizes(True)
        self.list.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # Space stays "Recalibrate"
        self.list.currentItemChanged.connect(self._on_current_changed)

        self.add_button = QPushButton("Add portrait...")
        self.add_button.setToolTip("Copy a portrait photo into your avatar folder (Ctrl+O), or drop an image on the window")
        self.add_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.add_button.clicked.connect(self.add_requested)
        self.status = QLabel("")
        self.status.setObjectName("hint")
        self.status.setWordWrap(True)
        self.status.hide()

        buttons = QHBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        buttons.addWidget(self.add_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        layout.addWidget(self.list)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        self.refresh()

    # ------------------------------------------------------------------------------------------------ content
    def paths(self) -> list[Path]:
        return [self.list.item(i).data(_PATH_ROLE) for i in range(self.list.count())]

    def refresh(self, current: Path | None = None) -> None:
        """Re-read the avatar folder; keep (or set) the highlighted portrait."""
        if current is not None:
            self._current = current
        self._updating = True
        try:
            self.list.clear()
            entries = [(self.bundled, "Bundled")] if self.bundled.exists() else []
            entries += [(p, p.stem) for p in portrait_files(self.avatar_dir)]
            for path, name in entries:
                pixmap = thumbnail(path)
                if pixmap is None:
                    continue
                number = self.list.count() + 1
                if number <= NUMBERED:
                    pixmap = with_badge(pixmap, number)
                item = QListWidgetItem(QIcon(pixmap), "")
                item.setData(_PATH_ROLE, path)
                key = f"  (key {number})" if number <= NUMBERED else ""
                item.setToolTip(f"{name}{key}\n{path}")
                item.setSizeHint(QSize(THUMBNAIL + 10, THUMBNAIL + 10))
                self.list.addItem(item)
            self._highlight(self._current)
        finally:
            self._updating = False
        rows = 1 if self.list.count() <= 3 else 2  # grow to a second row once the first is full
        self.list.setFixedHeight(rows * (THUMBNAIL + 14) + 10)

    def select(self, path: Path | None) -> None:
        """Show ``path`` as the current avatar without emitting ``chosen`` (None means the bundled one)."""
        self._current = path
        self._updating = True
        try:
            self._highlight(path)
        finally:
            self._updating = False

    def _highlight(self, path: Path | None) -> None:
        target = path or self.bundled
        for i in range(self.list.count()):
            item = self.list.item(i)
            if _same(item.data(_PATH_ROLE), target):
                self.list.setCurrentItem(item)
                return
        self.list.setCurrentRow(-1)  # no current item (what setCurrentItem(None) does)

    def pick(self, index: int) -> bool:
        """As the user's click on the ``index``-th thumbnail (0-based): False when there is none or a portrait is
        being prepared."""
        if not self.list.isEnabled() or not 0 <= index < self.list.count():
            return False
        self.list.setCurrentRow(index)
        return True

    def set_busy(self, message: str) -> None:
        """While an avatar is being prepared, block further picks."""
        self.list.setEnabled(not message)
        self.add_button.setEnabled(not message)
        self.status.setText(message)
        self.status.setVisible(bool(message))

    def _on_current_changed(self, current: QListWidgetItem | None, _previous: QListWidgetItem | None) -> None:
        if self._updating or current is None:
            return
        path: Path = current.data(_PATH_ROLE)
        if not _same(path, self._current or self.bundled):
            self.chosen.emit(path)
