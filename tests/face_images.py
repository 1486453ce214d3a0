"""Test images for the face detector, all made from the public-domain astronaut photo in ../shared/media.

The reference data (tests/data/scrfd_reference.json) was computed on exactly these images, so the builders here
must not change without regenerating it with tests/data/make_scrfd_reference.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

BACKGROUND = (90, 90, 90)


def astronaut(shared: Path) -> np.ndarray:
    image = cv2.imread(str(shared / "media" / "astronaut.png"), cv2.IMREAD_COLOR)
    assert image is not None, f"cannot read {shared / 'media' / 'astronaut.png'}"
    return image


def place(image: np.ndarray, size: tuple[int, int], scale: float, offset: tuple[float, float]) -> np.ndarray:
    """``image`` scaled by ``scale`` with its top-left corner at ``offset`` on a grey canvas of ``size`` (w, h)."""
    matrix = np.array([[scale, 0.0, offset[0]], [0.0, scale, offset[1]]], dtype=np.float64)
    return cv2.warpAffine(image, matrix, size, flags=cv2.INTER_LINEAR, borderValue=BACKGROUND)


def reference_images(shared: Path) -> dict[str, np.ndarray]:
    """Named inputs of the reference cases: square, wide and tall frames, and a crop without a face."""
    photo = astronaut(shared)
    return {
        "astronaut": photo,
        "wide_1280x720": place(photo, (1280, 720), 1.3, (610.0, 40.0)),
        "tall_480x900": place(photo, (480, 900), 0.8, (30.0, 420.0)),
        "no_face_crop": np.ascontiguousarray(photo[300:512, 250:512]),
    }


#: (model file, image name, det_size) of every reference case.
REFERENCE_CASES: list[tuple[str, str, int]] = [
    (model, name, 640)
    for model in ("scrfd_500m_bnkps.onnx", "scrfd_2.5g.onnx")
    for name in ("astronaut", "wide_1280x720", "tall_480x900", "no_face_crop")
] + [("scrfd_2.5g.onnx", "astronaut", 320), ("scrfd_2.5g.onnx", "wide_1280x720", 480)]


def moving_face(shared: Path, count: int = 60, size: tuple[int, int] = (1280, 720)) -> list[np.ndarray]:
    """A head moving across a 720p frame (shift, zoom, tilt), one lap in ``count`` frames."""
    photo = astronaut(shared)
    width, height = size
    frames = []
    for i in range(count):
        a = 2.0 * math.pi * i / count
        scale = 1.0 + 0.2 * math.sin(a)
        angle = 8.0 * math.sin(2.0 * a)
        cx = width / 2 + 0.23 * width * math.sin(a)
        cy = height / 2 + 0.11 * height * math.sin(2.0 * a)
        matrix = cv2.getRotationMatrix2D((226.0, 120.0), angle, scale)  # about the face centre
        matrix[:, 2] += (cx - 226.0, cy - 120.0)
        frames.append(cv2.warpAffine(photo, matrix, size, borderMode=cv2.BORDER_CONSTANT, borderValue=BACKGROUND))
    return frames
