"""Help > System check, offscreen: the doctor's checks rendered one row each (against a report the doctor makes on
its own), Copy report puts exactly the text report on the clipboard, and the window's menu opens it."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from ui_helpers import WAIT_MS, open_window, window_settings

from mirage_desktop.doctor.check import NAMES
from mirage_desktop.doctor.run import report_for
from mirage_desktop.ui.app import create_application
from mirage_desktop.ui.system_check import COLUMNS, SystemCheckDialog
from mirage_desktop.ui.workers import WorkerPool


def rows(dialog: SystemCheckDialog) -> list[tuple[str, ...]]:
    table = dialog.table
    return [tuple(table.item(r, c).text() for c in range(len(COLUMNS))) for r in range(table.rowCount())]


def test_the_dialog_shows_the_doctors_checks_and_copies_the_report(  # type: ignore[no-untyped-def]
        qtbot, tmp_path: Path) -> None:
    app = create_application()
    settings = window_settings(tmp_path)
    expected = report_for(settings)  # the doctor on its own: the oracle for the rows
    pool = WorkerPool()
    dialog = SystemCheckDialog(settings, pool)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.run()
    assert not dialog.copy.isEnabled()  # nothing to copy while it runs
    qtbot.waitUntil(lambda: dialog.report is not None, timeout=WAIT_MS)
    shown = rows(dialog)
    assert [(status, name) for status, name, _ in shown] == [(c.status, c.name) for c in expected.checks]
    assert [name for _, name, _ in shown] == list(NAMES)
    for (_, _, text), check in zip(shown, dialog.report.checks):  # type: ignore[union-attr]
        assert text.startswith(check.detail) and (f"\nFix: {check.fix}" in text) == check.problem
    qtbot.mouseClick(dialog.copy, Qt.MouseButton.LeftButton)
    assert app.clipboard().text() == dialog.report.text()  # type: ignore[union-attr]
    assert app.clipboard().text().splitlines()[0].split()[:2] == [expected.checks[0].status, "system"]
    assert dialog.grab().save(str(tmp_path / "system-check.png"))  # renders offscreen (docs/ has a shot of it)
    assert pool.shutdown(WAIT_MS)


def test_help_system_check_opens_from_the_window(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    window = open_window(qtbot, window_settings(tmp_path), painted=1)
    menus = {action.text(): action for action in window.menuBar().actions()}
    check = next(a for a in menus["Help"].menu().actions() if a.text() == "System check...")
    check.trigger()
    dialog = window.findChild(SystemCheckDialog)
    assert dialog is not None and dialog.isVisible()
    qtbot.waitUntil(lambda: dialog.report is not None, timeout=WAIT_MS)
    assert [c.name for c in dialog.report.checks] == list(NAMES)
    check.trigger()  # again: the same dialog, run again
    assert window.findChildren(SystemCheckDialog) == [dialog]
    qtbot.waitUntil(lambda: dialog.again.isEnabled(), timeout=WAIT_MS)
    window.close()
