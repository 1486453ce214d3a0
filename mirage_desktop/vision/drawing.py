"""Drawing a detected face into a picture, for the preview's "show detections" switch."""

from __future__ import annotations

import cv2
import numpy as np

from mirage_desktop.vision.face import Face


def draw_face(image: np.ndarray, face: Face) -> None:
    """Draw a face's box and keypoints into ``image`` (a copy the caller owns)."""
    x1, y1, x2, y2 = (round(float(v)) for v in face.box)
    thickness = max(1, image.shape[0] // 360)
    cv2.rectangle(image, (x1, y1), (x2, y2), (0, 220, 0), thickness, cv2.LINE_AA)
    colours = ((255, 0, 0), (0, 0, 255), (0, 255, 255), (255, 0, 255), (255, 255, 0))
    for (x, y), colour in zip(face.kps, colours):
        cv2.circle(image, (round(float(x)), round(float(y))), thickness + 1, colour, -1, cv2.LINE_AA)
    cv2.putText(
        image, f"{face.score:.2f}", (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness,
        (0, 220, 0), thickness, cv2.LINE_AA,
    )  # fmt: skip
