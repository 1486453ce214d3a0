"""Video mode for the face detector: follow the driving face between frames and smooth it.

The driving face is the one the user picked (:meth:`FaceTracker.pick`, a point in frame pixels), else the largest
at acquisition; from then on every detection keeps the face that overlaps the last one (:func:`choose_face`), so
other faces coming and going do not take over.

A full-frame detection is costly, and the face moves little between frames, so the tracker

* runs a full detection when it has no face, after a pause, after a pick, or every ``full_every`` frames (to
  re-anchor the box);
* otherwise detects only in a square region around the last face, at a small input size (dynamic-size exports);
* for fixed-size exports, where a region costs as much as the full frame, detects in the region every
  ``roi_every`` (8) frames and follows the keypoints with pyramidal Lucas-Kanade optical flow in between,
  dropping points that fail a forward-backward check;
* smooths box and keypoints with a One-Euro filter (Casiez et al., CHI 2012): heavy smoothing when still,
  little lag when moving, so the crop of the next stage does not jitter.
"""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np

from mirage_desktop.vision.scrfd import DEFAULT_DET_SIZE, Detections, Scratch, SCRFDDetector, box_iou
from mirage_desktop.vision.face import Face

logger = logging.getLogger(__name__)

#: Optical flow: largest forward-backward round-trip error of a kept point, and how many of the 14 must survive.
FB_MAX_PX = 1.0
MIN_FLOW_POINTS = 8
#: Pyramidal Lucas-Kanade: search window, pyramid levels and stop criteria.
_LK_WIN = (21, 21)
_LK_LEVELS = 2
_LK_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03)


class OneEuroFilter:
    """One-Euro low-pass filter over a vector; the cutoff rises with speed: ``min_cutoff + beta * |dx/dt|``."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0) -> None:
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t = 0.0

    @staticmethod
    def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def reset(self) -> None:
        self._x = None
        self._dx = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        """Filter sample ``x`` taken at time ``t`` (seconds); the first sample passes unchanged."""
        if self._x is None or self._dx is None:
            self._x = x.astype(np.float64)
            self._dx = np.zeros_like(self._x)
            self._t = t
            return x.copy()
        dt = t - self._t
        if dt <= 0:  # same timestamp (a still image source): assume the nominal 30 fps step
            dt = 1.0 / 30.0
        self._t = t
        dx = (x - self._x) / dt
        self._dx += self._alpha(self.d_cutoff, dt) * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        self._x += self._alpha(cutoff, dt) * (x - self._x)
        return self._x.astype(x.dtype)


#: a detection continues the tracked face when its box overlaps the last one by at least this IoU
KEEP_IOU = 0.3


def choose_face(found: Detections, previous: np.ndarray | None = None,
                pick: tuple[float, float] | None = None, keep_iou: float = KEEP_IOU) -> int:
    """Which detection drives: the one under the user's ``pick`` point (the nearest centre among the boxes that
    contain it), else the one continuing ``previous`` (best IoU, at least ``keep_iou``), else the largest; -1 when
    there is none."""
    n = len(found)
    if n == 0:
        return -1
    boxes = found.boxes
    if pick is not None:
        x, y = pick
        inside = (boxes[:, 0] <= x) & (x <= boxes[:, 2]) & (boxes[:, 1] <= y) & (y <= boxes[:, 3])
        if inside.any():
            centres = (boxes[:, :2] + boxes[:, 2:]) * 0.5
            d = np.hypot(centres[:, 0] - x, centres[:, 1] - y)
            return int(np.argmin(np.where(inside, d, np.inf)))
    if previous is not None:
        overlaps = [box_iou(previous, boxes[i]) for i in range(n)]
        best = int(np.argmax(overlaps))
        if overlaps[best] >= keep_iou:
            return best
    return found.largest()


def _square_region(box: np.ndarray, scale: float, width: int, height: int) -> tuple[int, int, int, int]:
    """A square of ``scale`` times the box's longer side around its centre, clipped to the image."""
    cx, cy = (box[0] + box[2]) * 0.5, (box[1] + box[3]) * 0.5
    half = max(box[2] - box[0], box[3] - box[1]) * scale * 0.5
    x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
    x1, y1 = min(width, math.ceil(cx + half)), min(height, math.ceil(cy + half))
    return x0, y0, x1, y1


