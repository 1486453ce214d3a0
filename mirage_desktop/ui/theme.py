"""The dark look: Fusion style, a dark palette, and a short style sheet for the cards and labels."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

ACCENT = "#6c8cff"

STYLE_SHEET = f"""
QMainWindow, QWidget#central {{ background: #0f1115; }}
QWidget#sidebar {{ background: #0f1115; }}
QScrollArea {{ border: none; background: transparent; }}
QFrame#section {{ background: #181b21; border: 1px solid #23272f; border-radius: 10px; }}
QLabel#sectionTitle {{ color: #8a93a3; font-size: 11px; font-weight: 600; letter-spacing: 1px; }}
QLabel#hint {{ color: #9aa1ad; }}
QLabel#outputStatus {{ color: #9aa1ad; padding-left: 24px; }}
QLabel#outputStatus[error="true"] {{ color: #ff8a80; }}
QLabel#reason {{ color: #ffb74d; padding-left: 24px; }}
QLabel#shortcut {{ color: #6b7280; border: 1px solid #2c313a; border-radius: 4px; padding: 1px 6px;
                   font-size: 11px; }}
QToolButton#sectionToggle {{ background: transparent; border: none; padding: 0; color: #8a93a3; font-size: 11px;
                             font-weight: 600; letter-spacing: 1px; text-align: left; }}
QToolButton#segment {{ background: #1d2129; border: 1px solid #313744; border-radius: 0; padding: 4px 6px;
                       color: #c3c9d4; }}
QToolButton#segment[position="first"] {{ border-top-left-radius: 6px; border-bottom-left-radius: 6px; }}
QToolButton#segment[position="last"] {{ border-top-right-radius: 6px; border-bottom-right-radius: 6px; }}
QToolButton#segment:checked {{ background: {ACCENT}; border-color: {ACCENT}; color: #ffffff; }}
QToolButton#segment:disabled {{ color: #5f6673; background: #16191f; }}
QToolButton#segment:checked:disabled {{ background: #2f3a5c; border-color: #2f3a5c; color: #9aa1ad; }}
QLabel#sliderValue {{ color: #cfd5df; font-size: 11px; }}
QLabel#hint:disabled {{ color: #5f6673; }}
QSlider::groove:horizontal {{ height: 4px; background: #2c313a; border-radius: 2px; }}
QSlider::sub-page:horizontal {{ background: {ACCENT}; border-radius: 2px; }}
QSlider::sub-page:horizontal:disabled {{ background: #3a4150; }}
QSlider::handle:horizontal {{ background: #e8eaf0; width: 12px; margin: -5px 0; border-radius: 6px; }}
QSlider::handle:horizontal:disabled {{ background: #5f6673; }}
QFrame#figure {{ background: #181b21; border: 1px solid #23272f; border-radius: 8px; }}
QLabel#figureCaption {{ color: #8a93a3; font-size: 11px; }}
QLabel#figureValue {{ color: #f1f3f7; font-size: 20px; font-weight: 600; }}
QLabel#figureDetail {{ color: #8a93a3; font-size: 11px; }}
QFrame#previewFrame {{ background: #0c0d10; border: 1px solid #23272f; border-radius: 10px; }}
QFrame#banner {{ border-radius: 8px; background: #1f3a5f; color: #eef3ff; }}
QFrame#banner[level="warning"] {{ background: #5c4516; color: #fff6e0; }}
QFrame#banner[level="error"] {{ background: #6b2323; color: #ffecec; }}
QFrame#banner QLabel {{ color: inherit; font-size: 13px; }}
QToolButton#bannerClose {{ border: none; color: #e8eaf0; padding: 2px 4px; }}
QPushButton {{ background: #242933; border: 1px solid #313744; border-radius: 6px; padding: 5px 12px;
               color: #e8eaf0; }}
QPushButton:hover {{ background: #2c3340; border-color: {ACCENT}; }}
QPushButton:pressed {{ background: #20252e; }}
QPushButton:disabled {{ color: #5f6673; border-color: #262a31; }}
QToolButton {{ background: #242933; border: 1px solid #313744; border-radius: 6px; padding: 4px 8px;
               color: #e8eaf0; }}
QComboBox {{ background: #242933; border: 1px solid #313744; border-radius: 6px; padding: 4px 10px;
             color: #e8eaf0; }}
QComboBox QAbstractItemView {{ background: #1d2129; selection-background-color: {ACCENT}; }}
QLineEdit {{ background: #12151a; border: 1px solid #2c313a; border-radius: 6px; padding: 4px 8px;
             color: #cfd5df; }}
QCheckBox {{ spacing: 8px; color: #e8eaf0; }}
QCheckBox:disabled {{ color: #5f6673; }}
QListWidget#avatarList {{ background: #12151a; border: 1px solid #23272f; border-radius: 8px; padding: 4px; }}
QListWidget#avatarList::item {{ border-radius: 6px; padding: 2px; }}
QListWidget#avatarList::item:selected {{ background: {ACCENT}; }}
QStatusBar {{ background: #0b0c0f; color: #9aa1ad; border-top: 1px solid #1d2027; }}
QStatusBar QLabel {{ color: #9aa1ad; padding: 0 8px; }}
QStatusBar QLabel#statusReason {{ color: #ffb74d; }}
QSplitter::handle {{ background: #0f1115; }}
QProgressDialog QLabel {{ color: #e8eaf0; }}
"""


def apply_dark_theme(app: QApplication) -> None:
    app.setStyle("Fusion")
    palette = QPalette()
    roles = {
        QPalette.ColorRole.Window: "#0f1115",
        QPalette.ColorRole.WindowText: "#e8eaf0",
        QPalette.ColorRole.Base: "#12151a",
        QPalette.ColorRole.AlternateBase: "#181b21",
        QPalette.ColorRole.ToolTipBase: "#242933",
        QPalette.ColorRole.ToolTipText: "#e8eaf0",
        QPalette.ColorRole.Text: "#e8eaf0",
        QPalette.ColorRole.Button: "#242933",
        QPalette.ColorRole.ButtonText: "#e8eaf0",
        QPalette.ColorRole.BrightText: "#ffffff",
        QPalette.ColorRole.Highlight: ACCENT,
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.Link: "#8fb3ff",
        QPalette.ColorRole.PlaceholderText: "#6b7280",
    }
    for role, color in roles.items():
        palette.setColor(role, QColor(color))
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor("#5f6673"))
    app.setPalette(palette)
    app.setStyleSheet(STYLE_SHEET)
