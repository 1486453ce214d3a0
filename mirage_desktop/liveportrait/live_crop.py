"""The live driving crop: a steady, upright square that lets the driver's roll, shifts and zoom reach the motion
extractor as motion.

The official offline path crops a whole driving video with one mean box, so head roll, shifts and distance
changes all reach the motion extractor; FasterLivePortrait's live mode re-crops every frame, which cancels them
and lets expressions change the crop's size. Here, per frame:

- the face's size is the side of its landmark box measured in the face's own frame (the eye line's axes), so a
  roll does not inflate it the way an axis-aligned box of rolled points grows; expressions move points inside
  that box and leave its side nearly unchanged;
- the crop is never rotated (its angle stays 0), so roll stays in the picture;
- the held side and centre change only when the measurement leaves a dead band (a sustained move or distance
  change), then glide toward it (exponentially, ``follow`` per frame) until they are close again; if the face
  would leave the crop the centre catches up at once.

Self-contained (numpy only), one instance per driver; :meth:`LiveCropper.reset` when the tracked face changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mirage_desktop.liveportrait.crop import anchor_points

# the eye rings of each landmark convention (their means give the eye line, which expressions do not move)
_EYES = {106: ((33, 35, 40, 39), (87, 89, 94, 93)), 203: ((0, 6, 12, 18), (24, 30, 36, 42))}


@dataclass(frozen=True)
class LiveCrop:
    center: np.ndarray  # (2,) image pixels
    side: float  # image pixels
    angle_deg: float  # always 0: the crop is upright in the image
    M: np.ndarray  # (2, 3) float64 image -> crop of side ``dsize``


@dataclass(frozen=True)
class FaceMeasure:
    """The face's box in its own frame: centre in image pixels and the longer side."""

    center: np.ndarray
    side: float


def measure(pts: np.ndarray) -> FaceMeasure:
    """The landmark box in the frame of the eye line (x along it, y down the face): centre and max(w, h)."""
    pts = np.asarray(pts, np.float64)
    eyes = _EYES.get(pts.shape[0])
    if eyes is None:
        raise ValueError(f"live crop needs 106 or 203 landmarks, got {pts.shape}")
    left, right = eyes
    ux = pts[list(right)].mean(0) - pts[list(left)].mean(0)
    n = float(np.hypot(*ux))
    if n < 1e-6:  # degenerate: fall back to the eye-mouth axis of the official cropper
        a = anchor_points(pts.astype(np.float32)).astype(np.float64)
        uy = a[1] - a[0]
        uy /= max(float(np.hypot(*uy)), 1e-6)
        ux = np.array([-uy[1], uy[0]])
    else:
        ux = ux / n
    uy = np.array([-ux[1], ux[0]])
    rot = np.stack([ux, uy])
    mean = pts.mean(0)
    q = (pts - mean) @ rot.T
    lo, hi = q.min(0), q.max(0)
    center = mean + ((lo + hi) / 2) @ rot
    return FaceMeasure(center, float((hi - lo).max()))


class LiveCropper:
    """A held, upright crop square for live driving frames."""

    def __init__(
        self,
        dsize: int = 512,
        scale: float = 2.2,
        vy_ratio: float = -0.1,
        size_band: float = 0.10,
        move_band: float = 0.06,
        follow: float = 0.2,
        margin: float = 0.05,
    ) -> None:
        """``scale`` x face side = crop side and ``vy_ratio`` x side raises the centre (the official driving
        values); a change beyond ``size_band`` (relative) or ``move_band`` (of the side) starts following, at
        ``follow`` of the remaining gap per frame; the face box is kept ``margin`` of the side inside the crop."""
        self.dsize = dsize
        self.scale = scale
        self.vy_ratio = vy_ratio
        self.size_band = size_band
        self.move_band = move_band
        self.follow = follow
        self.margin = margin
        self.reset()

    def reset(self) -> None:
        self._center: np.ndarray | None = None
        self._side = 0.0
        self._resizing = False
        self._moving = False

    def _target(self, face: FaceMeasure) -> tuple[np.ndarray, float]:
        side = self.scale * face.side
        return face.center + np.array([0.0, self.vy_ratio * side]), side

    def update(self, pts: np.ndarray) -> LiveCrop:
        """The crop for this frame's landmarks (106 or 203 points, image pixels)."""
        face = measure(pts)
        center, side = self._target(face)
        if self._center is None:
            self._center, self._side = center, side
            return self._crop()

        ratio = side / self._side
        if abs(math.log(ratio)) > math.log1p(self.size_band):
            self._resizing = True
        if self._resizing:
            self._side += self.follow * (side - self._side)
            if abs(side / self._side - 1.0) < self.size_band / 4:
                self._resizing = False

        gap = float(np.hypot(*(center - self._center))) / self._side
        if gap > self.move_band:
            self._moving = True
        if self._moving:
            self._center = self._center + self.follow * (center - self._center)
            if float(np.hypot(*(center - self._center))) / self._side < self.move_band / 4:
                self._moving = False
        self._keep_inside(np.asarray(pts, np.float64))
        return self._crop()

    def _keep_inside(self, pts: np.ndarray) -> None:
        """Shift the centre (and grow the side if it must) so every landmark stays ``margin`` inside the crop."""
        assert self._center is not None  # update() set it before
        half = self._side / 2 * (1.0 - 2 * self.margin)
        lo, hi = pts.min(0), pts.max(0)
        need = float(np.max(hi - lo)) / 2
        if need > half:
            self._side = need / (1.0 - 2 * self.margin) * 2
            half = need
        c = self._center.copy()
        c = np.maximum(c, hi - half)
        c = np.minimum(c, lo + half)
        self._center = c

    def _crop(self) -> LiveCrop:
        assert self._center is not None
        s = self.dsize / self._side
        cx, cy = self._center
        m = np.array([[s, 0.0, self.dsize / 2 - s * cx], [0.0, s, self.dsize / 2 - s * cy]])
        return LiveCrop(center=self._center.copy(), side=self._side, angle_deg=0.0, M=m)
