"""Face crops from 5 keypoints in LivePortrait's framing, and the paste-back of the animated crop.

LivePortrait frames a face with a rotated square: its side is ``scale`` times the extent of the face landmarks and
its centre sits ``vy_ratio`` sides above the landmarks' centre (source: scale 2.3, vy -0.125; driving video: 2.2,
-0.1; output 512 px). The official cropper measures the face with a dense landmark model; we have SCRFD's five
points, so the face extent and centre are estimated from the eye-to-mouth axis:

* ``FACE_EXTENT``: the landmark box side is 2.72 eye-to-mouth distances;
* ``FACE_CENTER_DROP``: the landmark box centre lies 0.775 eye-to-mouth distances below the 5 points' mean.

Both constants were measured once on ``astronaut.png``: with SCRFD 2.5g keypoints, they reproduce the conformance
kit's source crop of that photo (square centred at (226, 122), side 236 px) to within 1.5 px.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FACE_EXTENT = 2.72
FACE_CENTER_DROP = 0.775


@dataclass(frozen=True)
class CropFraming:
    scale: float
    vy_ratio: float
    vx_ratio: float = 0.0


SOURCE_FRAMING = CropFraming(scale=2.3, vy_ratio=-0.125)
DRIVING_FRAMING = CropFraming(scale=2.2, vy_ratio=-0.1)


@dataclass(frozen=True)
class FaceSquare:
    """A rotated square in image pixels: centre, side, and the unit axes (ux points right, uy down the face)."""

    center: np.ndarray  # (2,)
    side: float
    ux: np.ndarray  # (2,)
    uy: np.ndarray  # (2,)

    def corners(self) -> np.ndarray:
        h = self.side / 2
        return np.stack([self.center + sx * h * self.ux + sy * h * self.uy
                         for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))])


def face_square(kps: np.ndarray, framing: CropFraming) -> FaceSquare:
    """The crop square for 5 keypoints (left eye, right eye, nose, left mouth, right mouth) in image pixels."""
    kps = np.asarray(kps, dtype=np.float64).reshape(5, 2)
    eyes = (kps[0] + kps[1]) / 2
    mouth = (kps[3] + kps[4]) / 2
    axis = mouth - eyes
    dist = float(np.hypot(*axis))
    if dist < 1e-3:
        raise ValueError("degenerate face keypoints (eyes and mouth coincide)")
    uy = axis / dist
    ux = np.array([uy[1], -uy[0]])
    face_center = kps.mean(axis=0) + FACE_CENTER_DROP * dist * uy
    side = framing.scale * FACE_EXTENT * dist
    center = face_center + framing.vy_ratio * side * uy + framing.vx_ratio * side * ux
    return FaceSquare(center=center, side=side, ux=ux, uy=uy)


def crop_matrix(square: FaceSquare, size: int) -> np.ndarray:
    """2x3 matrix mapping image pixels to crop pixels, for ``cv2.warpAffine``."""
    s = size / square.side
    rot = np.stack([square.ux, square.uy]) * s  # rows: crop x and y axes in image units
    origin = square.center - (square.ux + square.uy) * square.side / 2
    m = np.zeros((2, 3), dtype=np.float64)
    m[:, :2] = rot
    m[:, 2] = -rot @ origin  # keypoints and both images share one pixel convention
    return m


def cut_crop(image: np.ndarray, square: FaceSquare, size: int, dst: np.ndarray | None = None) -> np.ndarray:
    """The face crop as ``size`` x ``size`` (bilinear; the border repeats edge pixels)."""
    return cv2.warpAffine(image, crop_matrix(square, size), (size, size), dst=dst, flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def feather_mask(size: int, border: float = 0.12) -> np.ndarray:
    """A soft square mask (1 inside, smooth to 0 at the edges, rounded corners) for a seamless paste-back."""
    t = (np.arange(size, dtype=np.float32) + 0.5) / size
    edge = np.minimum(t, 1.0 - t) / border  # 0 at the border, 1 at `border` inside
    ramp = np.clip(edge, 0.0, 1.0)
    ramp = ramp * ramp * (3.0 - 2.0 * ramp)  # smoothstep
    return np.outer(ramp, ramp).astype(np.float32)
