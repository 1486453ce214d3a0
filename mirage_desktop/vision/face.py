"""The one description of a detected face, shared by the detector, the trackers and the engine's frames."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(slots=True)
class Face:
    """A face in frame pixels: box (x1, y1, x2, y2), detector score, 5 keypoints (x, y).

    With the landmark models loaded the tracker adds LivePortrait's 203 points (every frame; the driving crop and
    the driver's eye and lip ratios come from them) and InsightFace's 106 points (on the frames SCRFD re-anchored
    the track). ``track_id`` changes whenever the tracker (re)acquires a face, so per-driver state can reset.
    """

    box: np.ndarray  # (4,) float32
    score: float
    kps: np.ndarray  # (5, 2) float32
    lmk203: np.ndarray | None = None  # (203, 2) float32, frame pixels
    lmk106: np.ndarray | None = None  # (106, 2) float32, frame pixels
    track_id: int = 0
