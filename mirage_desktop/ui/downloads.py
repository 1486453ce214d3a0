"""The model download dialog: one cancellable download of a stage's model group on a worker thread.

The session says which group a stage needs (Animate may need face detection's); this class only shows the
downloader's progress, forwards Cancel, and tells the window the outcome.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import QProgressDialog, QWidget

from mirage_desktop.models.download import DownloadReport, ProgressEvent, download
from mirage_desktop.session import Session
from mirage_desktop.stages.specs import stage_spec
from mirage_desktop.ui.workers import Task, WorkerPool

logger = logging.getLogger(__name__)


def progress_text(event: ProgressEvent) -> str:
    """"download liveportrait/base_models/... (2 of 5)" plus the downloader's message, if any."""
    text = f"{event.phase} {event.entry.local_path} ({event.file_index + 1} of {max(1, event.file_count)})"
    return f"{text}\n{event.message}" if event.message else text


class ModelDownload(QObject):
    """Downloads the models one stage needs, with a progress dialog whose Cancel stops it (resumable).

    Emits ``message`` for the banner and ``succeeded`` (the stage name) once the files are in place.
    """

    message = Signal(str, str)  # level, text
    succeeded = Signal(str)  # stage name
    finished = Signal()  # after success, failure or cancel

    def __init__(self, session: Session, stage_name: str, pool: WorkerPool, parent: QWidget) -> None:
        super().__init__(parent)
        self.stage_name = stage_name
        self.label = stage_spec(stage_name).label
        self.group = session.download_group(stage_name)
        self.task = Task(download, self.group, session.settings.models_dir, name="download")
        self.task.kwargs.update(progress=self.task.report, cancel=self.task.cancel_event)
        self._pool = pool
        self.dialog = QProgressDialog(f"Downloading the {self.group} models for {self.label}...", "Cancel", 0, 0,
                                      parent)
        self.dialog.setWindowTitle("Download models")
        self.dialog.setMinimumDuration(0)
        self.dialog.setAutoClose(False)
        self.dialog.setAutoReset(False)
        self.dialog.setMinimumWidth(420)
        self.dialog.canceled.connect(self.task.cancel)

    def start(self) -> None:
        self.dialog.show()
        self._pool.submit(self.task, on_result=self._on_done, on_error=self._on_error, on_progress=self._on_progress)

    def cancel(self) -> None:
        self.task.cancel()

    @Slot(object)
    def _on_progress(self, event: ProgressEvent) -> None:
        if event.overall_total:
            self.dialog.setMaximum(1000)
            self.dialog.setValue(int(1000 * min(1.0, event.overall_done / event.overall_total)))
        self.dialog.setLabelText(progress_text(event))

    def _close_dialog(self) -> None:
        self.dialog.canceled.disconnect(self.task.cancel)  # closing the dialog emits canceled: not a user's cancel
        self.dialog.close()
        self.dialog.deleteLater()

    @Slot(object)
    def _on_done(self, report: DownloadReport) -> None:
        self._close_dialog()
        if report.cancelled:
            self.message.emit("info", "Download cancelled; the next download resumes where it stopped.")
        elif report.failed:
            self.message.emit("error", "Download failed: " + "; ".join(str(err) for _entry, err in report.failed))
        else:
            self.succeeded.emit(self.stage_name)
            self.message.emit("info", f"Models for {self.label} are ready.")
        self.finished.emit()

    @Slot(object)
    def _on_error(self, exc: BaseException) -> None:
        cancelled = self.task.cancel_event.is_set()
        self._close_dialog()
        self.message.emit("info" if cancelled else "error", "Download cancelled." if cancelled
                          else f"Download failed: {exc}")
        self.finished.emit()
