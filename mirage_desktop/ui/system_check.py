"""Help > System check: ``mirage doctor``'s report on this running Mirage, one row per check with the fix under
each problem, and Copy report (the same text ``mirage doctor`` prints) for a bug report.

The checks run on a :class:`~mirage_desktop.ui.workers.WorkerPool` thread (they open sessions and cameras: a few
seconds); the dialog only shows what comes back.
"""

from __future__ import annotations

import functools
from pathlib import Path

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QColor, QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView, QDialog, QHBoxLayout, QHeaderView, QLabel, QPushButton, QTableWidget, QTableWidgetItem,
    QVBoxLayout, QWidget,
)

from mirage_desktop.config import Settings
from mirage_desktop.doctor.check import FAIL, OK, SKIP, WARN, Report
from mirage_desktop.doctor.run import report_for
from mirage_desktop.ui.workers import WorkerPool

#: status -> the colour its cell is written in
COLOURS = {OK: "#81c784", WARN: "#ffb74d", FAIL: "#ff8a80", SKIP: "#8a93a3"}
COLUMNS = ("Status", "Check", "Found, and the fix")


class SystemCheckDialog(QDialog):
    """The report of the doctor on ``settings``; ``cameras_in_use`` are the window's own (not reopened)."""

    def __init__(self, settings: Settings, pool: WorkerPool, *, settings_path: Path | None = None,
                 cameras_in_use: tuple[int, ...] = (), parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings, self.pool, self.settings_path = settings, pool, settings_path
        self.cameras_in_use = cameras_in_use
        self.report: Report | None = None
        self.setWindowTitle("System check")
        self.resize(980, 560)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setWordWrap(True)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.copy = QPushButton("Copy report")
        self.copy.clicked.connect(self.copy_report)
        self.again = QPushButton("Check again")
        self.again.clicked.connect(self.run)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addWidget(self.copy)
        buttons.addWidget(self.again)
        buttons.addStretch(1)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)

    def run(self) -> None:
        """Run every check off the GUI thread; the rows come when they are done."""
        self.summary.setText("Checking the GPU, the runtimes, the cameras, the models and the folders...")
        self.copy.setEnabled(False)
        self.again.setEnabled(False)
        check = functools.partial(report_for, cameras_in_use=self.cameras_in_use)
        self.pool.run(check, self.settings, self.settings_path, on_result=self.show_report, on_error=self.show_error)

    @Slot(object)
    def show_report(self, report: Report) -> None:
        self.report = report
        self.table.setRowCount(len(report.checks))
        for row, check in enumerate(report.checks):
            status = QTableWidgetItem(check.status)
            status.setForeground(QColor(COLOURS[check.status]))
            text = check.detail + (f"\nFix: {check.fix}" if check.problem else "")
            cells = (status, QTableWidgetItem(check.name), QTableWidgetItem(text))
            for column, item in enumerate(cells):
                item.setTextAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
                self.table.setItem(row, column, item)
        self.table.resizeRowsToContents()
        self.summary.setText(report.text().splitlines()[-1])
        self.copy.setEnabled(True)
        self.again.setEnabled(True)

    @Slot(object)
    def show_error(self, exc: BaseException) -> None:
        self.summary.setText(f"The system check failed: {type(exc).__name__}: {exc}")
        self.again.setEnabled(True)

    def copy_report(self) -> None:
        """The text report, exactly as ``mirage doctor`` prints it, onto the clipboard."""
        if self.report is not None:
            QGuiApplication.clipboard().setText(self.report.text())
            self.summary.setText("Report copied: paste it into your bug report.")


def show_system_check(window: QWidget, settings: Settings, pool: WorkerPool,
                      settings_path: Path | None = None) -> SystemCheckDialog:
    """Open (or bring back) the window's System check and run it; the window's camera is counted as in use."""
    dialog = window.findChild(SystemCheckDialog)
    if dialog is None:
        engine = getattr(window, "engine", None)
        index = getattr(getattr(engine, "source", None), "index", None)
        dialog = SystemCheckDialog(settings, pool, settings_path=settings_path,
                                   cameras_in_use=(index,) if isinstance(index, int) else (), parent=window)
    dialog.show()
    dialog.raise_()
    dialog.run()
    return dialog