class FaceTracker:
    """Follows the driving face of a video (picked, else the largest); ``update`` returns the smoothed face or None.

    Not thread-safe: one tracker per video stream (it owns the detector's scratch buffers).
    """

    def __init__(
        self,
        detector: SCRFDDetector,
        *,
        det_size: int = DEFAULT_DET_SIZE,
        full_every: int = 30,
        roi_scale: float = 2.0,
        roi_size: int = 192,
        roi_every: int | None = None,
        max_gap_s: float = 0.5,
        smoothing: bool = True,
        min_cutoff: float = 0.5,
        beta: float = 0.1,
    ) -> None:
        self.detector = detector
        self.det_size = det_size
        self.full_every = max(1, int(full_every))
        self.roi_scale = float(roi_scale)
        self.roi_size = int(roi_size)
        self.roi_every = max(1, int(roi_every if roi_every is not None else (1 if detector.dynamic else 8)))
        self.max_gap_s = float(max_gap_s)
        self.smoothing = smoothing
        self._filter = OneEuroFilter(min_cutoff=min_cutoff, beta=beta)
        self._scratch = Scratch()
        #: "detect" when the last frame ran a full detection, "track" when it followed the face.
        self.mode = "detect"
        self.frames = 0
        self.full_detections = 0
        self.roi_detections = 0
        self.flow_steps = 0
        #: faces in the last full detection
        self.face_count = 0
        #: changes whenever a different face (or the same one after a loss) starts being tracked
        self.track_id = 0
        self._pick: tuple[float, float] | None = None
        self.reset()

    def pick(self, x: float, y: float) -> None:
        """Drive with the face under (x, y) (frame pixels) from the next frame on; a point on no face is ignored.

        Called from any thread: it only stores the point, which the next ``update`` reads."""
        self._pick = (float(x), float(y))

    def reset(self) -> None:
        """Forget the face: the next frame runs a full detection."""
        self._box: np.ndarray | None = None  # raw (unsmoothed) box and kps of the last frame
        self._kps: np.ndarray | None = None
        self._score = 0.0
        self._t = -math.inf
        self._since_full = 0
        self._since_detect = 0
        self._prev_gray: np.ndarray | None = None
        self._prev_origin = (0, 0)
        self._prev_pts: np.ndarray | None = None
        self._filter.reset()

    # ------------------------------------------------------------------------------------------------ update
    def update(self, image: np.ndarray, t: float) -> Face | None:
        """The main face in ``image`` (captured at ``t`` seconds), smoothed; None when there is none."""
        self.frames += 1
        height, width = image.shape[:2]
        found = False
        if (self._pick is None and self._box is not None and t - self._t <= self.max_gap_s
                and self._since_full < self.full_every):
            self.mode = "track"
            if self._since_detect + 1 >= self.roi_every:
                found = self._detect_region(image, width, height)
            else:
                found = self._follow(image, width, height)
        if not found:
            self.mode = "detect"
            found = self._detect_full(image)
        self._t = t
        if not found or self._box is None or self._kps is None:
            self.reset()
            self._t = t
            return None
        if self.smoothing:
            packed = self._filter(np.concatenate([self._box, self._kps.reshape(-1)]), t)
            return Face(box=packed[:4].copy(), score=self._score, kps=packed[4:].reshape(5, 2).copy(),
                        track_id=self.track_id)
        return Face(box=self._box.copy(), score=self._score, kps=self._kps.copy(), track_id=self.track_id)

    def _accept(self, found: Detections, i: int, image: np.ndarray, width: int, height: int) -> None:
        self._box = found.boxes[i].copy()
        self._kps = found.kps[i].copy()
        self._score = float(found.scores[i])
        self._since_detect = 0
        if self.roi_every > 1:
            self._remember(image, width, height)

    def _detect_full(self, image: np.ndarray) -> bool:
        self.full_detections += 1
        self._since_full = 0
        found = self.detector.detect_arrays(image, self.det_size, scratch=self._scratch)
        self.face_count = len(found)
        pick, self._pick = self._pick, None
        best = choose_face(found, self._box, pick)
        if best < 0:
            return False
        if self._box is None or box_iou(self._box, found.boxes[best]) < KEEP_IOU:
            self.track_id += 1  # another face (a pick, or the last one was lost): do not glide from the old one
            self._filter.reset()
        self._accept(found, best, image, image.shape[1], image.shape[0])
        return True

    def _detect_region(self, image: np.ndarray, width: int, height: int) -> bool:
        assert self._box is not None
        self.roi_detections += 1
        self._since_full += 1
        region = _square_region(self._box, self.roi_scale, width, height)
        found = self.detector.detect_arrays(image, self.roi_size, region=region, scratch=self._scratch)
        if not len(found):
            return False
        overlaps = [box_iou(self._box, found.boxes[i]) for i in range(len(found))]
        best = int(np.argmax(overlaps))
        if overlaps[best] <= 0.0:
            best = found.largest()
        self._accept(found, best, image, width, height)
        return True

    # ---------------------------------------------------------------------------------------- optical flow
    def _remember(self, image: np.ndarray, width: int, height: int) -> None:
        """Keep the grey face region and the points to follow into the next frame."""
        assert self._box is not None and self._kps is not None
        x0, y0, x1, y1 = _square_region(self._box, 1.6, width, height)
        self._prev_gray = cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)
        self._prev_origin = (x0, y0)
        bx0, by0, bx1, by1 = self._box
        gx, gy = np.meshgrid(np.linspace(0.25, 0.75, 3), np.linspace(0.25, 0.75, 3))
        grid = np.stack([bx0 + gx.ravel() * (bx1 - bx0), by0 + gy.ravel() * (by1 - by0)], axis=1)
        pts = np.concatenate([self._kps, grid]).astype(np.float32) - np.array([x0, y0], np.float32)
        self._prev_pts = pts.reshape(-1, 1, 2)

    def _follow(self, image: np.ndarray, width: int, height: int) -> bool:
        """Move box and keypoints by the similarity transform that the tracked points underwent."""
        if self._prev_gray is None or self._prev_pts is None or self._box is None or self._kps is None:
            return False
        self.flow_steps += 1
        self._since_full += 1
        self._since_detect += 1
        x0, y0 = self._prev_origin
        ph, pw = self._prev_gray.shape
        current = cv2.cvtColor(image[y0 : y0 + ph, x0 : x0 + pw], cv2.COLOR_BGR2GRAY)
        if current.shape != self._prev_gray.shape:
            return False
        moved, status, _err = cv2.calcOpticalFlowPyrLK(
            self._prev_gray, current, self._prev_pts, None, winSize=_LK_WIN, maxLevel=_LK_LEVELS, criteria=_LK_CRITERIA)
        if moved is None:
            return False
        # Forward-backward check: a point that does not come back to where it started was lost (the face left,
        # was covered, or the region went flat); too few good points ends tracking and the next detection decides.
        back, back_status, _ = cv2.calcOpticalFlowPyrLK(
            current, self._prev_gray, moved, None, winSize=_LK_WIN, maxLevel=_LK_LEVELS, criteria=_LK_CRITERIA)
        if back is None:
            return False
        round_trip = np.abs(back - self._prev_pts).reshape(-1, 2).max(axis=1)
        good = status.reshape(-1).astype(bool) & back_status.reshape(-1).astype(bool) & (round_trip < FB_MAX_PX)
        if good.sum() < MIN_FLOW_POINTS:
            return False
        matrix, _inliers = cv2.estimateAffinePartial2D(
            self._prev_pts[good], moved[good], method=cv2.RANSAC, ransacReprojThreshold=2.0
        )
        if matrix is None:
            return False
        offset = np.array([x0, y0], np.float32)
        linear, shift = matrix[:, :2].astype(np.float32), matrix[:, 2].astype(np.float32)
        kps = (self._kps - offset) @ linear.T + shift + offset
        scale = float(math.sqrt(abs(np.linalg.det(linear))))
        centre = (self._box[:2] + self._box[2:]) * 0.5
        new_centre = (centre - offset) @ linear.T + shift + offset
        half = (self._box[2:] - self._box[:2]) * 0.5 * scale
        box = np.concatenate([new_centre - half, new_centre + half]).astype(np.float32)
        if box[2] <= 0 or box[3] <= 0 or box[0] >= width or box[1] >= height:
            return False
        self._box, self._kps = box, kps.astype(np.float32)
        self._remember(image, width, height)
        return True
