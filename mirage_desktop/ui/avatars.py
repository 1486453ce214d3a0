"""The avatar gallery's controller: picking, adding (file dialog or drop) and preparing portraits off the GUI thread.

The session checks the portrait, copies it into the avatar folder and hands it to the avatar stage; this class
keeps the picker busy meanwhile and reports the outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QMimeData, QObject, Signal, Slot
from PySide6.QtWidgets import QFileDialog, QWidget

from mirage_desktop.engine.sources import IMAGE_SUFFIXES
from mirage_desktop.session import Session
from mirage_desktop.ui.avatar_picker import AvatarPicker
from mirage_desktop.ui.workers import WorkerPool

IMAGE_FILTER = "Images (" + " ".join(f"*{s}" for s in sorted(IMAGE_SUFFIXES)) + ")"


def unique_destination(folder: Path, name: str) -> Path:
    """``folder/name``, or ``stem-2.ext``, ``stem-3.ext``... when that name is taken."""
    candidate = folder / name
    stem, suffix = candidate.stem, candidate.suffix
    n = 2
    while candidate.exists():
        candidate = folder / f"{stem}-{n}{suffix}"
        n += 1
    return candidate


def dropped_image(mime: QMimeData) -> Path | None:
    """The first local image file among dropped URLs, if any."""
    if not mime.hasUrls():
        return None
    for url in mime.urls():
        if url.isLocalFile():
            path = Path(url.toLocalFile())
            if path.suffix.lower() in IMAGE_SUFFIXES:
                return path
    return None


class AvatarController(QObject):
    """Connects the picker to the session; ``save`` persists the settings after a change."""

    message = Signal(str, str)  # level, text

    def __init__(self, session: Session, picker: AvatarPicker, pool: WorkerPool, save: Callable[[], None],
                 parent: QWidget) -> None:
        super().__init__(parent)
        self.session = session
        self.picker = picker
        self._pool = pool
        self._save = save
        self._parent = parent
        picker.chosen.connect(self.choose)
        picker.add_requested.connect(self.ask_add_portrait)

    @Slot()
    def ask_add_portrait(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self._parent, "Add a portrait", str(Path.home()), IMAGE_FILTER)
        if name:
            self.add_portrait(Path(name))

    def add_portrait(self, path: Path) -> None:
        """Copy a portrait into the avatar folder and make it the avatar (checked off the GUI thread)."""
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            self.message.emit(
                "error", f"{path.name} is not a supported image; use one of {', '.join(sorted(IMAGE_SUFFIXES))}."
            )
            return
        avatar_dir = self.session.settings.avatar_dir
        inside = path.resolve().parent == avatar_dir.resolve() if avatar_dir.exists() else False
        self._set(path, None if inside else unique_destination(avatar_dir, path.name))

    def pick_number(self, number: int) -> None:
        """The number key ``number`` (1-9): the gallery's ``number``-th portrait becomes the avatar."""
        if self.picker.list.isEnabled() and not self.picker.pick(number - 1):
            count = len(self.picker.paths())
            self.message.emit("info", f"No avatar {number}: the gallery has {count}. Add portraits with Ctrl+O.")

    @Slot(object)
    def choose(self, path: Path) -> None:
        self._set(path, None)

    def _set(self, path: Path, copy_to: Path | None) -> None:
        self.picker.set_busy(f"Preparing {path.name}...")
        self._pool.run(self.session.set_avatar, path, copy_to, on_result=self._on_ready, on_error=self._on_failed)

    @Slot(object)
    def _on_ready(self, result: tuple[Path, str]) -> None:
        path, note = result
        self.picker.set_busy("")
        self._save()
        self.picker.refresh(path)
        if note:
            self.message.emit("warning", f"Avatar {path.name} saved; it is used once Animate can run: {note}")
        else:
            self.message.emit("info", f"Avatar: {path.stem}")

    @Slot(object)
    def _on_failed(self, exc: BaseException) -> None:
        self.picker.set_busy("")
        self.picker.refresh(self.session.settings.avatar)  # the old avatar stays
        self.message.emit("error", f"That portrait cannot be used: {exc}")
