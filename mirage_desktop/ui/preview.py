"""The live preview: the engine's output frame, large, with a small picture-in-picture of the raw camera.

Frames arrive from the engine's output thread through :class:`FrameBridge` (a Qt signal, queued to the GUI thread)
with at most one frame in flight: while the GUI has not painted the previous frame, newer ones are dropped rather
than queued, so a busy GUI never builds latency. The preview paints straight from the frame's numpy buffer without
copying; that is safe because the engine publishes frames read-only and never rewrites them, and the widget keeps
the frame (hence its arrays) alive for as long as the QImage views it.

Where the camera picture is on screen (the whole preview before the avatar animates, the inset once it does), a
click on a face makes it the driving face (``face_clicked`` in camera pixels) and a thin outline marks the face that
drives, whenever face detection runs.
"""

from __future__ import annotations

import logging

import numpy as np
from PySide6.QtCore import QObject, QPoint, QPointF, QRect, QRectF, QSize, Qt, Signal, Slot
from PySide6.QtGui import QColor, QFont, QImage, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from mirage_desktop.engine.frame import Frame

logger = logging.getLogger(__name__)


def qimage_view(array: np.ndarray) -> QImage:
    """A QImage that reads the BGR array in place. It does not own the memory: keep ``array`` alive while it is used."""
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(f"Expected an HxWx3 uint8 BGR image, got shape {array.shape} dtype {array.dtype}")
    if not array.flags.c_contiguous:  # never the case for engine frames; a view of a slice would be
        array = np.ascontiguousarray(array)
    height, width = array.shape[:2]
    return QImage(array.data, width, height, array.strides[0], QImage.Format.Format_BGR888)


def to_image(point: QPointF, target: QRect, width: int, height: int) -> tuple[float, float] | None:
    """The image pixel under widget ``point`` when a ``width`` x ``height`` image is drawn into ``target``, or None
    outside it."""
    if target.width() <= 0 or target.height() <= 0:
        return None
    x = (point.x() - target.x()) * width / target.width()
    y = (point.y() - target.y()) * height / target.height()
    return (x, y) if 0 <= x < width and 0 <= y < height else None


def to_widget(box: np.ndarray, target: QRect, width: int, height: int) -> QRectF:
    """An image box (x1, y1, x2, y2) as a widget rectangle, the image being drawn into ``target``."""
    sx, sy = target.width() / max(1, width), target.height() / max(1, height)
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    return QRectF(target.x() + x1 * sx, target.y() + y1 * sy, (x2 - x1) * sx, (y2 - y1) * sy)


class FrameBridge(QObject):
    """Carries frames from the engine's output thread to the GUI thread, one at a time."""

    frame_ready = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._in_flight = False
        self.delivered = 0
        self.dropped = 0

    def offer(self, frame: Frame) -> None:
        """Engine output thread: pass the frame on unless the previous one is still waiting to be painted."""
        if self._in_flight:
            self.dropped += 1
            return
        self._in_flight = True
        self.delivered += 1
        self.frame_ready.emit(frame)

    def release(self) -> None:
        """GUI thread: the last frame was painted (or will not be); the next one may come."""
        self._in_flight = False

    @property
    def in_flight(self) -> bool:
        return self._in_flight


