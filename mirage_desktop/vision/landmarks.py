"""The two face landmark networks LivePortrait's cropper uses, on ONNX Runtime with the same providers as SCRFD.

- :class:`Landmark106`: InsightFace's ``2d106det`` (buffalo_l). A face box becomes a 192x192 crop (box centre,
  1.5 x the longer side, no rotation); the network's 212 outputs in -1..1 become 106 points of that crop, mapped back
  to the image. The model normalises its input inside the graph (its first nodes are ``_minusscalar0`` and
  ``_mulscalar0``), so the input is raw RGB 0..255, as InsightFace's Landmark class decides for this file.
- :class:`Landmark203`: LivePortrait's ``landmark.onnx``. It reads a 224x224 RGB crop scaled to 0..1 and its third
  output holds 203 (x, y) pairs in crop units; where that crop comes from (the previous frame's landmarks) is
  LivePortrait's geometry, so the caller cuts it and maps the points back (``liveportrait.cropper``).

Both keep their input tensor between calls, so a frame allocates only what ONNX Runtime returns.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Self

import cv2
import numpy as np

from mirage_desktop.models.registry import download_hint
from mirage_desktop.vision.onnx_session import SerialSession, choose_providers, open_session

logger = logging.getLogger(__name__)

#: The registry group that holds both landmark files.
GROUP = "liveportrait"

SIZE_106 = 192
OUTPUTS_106 = 212
#: the crop covers this many times the longer side of the face box
BOX_SCALE_106 = 1.5
SIZE_203 = 224
OUTPUTS_203 = 406
#: the output of landmark.onnx that holds the 203 points
OUTPUT_INDEX_203 = 2


class LandmarkModelError(RuntimeError):
    """A landmark model file is missing or is not the expected network; the message names the file and the fix."""


def _session(path: Path, what: str, device: str, threads: int) -> SerialSession:
    path = Path(path)
    if not path.is_file():
        raise LandmarkModelError(f"{what} not found at {path}: {download_hint(GROUP)}")
    try:
        return open_session(str(path), threads, choose_providers(device))
    except Exception as exc:  # noqa: BLE001 - ORT raises its own types for truncated or foreign files
        raise LandmarkModelError(f"{what} at {path} cannot be loaded ({exc}); {download_hint(GROUP)}") from exc


def _check_input(session: SerialSession, path: Path, what: str, size: int) -> str:
    inputs = session.get_inputs()
    shape = list(inputs[0].shape) if inputs else []
    if len(inputs) != 1 or len(shape) != 4 or shape[1:] != [3, size, size]:
        raise LandmarkModelError(
            f"{path} is not the {what}: it takes {[(i.name, i.shape) for i in inputs]}, not one (N, 3, {size}, {size}) "
            f"image; {download_hint(GROUP)}"
        )
    return inputs[0].name


class Landmark106:
    """InsightFace 2d106det: 106 points from an image and a face box."""

    def __init__(self, path: Path, device: str = "auto", threads: int = 0) -> None:
        what = "the InsightFace 106-point landmark model (2d106det.onnx)"
        self.path = Path(path)
        self.session = _session(self.path, what, device, threads)
        self.input_name = _check_input(self.session, self.path, what, SIZE_106)
        outputs = self.session.get_outputs()
        if len(outputs) != 1 or outputs[0].shape[-1] != OUTPUTS_106:
            raise LandmarkModelError(
                f"{self.path} is not the {what}: outputs {[(o.name, o.shape) for o in outputs]}, expected one of "
                f"{OUTPUTS_106} values; {download_hint(GROUP)}"
            )
        self.output_name = outputs[0].name
        self._blob = np.zeros((1, 3, SIZE_106, SIZE_106), np.float32)

    def clone(self) -> Self:
        """The same session (its runs take turns, :class:`SerialSession`) with its own input buffer, for another thread
        (the avatar stage crops portraits while the processing thread tracks faces)."""
        twin = copy.copy(self)
        twin._blob = np.zeros_like(self._blob)
        return twin

    @staticmethod
    def align(image: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(192x192 crop, 2x3 float64 image -> crop matrix): centre on the box, 192 / (1.5 x longer side).

        The scale and centre are float32 as InsightFace forms them from a float32 box."""
        box = np.asarray(box, np.float32)
        w, h = box[2] - box[0], box[3] - box[1]
        cx, cy = (box[2] + box[0]) / 2, (box[3] + box[1]) / 2
        scale = SIZE_106 / (max(w, h) * BOX_SCALE_106)
        half = SIZE_106 / 2
        m = np.array([[scale, 0.0, half - float(cx * scale)], [0.0, scale, half - float(cy * scale)]], np.float64)
        return cv2.warpAffine(image, m, (SIZE_106, SIZE_106), borderValue=0.0), m

    def blob(self, crop: np.ndarray, bgr: bool = True) -> np.ndarray:
        """NCHW float32 RGB 0..255 (the graph normalises); reuses one buffer."""
        order = (2, 1, 0) if bgr else (0, 1, 2)
        for c, src in enumerate(order):
            self._blob[0, c] = crop[:, :, src]
        return self._blob

    def run(self, blob: np.ndarray) -> np.ndarray:
        """The raw (N, 212) output, about -1..1."""
        return self.session.run([self.output_name], {self.input_name: blob})[0]

    @staticmethod
    def points(raw: np.ndarray, m: np.ndarray) -> np.ndarray:
        """(106, 2) float32 image pixels: (raw + 1) x 96 in the crop, mapped back with the inverse of ``m``."""
        pred = np.asarray(raw, np.float32).reshape(-1, 2).copy()
        pred += 1
        pred *= SIZE_106 // 2
        inv = cv2.invertAffineTransform(m)
        return (pred.astype(np.float64) @ inv[:, :2].T + inv[:, 2]).astype(np.float32)

    def detect(self, image: np.ndarray, box: np.ndarray, bgr: bool = True) -> np.ndarray:
        """106 points of the face in ``box`` ([x1, y1, x2, y2]) of ``image`` (BGR unless ``bgr`` is False)."""
        crop, m = self.align(image, box)
        return self.points(self.run(self.blob(crop, bgr))[0], m)


