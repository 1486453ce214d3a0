"""Renders ``resources/icon.svg`` into the PNG icons the app and the desktop entry use.

Writes ``resources/icon.png`` (256 px, the window icon) and the freedesktop hicolor set
``packaging/linux/icons/hicolor/<n>x<n>/apps/mirage.png`` for n in 16..512, so every size comes from one drawing.
Run after editing the SVG: ``python packaging/make_icons.py``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

ROOT = Path(__file__).resolve().parents[1]
SVG = ROOT / "resources" / "icon.svg"
SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)


def render(renderer: QSvgRenderer, size: int) -> QImage:
    """One antialiased square rendering with a transparent background."""
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter)
    painter.end()
    return image


def main() -> int:
    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 (keeps Qt's font/paint state)
    renderer = QSvgRenderer(str(SVG))
    if not renderer.isValid():
        print(f"make_icons: {SVG} is not a valid SVG; fix the file and run again", file=sys.stderr)
        return 1
    targets = [(256, ROOT / "resources" / "icon.png")]
    targets += [(n, ROOT / "packaging" / "linux" / "icons" / "hicolor" / f"{n}x{n}" / "apps" / "mirage.png") for n in SIZES]
    for size, path in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not render(renderer, size).save(str(path)):
            print(f"make_icons: could not write {path}", file=sys.stderr)
            return 1
        print(f"{path.relative_to(ROOT)}  {size}x{size}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
