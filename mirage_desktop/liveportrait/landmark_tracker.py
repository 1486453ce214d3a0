"""Live face tracking as LivePortrait does it: SCRFD finds the face, the landmark runner follows it.

SCRFD gives a box; InsightFace's 106 points come from it and LivePortrait's 203 points from those (the official
chain's first frame). Every later frame the 203-point runner crops around the previous frame's 203 points
(:func:`~mirage_desktop.liveportrait.cropper.track`, as the official driving path and FasterLivePortrait do), so
SCRFD does not run at all while tracking holds. SCRFD runs again only when tracking is lost or doubtful:

- **doubtful** landmarks: not finite, a box under ``min_side`` px or whose centre left the frame, a centre that
  jumped more than ``max_jump`` of the box side in one frame, or a side that changed by more than ``max_zoom``
  (a real head does neither at video rates; a runner that lost the face does);
- a **periodic check** every ``check_every`` frames: SCRFD must find a face whose box overlaps the landmarks' box
  (IoU >= ``min_iou``), else the track is dropped and the face re-acquired;
- after a pause longer than ``max_gap_s``, or when the user picks a face.

Which face drives is :func:`~mirage_desktop.vision.box_tracker.choose_face`'s rule: the picked one, else the one
continuing the current track, else the largest. The 5 keypoints and the box of the returned face are SCRFD's from
the last acquisition moved by the similarity the 203 points underwent since (so the window can mark the driver).

Not thread-safe except :meth:`pick`: one tracker per video stream.
"""

from __future__ import annotations

import math

import numpy as np

from mirage_desktop.liveportrait.cropper import track
from mirage_desktop.vision.face import Face
from mirage_desktop.vision.box_tracker import KEEP_IOU, choose_face
from mirage_desktop.vision.landmarks import Landmark106, Landmark203
from mirage_desktop.vision.scrfd import DEFAULT_DET_SIZE, Detections, Scratch, SCRFDDetector, box_iou


def landmark_box(pts: np.ndarray) -> np.ndarray:
    """(4,) float32 axis-aligned box [x1, y1, x2, y2] of a set of points."""
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    return np.concatenate([lo, hi]).astype(np.float32)