class Landmark203:
    """LivePortrait landmark.onnx: 203 points of a 224x224 RGB crop."""

    def __init__(self, path: Path, device: str = "auto", threads: int = 0) -> None:
        what = "LivePortrait's 203-point landmark model (landmark.onnx)"
        self.path = Path(path)
        self.session = _session(self.path, what, device, threads)
        self.input_name = _check_input(self.session, self.path, what, SIZE_203)
        outputs = self.session.get_outputs()
        if len(outputs) <= OUTPUT_INDEX_203 or outputs[OUTPUT_INDEX_203].shape[-1] != OUTPUTS_203:
            raise LandmarkModelError(
                f"{self.path} is not {what}: outputs {[(o.name, o.shape) for o in outputs]}, expected the third to "
                f"hold {OUTPUTS_203} values; {download_hint(GROUP)}"
            )
        self.output_names = [o.name for o in outputs]
        self._blob = np.zeros((1, 3, SIZE_203, SIZE_203), np.float32)

    def clone(self) -> Self:
        """The same session (its runs take turns, :class:`SerialSession`) with its own input buffer, for another thread
        (the avatar stage crops portraits while the processing thread tracks faces)."""
        twin = copy.copy(self)
        twin._blob = np.zeros_like(self._blob)
        return twin

    def blob(self, crop_rgb: np.ndarray, bgr: bool = False) -> np.ndarray:
        """NCHW float32 = RGB / 255 (the division in float32, as officially); reuses one buffer. ``bgr``: the crop
        is BGR (a camera frame's), its channels are reversed here instead of converting the whole frame."""
        chw = crop_rgb.transpose(2, 0, 1)
        np.divide(chw[::-1] if bgr else chw, np.float32(255.0), out=self._blob[0], dtype=np.float32)
        return self._blob

    def run(self, blob: np.ndarray) -> list[np.ndarray]:
        """All three outputs; only the third is landmarks."""
        return self.session.run(self.output_names, {self.input_name: blob})

    @staticmethod
    def points(outputs: list[np.ndarray]) -> np.ndarray:
        """(203, 2) float32 in crop pixels: the third output x 224."""
        return np.asarray(outputs[OUTPUT_INDEX_203][0], np.float32).reshape(-1, 2) * SIZE_203

    def detect_crop(self, crop_rgb: np.ndarray) -> np.ndarray:
        """203 points of a 224x224 RGB crop, in its pixels."""
        return self.points(self.run(self.blob(crop_rgb)))
