"""Engine frames into the virtual camera's picture: its size (letterboxed) and pixel format, in one pass.

The layout (canvas, the region a frame of this shape lands in, the resize filter) is worked out when the frame
shape changes, not per frame; a frame that already has the camera's size and format is written as it is.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from mirage_desktop.vision.letterbox import fit_inside

logger = logging.getLogger(__name__)

FORMATS = ("bgr", "rgb")


class CameraPicture:
    """The picture the camera thread writes: a preallocated ``height`` x ``width`` canvas, black until a frame."""

    def __init__(self, width: int, height: int, fmt: str) -> None:
        self.fmt = fmt
        self.canvas = np.zeros((height, width, 3), np.uint8)
        self._layout_key: tuple[int, ...] | None = None
        self._roi: np.ndarray | None = None
        self._interp = cv2.INTER_AREA
        self._bad_shape: tuple[int, ...] | None = None

    def _layout(self, image: np.ndarray) -> bool:
        """Fit frames of this shape into the camera: same size passes, else letterbox. Runs on shape changes."""
        canvas = self.canvas
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            if self._bad_shape != image.shape:
                self._bad_shape = image.shape
                logger.error(
                    "Virtual camera skips frames of shape %s and type %s: expected HxWx3 uint8 BGR",
                    image.shape,
                    image.dtype,
                )
            return False
        h, w = image.shape[:2]
        height, width = canvas.shape[:2]
        canvas.fill(0)
        if (h, w) == (height, width):
            self._roi = None
        else:
            fit = fit_inside(w, h, width, height)
            nw, nh = fit.size_nearest()
            x0, y0 = (width - nw) // 2, (height - nh) // 2
            self._roi = canvas[y0 : y0 + nh, x0 : x0 + nw]
            # bilinear already weighs every source pixel down to half size and costs a fifth of area averaging at
            # odd ratios such as 1080p -> 720p; stronger reductions need area to avoid aliasing
            self._interp = cv2.INTER_AREA if fit.scale <= 0.5 else cv2.INTER_LINEAR
        self._layout_key = image.shape
        return True

    def convert(self, image: np.ndarray) -> np.ndarray | None:
        """The picture to write for ``image``: the frame itself when it already fits, else one pass into the
        preallocated canvas. None when the frame cannot be shown (wrong shape; logged once)."""
        if image.shape != self._layout_key and not self._layout(image):
            return None
        canvas = self.canvas
        roi = self._roi
        if roi is None:
            if self.fmt == "rgb":
                cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=canvas)
                return canvas
            if image.flags.c_contiguous:
                return image  # BGR at the camera's size: no copy at all
            np.copyto(canvas, image)
            return canvas
        cv2.resize(image, (roi.shape[1], roi.shape[0]), dst=roi, interpolation=self._interp)
        if self.fmt == "rgb":
            cv2.cvtColor(roi, cv2.COLOR_BGR2RGB, dst=roi)
        return canvas
