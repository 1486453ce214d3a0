"""The live avatar: the person's head pose and expression, seen by the camera, move the chosen portrait.

Per frame: crop the driving face from the tracked SCRFD keypoints, run the motion extractor, take the motion
relative to a reference (neutral) frame, stitch, warp and decode, and paste the 512x512 face back into the whole
portrait. The networks and the motion maths are :mod:`mirage_desktop.liveportrait` — the same functions the
conformance command checks.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from mirage_desktop.config import Settings, bundled_avatar
from mirage_desktop.stages.avatar.options import AnimationOptionError, AvatarOptions, check_option_changes
from mirage_desktop.stages.avatar.crop import DRIVING_FRAMING, SOURCE_FRAMING, cut_crop, face_square
from mirage_desktop.stages.face import FaceDetectionStage
from mirage_desktop.engine.frame import Frame
from mirage_desktop.vision.face import Face
from mirage_desktop.liveportrait.loader import LivePortraitLoadError
from mirage_desktop.liveportrait.motion import KpInfo
from mirage_desktop.liveportrait.runner import DriveOptions, LivePortrait, SourceState, rgb_to_tensor
from mirage_desktop.stages.avatar.paste_back import CanvasLayout, PasteBack
from mirage_desktop.engine.sources import SourceError, load_image
from mirage_desktop.engine.stage import Stage, StageUnavailable
from mirage_desktop.models.registry import download_hint
from mirage_desktop.stages.specs import LIVEPORTRAIT

logger = logging.getLogger(__name__)

CROP_SIZE = 256
#: Eye and lip openness of the portrait assumed by the retargeting options. The official pipeline measures them with
#: a dense landmark model that this app does not ship; these are typical values for open eyes and a closed mouth.
ASSUMED_SOURCE_EYE_RATIO = 0.3
ASSUMED_SOURCE_LIP_RATIO = 0.0


__all__ = ["AnimationOptionError", "AvatarError", "AvatarOptions", "AvatarStage", "PreparedAvatar"]


class AvatarError(RuntimeError):
    """The chosen portrait cannot be used (unreadable, no face); the previous avatar stays."""


@dataclass
class PreparedAvatar:
    """Everything computed once per portrait: the source state on the device and the paste-back geometry."""

    path: Path
    source: SourceState
    paste: PasteBack


class AvatarStage(Stage):
    """Animates the avatar from the camera's face. Needs the LivePortrait weights and an SCRFD model."""

    name = LIVEPORTRAIT.name
    label = LIVEPORTRAIT.label

    def __init__(self, settings: Settings, detector: FaceDetectionStage) -> None:
        super().__init__(enabled=settings.enable_liveportrait)
        self.settings = settings
        self.detector = detector
        self.options = AvatarOptions(fallback=settings.fallback)
        self.avatar_path: Path = Path(settings.avatar) if settings.avatar else bundled_avatar()
        self.model: LivePortrait | None = None
        self._avatar: PreparedAvatar | None = None
        self._avatar_lock = threading.Lock()  # serialises avatar preparation, never taken per frame
        self._reference: KpInfo | None = None
        self._reference_for: PreparedAvatar | None = None
        self._smoothed: torch.Tensor | None = None
        self._last_output: np.ndarray | None = None
        self._last_face_t = 0.0
        self._ratio_cache: dict[tuple[Any, ...], torch.Tensor] = {}
        self._crop_bgr = np.empty((CROP_SIZE, CROP_SIZE, 3), np.uint8)  # reused every frame
        self._crop_rgb = np.empty((CROP_SIZE, CROP_SIZE, 3), np.uint8)
        self.timings: dict[str, float] = {}

    # --------------------------------------------------------------------------------------------- controls
    def recalibrate(self) -> None:
        """The next good frame becomes the neutral reference."""
        self._reference = None

    def set_options(self, **changes: Any) -> None:
        """Change some options (next frame); :class:`AnimationOptionError` for an unknown name or a wrong kind."""
        self.options = replace(self.options, **check_option_changes(changes))
        if "expression_friendly" in changes or "relative_pose" in changes:
            self.recalibrate()

    def set_avatar(self, path: Path | str) -> None:
        """Use ``path`` as the avatar. Slow (face detection, F and M): call it off the GUI thread.

        Raises :class:`AvatarError` for an unreadable file or a portrait without a face, and StageUnavailable when
        no face detector is installed; the previous avatar stays. When the weights are not loaded yet, the portrait
        is checked now and prepared when the stage starts.
        """
        path = Path(path)
        portrait, face = self._read_portrait(path)
        with self._avatar_lock:
            if self.model is not None:
                self._avatar = self._prepare(path, portrait, face)  # one reference swap: atomic for the frame loop
            self.avatar_path = path
            self.settings.avatar = path

    def _read_portrait(self, path: Path) -> tuple[np.ndarray, Face]:
        try:
            portrait = load_image(path)
        except SourceError as exc:
            raise AvatarError(str(exc)) from exc
        faces = self.detector.detect_still(portrait)  # StageUnavailable when no SCRFD model is installed
        if not faces:
            raise AvatarError(f"No face found in {path.name}. Choose a portrait where one face is clearly visible.")
        return portrait, max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))

    def _prepare(self, path: Path, portrait: np.ndarray, face: Face) -> PreparedAvatar:
        model = self.model
        assert model is not None
        square = face_square(face.kps, SOURCE_FRAMING)
        crop = cut_crop(cv2.cvtColor(portrait, cv2.COLOR_BGR2RGB), square, CROP_SIZE)
        source = model.prepare_source(rgb_to_tensor(crop, model.device))
        layout = CanvasLayout.letterbox(portrait.shape[1], portrait.shape[0], self.settings.output_width,
                                        self.settings.output_height, self.settings.keep_avatar_aspect)
        return PreparedAvatar(path=path, source=source, paste=PasteBack(portrait, square, layout, model.device))

    # ------------------------------------------------------------------------------------------- lifecycle
    def prepare(self) -> None:
        device = self.settings.resolved_device()
        try:
            model = LivePortrait.load(self.settings.liveportrait_dir(), device=device, half=device == "cuda")
        except LivePortraitLoadError as exc:
            raise StageUnavailable(str(exc), LIVEPORTRAIT.model_group) from exc  # names the file and the command
        except FileNotFoundError as exc:
            raise StageUnavailable(f"LivePortrait weights missing: {download_hint(LIVEPORTRAIT.model_group)}",
                                   LIVEPORTRAIT.model_group) from exc
        if model.device.type == "cuda":
            model.warm_up()  # cuDNN picks its kernels now, not on the user's first frame (on a CPU it only costs)
        self.model = model
        try:
            portrait, face = self._read_portrait(self.avatar_path)
        except StageUnavailable as exc:
            raise StageUnavailable(f"needs face detection to find the avatar's face: {exc}", exc.model_group) from exc
        except AvatarError as exc:
            if self.avatar_path == bundled_avatar():
                raise StageUnavailable(str(exc)) from exc
            logger.warning("%s; using the bundled portrait", exc)
            self.avatar_path = bundled_avatar()
            portrait, face = self._read_portrait(self.avatar_path)
        with self._avatar_lock:
            self._avatar = self._prepare(self.avatar_path, portrait, face)

    def release(self) -> None:
        self.model = None
        self._avatar = None
        self._reference = None
        self._smoothed = None

    # --------------------------------------------------------------------------------------------- per frame
    def _locate(self, frame: Frame) -> Face | None:
        if frame.face_checked:
            return frame.face
        # face detection is switched off: animate anyway with the detector's own tracker
        if not self.detector.ensure_ready(block=False) or self.detector.tracker is None:
            status = self.detector.status()
            raise StageUnavailable(status.reason or "loading...", status.model_group)
        return self.detector.tracker.update(frame.camera if frame.camera is not None else frame.image,
                                            frame.t_capture)

    def process(self, frame: Frame) -> Frame:
        model, avatar = self.model, self._avatar
        if model is None or avatar is None:
            return frame
        try:
            face = self._locate(frame)
        except StageUnavailable as exc:
            self.set_reason(f"needs face detection: {exc}", exc.model_group)
            return frame
        if face is None:
            return self._no_face(frame, avatar)
        t0 = time.perf_counter()
        camera = frame.camera if frame.camera is not None else frame.image
        cut_crop(camera, face_square(face.kps, DRIVING_FRAMING), CROP_SIZE, dst=self._crop_bgr)
        cv2.cvtColor(self._crop_bgr, cv2.COLOR_BGR2RGB, dst=self._crop_rgb)
        driving_img = rgb_to_tensor(self._crop_rgb, model.device)
        t1 = time.perf_counter()
        driving = model.motion_info(driving_img)
        if self._reference is None or self._reference_for is not avatar:
            self._reference, self._reference_for = driving, avatar
            self._smoothed = None
        keypoints = self._drive(model, avatar.source, driving, self._reference)
        smoothing = self.options.smoothing
        if smoothing > 0 and self._smoothed is not None:
            keypoints = torch.lerp(keypoints, self._smoothed, min(smoothing, 0.95))
        self._smoothed = keypoints
        t2 = time.perf_counter()
        image = model.render(avatar.source, keypoints)
        t3 = time.perf_counter()
        out = avatar.paste.compose(image)
        t4 = time.perf_counter()
        self.timings = {"crop_ms": (t1 - t0) * 1e3, "motion_ms": (t2 - t1) * 1e3, "render_ms": (t3 - t2) * 1e3,
                        "paste_ms": (t4 - t3) * 1e3}
        self._last_output, self._last_face_t = out, frame.t_capture
        if self.reason:
            self.reason = ""
        frame.image = out
        return frame

    def _drive(self, model: LivePortrait, source: SourceState, driving: KpInfo, reference: KpInfo) -> torch.Tensor:
        """Driven keypoints for one frame: the conformance-checked chain with this stage's options."""
        options = self.options
        return model.drive(source, driving, reference, self._drive_options(options),
                           eye_ratio=self._ratio(options.eye_ratio, ASSUMED_SOURCE_EYE_RATIO, 2, model),
                           lip_ratio=self._ratio(options.lip_ratio, ASSUMED_SOURCE_LIP_RATIO, 1, model))

    def animate_crops(self, source_rgb: np.ndarray, driving_rgb: list[np.ndarray]) -> list[np.ndarray]:
        """Animate ready-made 256x256 RGB crops (the first driving crop is the reference) and return the 512x512
        RGB uint8 faces: the stage's chain without detection, cropping, smoothing or paste-back. Used to check the
        stage against the conformance kit's golden images."""
        if not self.ensure_ready(block=True) or self.model is None:
            status = self.status()
            raise StageUnavailable(status.reason, status.model_group)
        model = self.model
        source = model.prepare_source(rgb_to_tensor(source_rgb, model.device))
        infos = [model.motion_info(rgb_to_tensor(img, model.device)) for img in driving_rgb]
        return [model.to_uint8(model.render(source, self._drive(model, source, info, infos[0])))[0] for info in infos]

    @staticmethod
    def _drive_options(options: AvatarOptions) -> DriveOptions:
        return DriveOptions(
            relative_motion=options.relative_pose,
            driving_option="expression-friendly" if options.expression_friendly else "pose-friendly",
            stitching=True,
            driving_multiplier=options.driving_multiplier,
            eye_retargeting=options.eye_ratio is not None,
            lip_retargeting=options.lip_ratio is not None,
        )

    def _ratio(self, target: float | None, source: float, n_source: int, model: LivePortrait) -> torch.Tensor | None:
        """[source ratios..., target ratio] as the retargeting MLPs take it (made once per value, not per frame),
        or None when the option is off."""
        if target is None:
            return None
        key = (target, source, n_source, model.device)
        tensor = self._ratio_cache.get(key)
        if tensor is None:
            tensor = torch.tensor([[source] * n_source + [target]], dtype=torch.float32, device=model.device)
            self._ratio_cache[key] = tensor
        return tensor

    def _no_face(self, frame: Frame, avatar: PreparedAvatar) -> Frame:
        """Hold the last animated frame for the grace period, then show the avatar at rest (or the camera)."""
        if self._last_output is not None and frame.t_capture - self._last_face_t < self.options.grace_s:
            self.reason = "no face in view: holding the last frame"
            frame.image = self._last_output
            return frame
        self._smoothed = None
        if self.options.fallback == "passthrough":
            self.reason = "no face in view: showing the camera"
            return frame
        self.reason = "no face in view: showing the avatar at rest"
        frame.image = avatar.paste.rest
        return frame

    def stats(self) -> dict[str, Any]:
        avatar = self._avatar
        out: dict[str, Any] = {"avatar": str(avatar.path if avatar else self.avatar_path),
                               "calibrated": self._reference is not None}
        out.update({k: round(v, 3) for k, v in self.timings.items()})
        return out
