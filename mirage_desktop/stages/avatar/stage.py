"""The live avatar: the person's head pose and expression, seen by the camera, move the chosen portrait.

Per frame: the face stage's tracked 203 landmarks give the driving crop (:class:`LiveCropper`: upright, held steady,
so roll, shifts and zoom reach the motion extractor as motion), M measures the motion, one One-Euro filter smooths
it, the official motion maths (every option of :class:`~mirage_desktop.liveportrait.options.DriveOptions`) drive
the keypoints, W and G render, and the face is pasted back into the letterboxed portrait with the official mask.
The portrait is cropped once by the official cropper (SCRFD box -> 106 points -> 512 crop -> area resize to 256),
and its eye and lip ratios come from its 203 landmarks; the driver's come from the tracked 203 points each frame.
The networks and the motion maths are :mod:`mirage_desktop.liveportrait`, the functions the conformance checks.
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

from mirage_desktop.animation_options import AnimationOptionError, AnimationOptions, option_changes
from mirage_desktop.config import Settings, bundled_avatar
from mirage_desktop.engine.frame import Frame
from mirage_desktop.engine.sources import SourceError, load_image
from mirage_desktop.engine.stage import Stage, StageUnavailable
from mirage_desktop.models.registry import download_hint
from mirage_desktop.liveportrait.backends import BackendUnavailable
from mirage_desktop.liveportrait.crop import NETWORK_SIZE, limit_size
from mirage_desktop.liveportrait.cropper import Cropper, SourceCrop
from mirage_desktop.liveportrait.live_crop import LiveCropper
from mirage_desktop.liveportrait.loader import LivePortraitLoadError
from mirage_desktop.liveportrait.motion import KpInfo
from mirage_desktop.liveportrait.options import FaceRatios
from mirage_desktop.liveportrait.runner import LivePortrait, SourceState, rgb_to_tensor
from mirage_desktop.liveportrait.smoothing import MotionSmoother
from mirage_desktop.stages.avatar.canvas import AvatarCanvas, CanvasLayout
from mirage_desktop.stages.avatar.options import (
    FALLBACKS,
    LOST_FACE_OPTIONS,
    RECALIBRATING_OPTIONS,
    LostFace,
    drive_options,
    motion_smoother,
    needs_driver_ratios,
)
from mirage_desktop.stages.face import FaceDetectionStage
from mirage_desktop.stages.specs import LIVEPORTRAIT
from mirage_desktop.vision.face import Face

logger = logging.getLogger(__name__)

CROP_SIZE = NETWORK_SIZE
#: the driving crop is cut at this side, then resized (bilinear) to 256, as the official driving path does
DRIVING_CROP_SIZE = 512
#: the loading reason while the networks are exported or measured (once per machine and weights)
OPTIMISING = "optimising for this computer (one time)"
#: how often (seconds of capture time) the stage re-reads which backend runs each network
BACKEND_CHECK_S = 2.0


__all__ = ["AnimationOptionError", "AvatarError", "AvatarStage", "PreparedAvatar"]


class AvatarError(RuntimeError):
    """The chosen portrait cannot be used (unreadable, no face); the previous avatar stays."""


@dataclass
class PreparedAvatar:
    """Everything computed once per portrait: the official crop, the source state on the device (with its
    measured eye and lip ratios) and the canvas with its paste-back."""

    path: Path
    crop: SourceCrop
    source: SourceState
    paste: AvatarCanvas


class AvatarStage(Stage):
    """Animates the avatar from the camera's face. Needs the LivePortrait weights, the two landmark models and an
    SCRFD model."""

    name = LIVEPORTRAIT.name
    label = LIVEPORTRAIT.label
    asynchronous = True  # slower than the camera: its own thread; the video shows its latest frame

    def __init__(self, settings: Settings, detector: FaceDetectionStage) -> None:
        super().__init__(enabled=settings.enable_liveportrait)
        self.settings = settings
        self.detector = detector
        detector.wanted_when_off = lambda: self.enabled  # the face stage tracks for us while it is switched off
        self.options = AnimationOptions()
        self.lost_face = LostFace(fallback=settings.fallback if settings.fallback in FALLBACKS else FALLBACKS[0])
        self._drive_opts = drive_options(self.options)
        self._smoother = motion_smoother(self.options)
        self._needs_ratios = needs_driver_ratios(self.options)
        self.avatar_path: Path = Path(settings.avatar) if settings.avatar else bundled_avatar()
        self.model: LivePortrait | None = None
        self.cropper: Cropper | None = None  # the source cropper (own buffers; the face stage's models)
        self._avatar: PreparedAvatar | None = None
        self._avatar_lock = threading.Lock()  # serialises avatar preparation, never taken per frame
        self._reference: KpInfo | None = None
        self._reference_for: PreparedAvatar | None = None
        self._live = LiveCropper(dsize=DRIVING_CROP_SIZE)
        self._track_id: int | None = None
        self._pick_serial = detector.pick_serial
        self._last_output: np.ndarray | None = None
        self._last_face_t = 0.0
        self._crop512 = np.empty((DRIVING_CROP_SIZE, DRIVING_CROP_SIZE, 3), np.uint8)  # reused every frame
        self._crop_bgr = np.empty((CROP_SIZE, CROP_SIZE, 3), np.uint8)
        self._crop_rgb = np.empty((CROP_SIZE, CROP_SIZE, 3), np.uint8)
        #: per-frame times; on CUDA the sub-timings (crop/motion/render/paste) need ``sub_timings`` (it synchronises
        #: the device between steps), otherwise only the frame's total is reported there
        self.sub_timings = False
        self.timings: dict[str, float] = {}
        #: network (F, M, W, G, stitching, lip, eye) -> "backend precision" running it now
        self.backends: dict[str, str] = {}
        self._backend_note = ""  # backend fallbacks and precision-guard switches: the reason while animating
        self._backends_checked_t = 0.0

    # --------------------------------------------------------------------------------------------- controls
    def recalibrate(self) -> None:
        """The next good frame becomes the neutral reference."""
        self._reference = None

    def set_options(self, **changes: Any) -> None:
        """Change Animation options (names of :class:`AnimationOptions`, or their old names) and the lost-face ones
        (``grace_s``, ``fallback``); applied from the next frame. Raises :class:`AnimationOptionError` for an unknown
        name or a bad value (the options stay as they were)."""
        lost = {name: changes.pop(name) for name in LOST_FACE_OPTIONS if name in changes}
        checked = option_changes(changes)
        options = replace(self.options, **checked)
        lost_face = replace(self.lost_face, **lost)
        smoother = motion_smoother(options) if "smoothing" in checked else self._smoother
        self.options, self.lost_face, self._drive_opts = options, lost_face, drive_options(options)
        self._smoother, self._needs_ratios = smoother, needs_driver_ratios(options)
        if RECALIBRATING_OPTIONS & set(checked):
            self.recalibrate()

    def set_avatar(self, path: Path | str) -> None:
        """Use ``path`` as the avatar. Slow (face detection, landmarks, F and M): call it off the GUI thread.

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
        """The portrait (BGR) within the official 1280 px limit, and its largest face."""
        try:
            portrait = limit_size(load_image(path))
        except SourceError as exc:
            raise AvatarError(str(exc)) from exc
        faces = self.detector.detect_still(portrait)  # StageUnavailable when no SCRFD model is installed
        if not faces:
            raise AvatarError(f"No face found in {path.name}. Choose a portrait where one face is clearly visible.")
        return portrait, max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))

    def _prepare(self, path: Path, portrait: np.ndarray, face: Face) -> PreparedAvatar:
        model, cropper = self.model, self.cropper
        assert model is not None and cropper is not None
        crop = cropper.source(cv2.cvtColor(portrait, cv2.COLOR_BGR2RGB), face.box)
        source = model.prepare_source(rgb_to_tensor(crop.image_256, model.device), landmarks=crop.lmk203)
        layout = CanvasLayout.letterbox(portrait.shape[1], portrait.shape[0], self.settings.output_width,
                                        self.settings.output_height, self.settings.keep_avatar_aspect)
        return PreparedAvatar(path=path, crop=crop, source=source,
                              paste=AvatarCanvas(portrait, crop.M_c2o, layout, model.device))

    # ------------------------------------------------------------------------------------------- lifecycle
    def prepare(self) -> None:
        device = self.settings.resolved_device()
        try:
            model = LivePortrait.load(self.settings.liveportrait_dir(), device=device,
                                      backend=self.settings.liveportrait_backend,
                                      precision=self.settings.liveportrait_precision, progress=self._progress)
        except LivePortraitLoadError as exc:
            raise StageUnavailable(str(exc), LIVEPORTRAIT.model_group) from exc  # names the file and the command
        except (BackendUnavailable, ValueError) as exc:  # a backend or precision this machine cannot run
            raise StageUnavailable(str(exc)) from exc
        except FileNotFoundError as exc:
            raise StageUnavailable(f"LivePortrait weights missing: {download_hint(LIVEPORTRAIT.model_group)}",
                                   LIVEPORTRAIT.model_group) from exc
        try:
            self.cropper = self.detector.source_cropper()  # the landmark models; the reason names the download
        except StageUnavailable as exc:
            raise StageUnavailable(f"needs face detection and landmarks to crop the avatar: {exc}",
                                   exc.model_group) from exc
        if model.device.type == "cuda":
            model.warm_up()  # cuDNN picks its kernels now, not on the user's first frame (on a CPU it only costs)
        self.model = model
        self._read_backends(model)
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
        self.cropper = None
        self._avatar = None
        self._reference = None
        self.backends, self._backend_note = {}, ""
        self._restart_driver()

    # --------------------------------------------------------------------------------------------- per frame
    def _locate(self, frame: Frame) -> Face | None:
        if frame.face_checked:
            return frame.face
        # face detection is switched off and its tracker (run for us on the processing thread) is not ready yet
        status = self.detector.status()
        raise StageUnavailable(status.reason if status.reason not in ("", "off") else "loading...",
                               status.model_group)

    def _restart_driver(self) -> None:
        """A new driving face (or none): the live crop and the motion filter start afresh."""
        self._live.reset()
        if self._smoother is not None:
            self._smoother.reset()

    def _follow_driver(self, face: Face) -> None:
        if self.detector.pick_serial != self._pick_serial:  # the user picked another face: new neutral pose
            self._pick_serial = self.detector.pick_serial
            self.recalibrate()
        if face.track_id != self._track_id:
            self._track_id = face.track_id
            self._restart_driver()

    def _driving_crop(self, camera: np.ndarray, lmk203: np.ndarray) -> np.ndarray:
        """The 256 RGB driving crop: the live crop's square cut at 512 (black border), bilinear to 256."""
        crop = self._live.update(lmk203)
        cv2.warpAffine(camera, crop.M, (DRIVING_CROP_SIZE, DRIVING_CROP_SIZE), dst=self._crop512,
                       flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        cv2.resize(self._crop512, (CROP_SIZE, CROP_SIZE), dst=self._crop_bgr, interpolation=cv2.INTER_LINEAR)
        return cv2.cvtColor(self._crop_bgr, cv2.COLOR_BGR2RGB, dst=self._crop_rgb)

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
        if face.lmk203 is None:
            self.set_reason("needs the face landmark models: "
                            + (self.detector.landmarks_reason or download_hint(LIVEPORTRAIT.model_group)),
                            LIVEPORTRAIT.model_group)
            return frame
        self._follow_driver(face)
        sync = model.device.type == "cuda"
        timed = not sync or self.sub_timings
        t0 = time.perf_counter()
        camera = frame.camera if frame.camera is not None else frame.image
        driving_img = rgb_to_tensor(self._driving_crop(camera, face.lmk203), model.device)
        t1 = self._mark(sync) if timed else t0
        driving = model.motion_info(driving_img)
        reference = self._reference if self._reference_for is avatar else None  # None: recalibrate on this frame
        smoother = self._smoother
        if smoother is not None:
            if reference is None:
                smoother.reset()  # a new reference: the filter starts from it
            driving = smoother(driving, frame.t_capture)
        if reference is None:
            reference = self._reference = driving
            self._reference_for = avatar
        ratios = FaceRatios.from_landmarks(face.lmk203) if self._needs_ratios else None
        keypoints = self._drive(model, avatar.source, driving, reference, ratios)
        t2 = self._mark(sync) if timed else t0
        image = model.render(avatar.source, keypoints)
        t3 = self._mark(sync) if timed else t0
        out = avatar.paste.compose(image)  # the host copy: the device is done with the frame
        t4 = time.perf_counter()
        if timed:
            self.timings = {"crop_ms": (t1 - t0) * 1e3, "motion_ms": (t2 - t1) * 1e3, "render_ms": (t3 - t2) * 1e3,
                            "paste_ms": (t4 - t3) * 1e3, "avatar_ms": (t4 - t0) * 1e3}
        else:
            self.timings = {"avatar_ms": (t4 - t0) * 1e3}
        self._last_output, self._last_face_t = out, frame.t_capture
        if frame.t_capture >= self._backends_checked_t + BACKEND_CHECK_S:  # a guard may have switched a module
            self._backends_checked_t = frame.t_capture
            self._read_backends(model)
        if self.reason != self._backend_note:
            self.set_reason(self._backend_note)
        frame.image = out
        return frame

    def _progress(self, message: str, fraction: float) -> None:
        """One-time work at load (the ONNX export, measuring each backend): shown as the loading stage's reason."""
        step = message.replace(" (one time)", "")
        self.reason = f"{OPTIMISING}… {step[:1].lower()}{step[1:]}, {fraction:.0%}"

    def _read_backends(self, model: LivePortrait) -> None:
        """The module -> backend map for stats(), and the fallbacks and guard switches as the reason to show."""
        self.backends, reasons = model.backend_status()
        self._backend_note = "; ".join(reasons)

    def _mark(self, sync: bool) -> float:
        """A sub-timing mark; on CUDA it waits for the model's device's queued work first (only when sub-timings are
        asked for), so ``cuda:1`` is timed on its own device, not the thread's current one."""
        if sync and self.model is not None:
            torch.cuda.synchronize(self.model.device)
        return time.perf_counter()

    def _drive(self, model: LivePortrait, source: SourceState, driving: KpInfo, reference: KpInfo,
               driver: FaceRatios | None = None) -> torch.Tensor:
        """Driven keypoints for one frame: the conformance-checked chain with this stage's options."""
        return model.drive(source, driving, reference, self._drive_opts, driver=driver)

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

    def _no_face(self, frame: Frame, avatar: PreparedAvatar) -> Frame:
        """Hold the last animated frame for the grace period, then show the avatar at rest (or the camera)."""
        if self._last_output is not None and frame.t_capture - self._last_face_t < self.lost_face.grace_s:
            self.reason = "no face in view: holding the last frame"
            frame.image = self._last_output
            return frame
        self._restart_driver()
        if self.lost_face.fallback == "passthrough":
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
        if self.backends:
            out["backend"] = dict(self.backends)  # module -> "backend precision" running it now
        return out
