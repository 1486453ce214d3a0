"""The face detection stage: SCRFD plus the tracker on every frame, the main face attached to the frame."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mirage_desktop.config import Settings
from mirage_desktop.engine.frame import Frame
from mirage_desktop.engine.stage import Stage, StageUnavailable
from mirage_desktop.models.registry import DEFAULT_SCRFD_FILE, download_hint
from mirage_desktop.stages.specs import SCRFD
from mirage_desktop.vision.drawing import draw_face
from mirage_desktop.vision.face import Face
from mirage_desktop.vision.face_tracking import FaceTracker
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
        self.tracker: FaceTracker | None = None
        self._last_face = False
        self._restart = False

    def prepare(self) -> None:
        candidates = model_candidates(self.settings)
        errors: list[str] = []
        for path in candidates:
            if not path.exists() and not self.settings.scrfd_model:
                continue
            try:
                detector = SCRFDDetector(path, device=self.settings.device)
            except SCRFDModelError as exc:
                errors.append(str(exc))
                continue
            self.detector = detector
            self.tracker = FaceTracker(detector)
            return
        if errors:  # every SCRFDModelError is fixed by fetching the model again
            raise StageUnavailable(errors[0], SCRFD.model_group)
        raise StageUnavailable(
            f"SCRFD model missing: {download_hint(SCRFD.model_group)} "
            f"(looked for {DEFAULT_SCRFD_FILE} in {self.settings.scrfd_dir()})",
            SCRFD.model_group,
        )

    def release(self) -> None:
        self.detector = None
        self.tracker = None

    def set_enabled(self, enabled: bool) -> None:
        super().set_enabled(enabled)
        self._restart = True  # the face may be anywhere when the stage comes back; the processing thread resets

    def process(self, frame: Frame) -> Frame:
        tracker = self.tracker
        if tracker is None:  # released between ensure_ready and now: pass the frame through
            return frame
        if self._restart:
            self._restart = False
            tracker.reset()
        face = tracker.update(frame.image, frame.t_capture)
        frame.face = face
        frame.face_checked = True
        self._last_face = face is not None
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
        return {
            "provider": detector.provider,
            "model": detector.model_path.name,
            "mode": tracker.mode,
            "face": self._last_face,
            "full_detections": tracker.full_detections,
        }
