"""The face detection stage: SCRFD plus the tracker on every frame, the driving face attached to the frame.

With the landmark models in the model directory (``mirage-models download liveportrait``) the tracker is
LivePortrait's: SCRFD acquires the face, the 203-point runner follows it and every frame's face carries its 203
points (:class:`~mirage_desktop.liveportrait.landmark_tracker.LandmarkTracker`). Without them the stage still finds
faces with SCRFD alone (``landmarks_reason`` says what to download); the avatar stage needs the landmarks.
The driving face is the one the user picked (:meth:`FaceDetectionStage.pick_face`), else the largest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from mirage_desktop.config import Settings
from mirage_desktop.engine.frame import Frame
from mirage_desktop.engine.stage import Stage, StageUnavailable
from mirage_desktop.liveportrait.cropper import Cropper
from mirage_desktop.liveportrait.landmark_tracker import LandmarkTracker
from mirage_desktop.models.registry import DEFAULT_SCRFD_FILE, download_hint, landmark_paths
from mirage_desktop.stages.specs import LIVEPORTRAIT, SCRFD
from mirage_desktop.vision.drawing import draw_face
from mirage_desktop.vision.face import Face
from mirage_desktop.vision.box_tracker import FaceTracker
from mirage_desktop.vision.landmarks import Landmark106, Landmark203, LandmarkModelError
from mirage_desktop.vision.onnx_session import SHORT_NAMES
from mirage_desktop.vision.scrfd import SCRFDDetector, SCRFDModelError


def model_candidates(settings: Settings) -> list[Path]:
    """Candidate model files in the order the stage tries them (the first that loads wins)."""
    if settings.scrfd_model:
        return [Path(settings.scrfd_model)]
    folder = settings.scrfd_dir()
    default = folder / DEFAULT_SCRFD_FILE
    others = sorted(p for p in folder.glob("*.onnx") if p != default) if folder.is_dir() else []
    return [default, *others] if default.exists() or not others else others


class FaceDetectionStage(Stage):
    """Finds the main face of every frame (SCRFD + tracker) and attaches it to the frame as ``frame.face``."""

    name = SCRFD.name
    label = SCRFD.label

    def __init__(self, settings: Settings) -> None:
        super().__init__(enabled=settings.enable_scrfd)
        self.settings = settings
        self.show_detections = False  # the preview may switch this on; settings.show_detections also works
        self.detector: SCRFDDetector | None = None
        self.tracker: FaceTracker | LandmarkTracker | None = None
        self.landmarks: Cropper | None = None  # the two landmark models, when their files are there
        self.landmarks_reason = ""  # why there are no landmarks (names the download)
        self.pick_serial = 0  # counts the user's picks, so the avatar stage can recalibrate on a new driver
        self._pick: tuple[float, float] | None = None
        self._last_face: Face | None = None
        self._restart = False
        #: whether a later stage needs the driving face while this stage is off (the avatar stage sets it)
        self.wanted_when_off: Callable[[], bool] = lambda: False

    def prepare(self) -> None:
        candidates = model_candidates(self.settings)
        errors: list[str] = []
        for path in candidates:
            if not path.exists() and not self.settings.scrfd_model:
                continue
            try:
                # the resolved device: "auto" on a GPU machine wants CUDA, so a CPU-only ORT is a fallback to report
                detector = SCRFDDetector(path, device=self.settings.resolved_device())
            except SCRFDModelError as exc:
                errors.append(str(exc))
                continue
            self.detector = detector
            self.tracker = FaceTracker(detector)
            self.load_landmarks()
            return
        if errors:  # every SCRFDModelError is fixed by fetching the model again
            raise StageUnavailable(errors[0], SCRFD.model_group)
        raise StageUnavailable(
            f"SCRFD model missing: {download_hint(SCRFD.model_group)} "
            f"(looked for {DEFAULT_SCRFD_FILE} in {self.settings.scrfd_dir()})",
            SCRFD.model_group,
        )

    def load_landmarks(self) -> bool:
        """Load the landmark models if not yet loaded (and switch to landmark tracking); False, with
        ``landmarks_reason`` naming the download, when their files are missing or broken."""
        if self.landmarks is not None:
            return True
        detector = self.detector
        if detector is None:
            return False
        paths = landmark_paths(self.settings.models_dir)
        try:
            cropper = Cropper(Landmark106(paths["2d106det.onnx"], self.settings.device),
                              Landmark203(paths["landmark.onnx"], self.settings.device))
        except LandmarkModelError as exc:
            self.landmarks_reason = str(exc)
            return False
        self.landmarks, self.landmarks_reason = cropper, ""
        self.tracker = LandmarkTracker(detector, cropper.lmk106, cropper.lmk203)  # one reference swap
        return True

    def source_cropper(self) -> Cropper:
        """The official source cropper over this stage's landmark models, for another thread (own input buffers);
        raises StageUnavailable naming the download when the landmark models are missing."""
        if not self.ensure_ready() or self.detector is None:
            status = self.status()
            raise StageUnavailable(status.reason or f"SCRFD model missing: {download_hint(SCRFD.model_group)}",
                                   status.model_group or SCRFD.model_group)
        if not self.load_landmarks() or self.landmarks is None:
            raise StageUnavailable(f"needs the face landmark models: {self.landmarks_reason}",
                                   LIVEPORTRAIT.model_group)  # the landmark models come with LivePortrait
        return Cropper(self.landmarks.lmk106.clone(), self.landmarks.lmk203.clone())

    def pick_face(self, x: float, y: float) -> None:
        """Drive with the face under (x, y), in frame pixels (the UI calls it when the user clicks the preview).

        Applied on the next frame; a point on no face is ignored and the current driver stays."""
        self._pick = (float(x), float(y))
        self.pick_serial += 1

    def track(self, image: np.ndarray, t: float) -> Face | None:
        """The driving face of one frame (BGR): this stage's per-frame work without touching a Frame."""
        tracker = self.tracker
        if tracker is None:  # released between ensure_ready and now
            return None
        if self._restart:
            self._restart = False
            tracker.reset()
        pick, self._pick = self._pick, None
        if pick is not None:
            tracker.pick(*pick)
        face = tracker.update(image, t)
        self._last_face = face
        return face

    def release(self) -> None:
        self.detector = None
        self.tracker = None
        self.landmarks = None

    def set_enabled(self, enabled: bool) -> None:
        super().set_enabled(enabled)
        self._restart = True  # the face may be anywhere when the stage comes back; the processing thread resets

    def process_when_off(self, frame: Frame) -> Frame:
        """Switched off, the stage still tracks the driving face for the avatar when it animates (no boxes drawn,
        no timings): the tracker and its landmark buffers have one owner, the processing thread, whichever
        switch is on. ``wanted_when_off`` says whether a later stage needs the face."""
        if not self.wanted_when_off() or not self.ensure_ready(block=False) or self.tracker is None:
            return frame
        frame.face = self.track(frame.camera if frame.camera is not None else frame.image, frame.t_capture)
        frame.face_checked = True
        return frame

    def process(self, frame: Frame) -> Frame:
        detector = self.detector
        if self.tracker is None or detector is None:  # released between ensure_ready and now: pass the frame through
            return frame
        note = detector.provider_reason  # a provider fallback is the reason while the detector runs
        if note and self.reason != note:
            self.set_reason(note)
        face = self.track(frame.image, frame.t_capture)
        frame.face = face
        frame.face_checked = True
        if face is not None and (self.show_detections or self.settings.show_detections):
            image = frame.image.copy()
            draw_face(image, face)
            frame.image = image
        return frame

    def detect_still(self, image_bgr: np.ndarray, max_faces: int = 0) -> list[Face]:
        """Faces in a still picture (an avatar portrait) with the stage's model; raises StageUnavailable."""
        if not self.ensure_ready() or self.detector is None:
            status = self.status()
            if status.reason and status.state in ("unavailable", "failed"):
                raise StageUnavailable(status.reason, status.model_group)
            raise StageUnavailable(f"SCRFD model missing: {download_hint(SCRFD.model_group)}", SCRFD.model_group)
        return self.detector.detect(image_bgr, max_faces=max_faces)

    def stats(self) -> dict[str, Any]:
        detector, tracker = self.detector, self.tracker
        if detector is None or tracker is None:
            return {"provider": None, "model": None, "mode": None, "face": False}
        face = self._last_face
        return {
            "provider": detector.provider,
            "backend": f"onnxruntime {SHORT_NAMES.get(detector.provider, detector.provider)}",  # what really runs
            "model": detector.model_path.name,
            "mode": tracker.mode,
            "face": face is not None,
            "full_detections": tracker.full_detections,
            # the driving face, for the window to mark: [x1, y1, x2, y2] in frame pixels, or None
            "driver_box": None if face is None else [round(float(v), 1) for v in face.box],
            "faces": tracker.face_count,  # faces in SCRFD's last full-frame detection
            "landmarks": self.landmarks is not None,
        }
