"""The one description of a detected face, shared by the detector, the tracker and the engine's frames."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(slots=True)
class Face:
    """A face in frame pixels: box (x1, y1, x2, y2), detector score, 5 keypoints (x, y)."""

    box: np.ndarray  # (4,) float32
    score: float
    kps: np.ndarray  # (5, 2) float32