class PreviewWidget(QWidget):
    """Paints the latest output frame scaled to fit (letterboxed), and the camera inset in the bottom-right corner."""

    #: Emitted on double-click (the window toggles full screen).
    activated = Signal()
    #: A click on the camera picture while face detection runs: (x, y) in camera pixels.
    face_clicked = Signal(float, float)

    INSET_FRACTION = 0.24  # of the picture's width
    MARGIN = 12

    def __init__(self, bridge: FrameBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._bridge = bridge
        self._frame: Frame | None = None  # keeps both arrays alive while the QImages below view them
        self._image: QImage | None = None
        self._camera: QImage | None = None
        self._show_inset = True
        #: Set by the window while the avatar replaces the camera in the main picture (the camera is then the inset).
        self.animating = False
        self.placeholder = "Starting the camera..."
        self.painted = 0
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)  # we fill every pixel; Qt skips the erase
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(320, 180)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setObjectName("preview")
        bridge.frame_ready.connect(self.show_frame)

    # ------------------------------------------------------------------------------------------------ state
    @property
    def inset_visible(self) -> bool:
        return self._show_inset

    def set_inset_visible(self, visible: bool) -> None:
        self._show_inset = bool(visible)
        self.update()

    @property
    def frame(self) -> Frame | None:
        return self._frame

    def sizeHint(self) -> QSize:
        return QSize(960, 540)

    @Slot(object)
    def show_frame(self, frame: Frame) -> None:
        self._frame = frame
        self._image = qimage_view(frame.image)
        camera = frame.camera
        self._camera = qimage_view(camera) if camera is not None and camera is not frame.image else None
        handle = self.window().windowHandle()
        if not self.isVisible() or handle is None or not handle.isExposed():
            self._bridge.release()  # nothing will paint: do not hold the engine's frames back
            return
        self.update()

    def clear(self, message: str) -> None:
        self._frame = None
        self._image = self._camera = None
        self.placeholder = message
        self.update()

    # ------------------------------------------------------------------------------------------------ paint
    @staticmethod
    def _fit(size: QSize, bounds: QRect) -> QRect:
        scaled = size.scaled(bounds.size(), Qt.AspectRatioMode.KeepAspectRatio)
        x = bounds.x() + (bounds.width() - scaled.width()) // 2
        y = bounds.y() + (bounds.height() - scaled.height()) // 2
        return QRect(QPoint(x, y), scaled)

    def _inset_rect(self, target: QRect, camera: QImage) -> QRect:
        width = max(96, int(target.width() * self.INSET_FRACTION))
        height = int(width * camera.height() / max(1, camera.width()))
        return QRect(target.right() - width - self.MARGIN, target.bottom() - height - self.MARGIN, width, height)

    def camera_rects(self) -> list[QRect]:
        """Where the camera picture is on screen, topmost first: the inset (when shown), and the main picture
        unless the avatar replaces it."""
        image, frame = self._image, self._frame
        if image is None or frame is None:
            return []
        target = self._fit(image.size(), self.rect())
        rects: list[QRect] = []
        if self._show_inset and self._camera is not None:
            rects.append(self._inset_rect(target, self._camera))
        camera = frame.camera
        if camera is None or frame.image is camera or (not self.animating and frame.image.shape == camera.shape):
            rects.append(target)
        return rects

    def camera_point(self, point: QPointF) -> tuple[float, float] | None:
        """The camera pixel under widget ``point``, or None when the camera picture is not there."""
        frame = self._frame
        if frame is None:
            return None
        height, width = (frame.camera if frame.camera is not None else frame.image).shape[:2]
        for rect in self.camera_rects():
            if rect.contains(point.toPoint()):
                return to_image(point, rect, width, height)
        return None

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        try:
            painter.fillRect(self.rect(), QColor(12, 13, 16))
            image = self._image
            if image is None:
                painter.setPen(QColor(140, 146, 160))
                font = QFont(self.font())
                font.setPointSizeF(font.pointSizeF() * 1.3)
                painter.setFont(font)
                painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self.placeholder)
                return
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            target = self._fit(image.size(), self.rect())
            painter.drawImage(target, image)
            camera = self._camera
            if self._show_inset and camera is not None:
                inset = self._inset_rect(target, camera)
                painter.drawImage(inset, camera)
                painter.setPen(QPen(QColor(255, 255, 255, 170), 1.5))
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.drawRoundedRect(QRectF(inset).adjusted(-0.75, -0.75, 0.75, 0.75), 3, 3)
            self._mark_driving_face(painter)
            self.painted += 1
        finally:
            painter.end()
            self._bridge.release()

    def _mark_driving_face(self, painter: QPainter) -> None:
        """A thin accent outline around the face that drives the avatar, on every picture of the camera."""
        frame = self._frame
        if frame is None or not frame.face_checked or frame.face is None:
            return
        height, width = (frame.camera if frame.camera is not None else frame.image).shape[:2]
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        for rect in self.camera_rects():
            box = to_widget(frame.face.box, rect, width, height).intersected(QRectF(rect))
            if box.isEmpty():
                continue
            painter.setPen(QPen(QColor(108, 140, 255, 210), 1.6))
            radius = min(box.width(), box.height()) * 0.12
            painter.drawRoundedRect(box, radius, radius)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        frame = self._frame
        if event.button() == Qt.MouseButton.LeftButton and frame is not None and frame.face_checked:
            point = self.camera_point(event.position())
            if point is not None:
                self.face_clicked.emit(*point)
                return
        super().mousePressEvent(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        self.activated.emit()