def similarity_fit(src: np.ndarray, dst: np.ndarray) -> tuple[float, float, float, np.ndarray]:
    """Least-squares similarity dst ~ s R src + t (Umeyama, no reflection): (scale, cos, sin, translation)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    var = float((a * a).sum())
    if var < 1e-9:
        return 1.0, 1.0, 0.0, md - ms
    # for 2-D: s cos = sum(a.b) / var, s sin = sum(a x b) / var
    c = float((a * b).sum()) / var
    sn = float((a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]).sum()) / var
    scale = math.hypot(c, sn)
    rot = np.array([[c, -sn], [sn, c]])
    return scale, c / max(scale, 1e-12), sn / max(scale, 1e-12), md - ms @ rot.T


class LandmarkTracker:
    """SCRFD acquisition plus 203-point landmark tracking; ``update`` returns the driving face with its landmarks."""

    def __init__(
        self,
        detector: SCRFDDetector,
        lmk106: Landmark106,
        lmk203: Landmark203,
        *,
        det_size: int = DEFAULT_DET_SIZE,
        check_every: int = 30,
        max_gap_s: float = 0.5,
        min_iou: float = 0.25,
        max_jump: float = 0.35,
        max_zoom: float = 0.25,
        min_side: float = 16.0,
    ) -> None:
        self.detector = detector
        self.lmk106 = lmk106
        self.lmk203 = lmk203
        self.det_size = det_size
        self.check_every = max(1, int(check_every))
        self.max_gap_s = float(max_gap_s)
        self.min_iou = float(min_iou)
        self.max_jump = float(max_jump)
        self.max_zoom = float(max_zoom)
        self.min_side = float(min_side)
        self._scratch = Scratch()
        #: "detect" when SCRFD ran on the last frame, "track" when the landmarks alone followed the face
        self.mode = "detect"
        self.frames = 0
        self.full_detections = 0
        self.landmark_steps = 0
        self.doubtful = 0  # tracks dropped by the plausibility or periodic checks
        self.face_count = 0
        self.track_id = 0
        self._pick: tuple[float, float] | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the face: the next frame runs SCRFD."""
        self._lmk: np.ndarray | None = None  # 203 points of the last frame
        self._box: np.ndarray | None = None  # the driver's last box (for choosing the same face again)
        self._anchor: tuple[np.ndarray, np.ndarray, np.ndarray, float] | None = None  # SCRFD box, kps, lmk, score
        self._t = -math.inf
        self._since_check = 0

    def pick(self, x: float, y: float) -> None:
        """Drive with the face under (x, y) (frame pixels) from the next frame on; a point on no face is ignored.
        Safe from any thread (it only stores the point)."""
        self._pick = (float(x), float(y))

    # ------------------------------------------------------------------------------------------------ update
    def update(self, image: np.ndarray, t: float) -> Face | None:
        """The driving face of ``image`` (BGR, captured at ``t`` s) with its 203 points; None when there is none."""
        self.frames += 1
        face = None
        if self._pick is None and self._lmk is not None and t - self._t <= self.max_gap_s:
            face = self._follow(image)
        if face is None:
            face = self._acquire(image)
        self._t = t
        if face is None:
            self.reset()
            self._t = t
        return face

    def _detect(self, image: np.ndarray) -> Detections:
        self.full_detections += 1
        self.mode = "detect"
        found = self.detector.detect_arrays(image, self.det_size, scratch=self._scratch)
        self.face_count = len(found)
        return found

    def _acquire(self, image: np.ndarray, found: Detections | None = None) -> Face | None:
        """SCRFD (unless ``found`` is given) -> choose the driver -> 106 points from its box -> 203 points."""
        if found is None:
            found = self._detect(image)
        pick, self._pick = self._pick, None
        i = choose_face(found, self._box, pick)
        if i < 0:
            return None
        box, kps, score = found.boxes[i].copy(), found.kps[i].copy(), float(found.scores[i])
        if self._box is None or box_iou(self._box, box) < KEEP_IOU:
            self.track_id += 1
        lmk106 = self.lmk106.detect(image, box, bgr=True)
        lmk203 = track(self.lmk203, image, lmk106, bgr=True).points
        self._anchor = (box, kps, lmk203, score)
        self._lmk = lmk203
        self._since_check = 0
        return self._face(lmk203, lmk106)

    def _follow(self, image: np.ndarray) -> Face | None:
        assert self._lmk is not None
        self.landmark_steps += 1
        pts = track(self.lmk203, image, self._lmk, bgr=True).points
        if not self._plausible(pts, self._lmk, image.shape[1], image.shape[0]):
            self.doubtful += 1
            return None
        self.mode = "track"
        self._since_check += 1
        if self._since_check >= self.check_every:
            found = self._detect(image)
            lbox = landmark_box(pts)
            overlaps = [box_iou(lbox, found.boxes[i]) for i in range(len(found))]
            if not overlaps or max(overlaps) < self.min_iou:
                self.doubtful += 1
                return self._acquire(image, found)
            j = int(np.argmax(overlaps))
            self._anchor = (found.boxes[j].copy(), found.kps[j].copy(), pts, float(found.scores[j]))
            self._since_check = 0
        self._lmk = pts
        return self._face(pts, None)

    def _plausible(self, pts: np.ndarray, prev: np.ndarray, width: int, height: int) -> bool:
        if not np.isfinite(pts).all():
            return False
        box, last = landmark_box(pts), landmark_box(prev)
        side = float(max(box[2] - box[0], box[3] - box[1]))
        last_side = float(max(last[2] - last[0], last[3] - last[1]))
        if side < self.min_side or last_side <= 0:
            return False
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        if not (0 <= cx < width and 0 <= cy < height):
            return False
        jump = math.hypot(cx - (last[0] + last[2]) / 2, cy - (last[1] + last[3]) / 2) / last_side
        return jump <= self.max_jump and abs(math.log(side / last_side)) <= math.log1p(self.max_zoom)

    def _face(self, lmk203: np.ndarray, lmk106: np.ndarray | None) -> Face:
        """The face record: SCRFD's box and keypoints of the last anchor, moved as the landmarks moved since."""
        assert self._anchor is not None
        box0, kps0, lmk0, score = self._anchor
        if lmk203 is lmk0:
            box, kps = box0.copy(), kps0.copy()
        else:
            s, c, sn, shift = similarity_fit(lmk0, lmk203)
            rot = np.array([[c, -sn], [sn, c]]) * s
            kps = (kps0.astype(np.float64) @ rot.T + shift).astype(np.float32)
            centre = ((box0[:2] + box0[2:]) * 0.5).astype(np.float64) @ rot.T + shift
            half = (box0[2:] - box0[:2]).astype(np.float64) * 0.5 * s
            box = np.concatenate([centre - half, centre + half]).astype(np.float32)
        self._box = box
        return Face(box=box, score=score, kps=kps, lmk203=lmk203, lmk106=lmk106, track_id=self.track_id)
