"""SCRFD face detection on ONNX Runtime: the detector.

SCRFD predicts, for every anchor point of three feature maps (strides 8, 16, 32, two anchors per point), a face
score, the distances from the point to the four box edges and the offsets of five keypoints, all in units of the
stride. We decode only the anchors above the score threshold (a few dozen out of 16,800), then suppress overlaps.

Preprocessing keeps the aspect ratio: the frame is resized into the top-left corner of the network input and the
rest is padding, so a point maps back to the frame by one scale per axis and an offset. Exports with a dynamic
input size get an input trimmed to the content (rounded up to 32), which for a 16:9 frame saves ~40 % of the work;
fixed-size exports always get their declared size.

The per-frame path reuses its input tensor and resize target (one :class:`Scratch` per caller), so a frame costs
one resize, one fused convert-normalise pass per channel and the network.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mirage_desktop.models.registry import download_hint
from mirage_desktop.vision.face import Face
from mirage_desktop.vision.letterbox import fit_inside
from mirage_desktop.vision.onnx_session import CPU, Provider, open_session, provider_chain, session_fallback

logger = logging.getLogger(__name__)

DOWNLOAD_HINT = download_hint("scrfd")

SCORE_THRESHOLD = 0.5
NMS_THRESHOLD = 0.4
DEFAULT_DET_SIZE = 640
#: Candidates kept before suppression; a real frame has far fewer above the threshold.
MAX_CANDIDATES = 2000

_MEAN = 127.5
_SCALE = 1.0 / 128.0
_PAD_VALUE = -_MEAN * _SCALE  # what a black pixel becomes after normalisation
_ONNX_MAGIC = b"\x08"  # an ONNX ModelProto starts with field 1 (ir_version) as a varint
# (outputs, strides, anchors per location) of the SCRFD exports with keypoints.
_LAYOUTS = {9: ((8, 16, 32), 2), 15: ((8, 16, 32, 64, 128), 1)}


class SCRFDModelError(RuntimeError):
    """The model file is missing or is not an SCRFD export with keypoints; the message names the file and fix."""


# ------------------------------------------------------------------------------------------------- scratch
class _InputBuffer:
    """The network input for one input size, padded once; only the content rectangle is rewritten per frame."""

    __slots__ = ("blob", "content", "planes", "resized")

    def __init__(self, height: int, width: int) -> None:
        self.blob = np.full((1, 3, height, width), _PAD_VALUE, dtype=np.float32)
        self.resized: np.ndarray | None = None
        self.planes: list[np.ndarray] = []
        self.content = (0, 0)

    def target(self, height: int, width: int) -> np.ndarray:
        """The uint8 resize target for a content of ``height`` x ``width``; re-pads when the content shrank."""
        if self.content != (height, width):
            if self.content[0] > height or self.content[1] > width:
                self.blob.fill(_PAD_VALUE)
            self.resized = np.empty((height, width, 3), dtype=np.uint8)
            self.planes = [np.empty((height, width), dtype=np.uint8) for _ in range(3)]
            self.content = (height, width)
        assert self.resized is not None
        return self.resized


class Scratch:
    """Reusable buffers of one caller (the video tracker keeps one; a still detection makes a fresh one)."""

    def __init__(self) -> None:
        self._inputs: dict[tuple[int, int], _InputBuffer] = {}

    def input(self, height: int, width: int) -> _InputBuffer:
        buf = self._inputs.get((height, width))
        if buf is None:
            buf = self._inputs[(height, width)] = _InputBuffer(height, width)
        return buf


@dataclass(slots=True)
class Detections:
    """Faces of one image in frame pixels, best score first: boxes (N, 4), scores (N,), kps (N, 5, 2)."""

    boxes: np.ndarray
    scores: np.ndarray
    kps: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def face(self, i: int) -> Face:
        return Face(box=self.boxes[i].copy(), score=float(self.scores[i]), kps=self.kps[i].copy())

    def faces(self) -> list[Face]:
        return [self.face(i) for i in range(len(self))]

    def largest(self) -> int:
        """Index of the biggest face (the user in front of the camera), -1 when there is none."""
        if not len(self):
            return -1
        wh = self.boxes[:, 2:] - self.boxes[:, :2]
        return int(np.argmax(wh[:, 0] * wh[:, 1]))


_EMPTY = Detections(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float = NMS_THRESHOLD) -> np.ndarray:
    """Greedy non-maximum suppression; returns indices of the kept boxes, best score first."""
    order = np.argsort(-scores, kind="stable")
    if order.size <= 1:
        return order
    b = boxes[order]
    area = np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)
    w = np.clip(np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    iou = inter / np.maximum(area[:, None] + area[None, :] - inter, 1e-6)
    keep = np.ones(order.size, dtype=bool)
    for i in range(order.size - 1):
        if keep[i]:
            keep[i + 1 :] &= iou[i, i + 1 :] <= threshold
    return order[keep]


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (x1, y1, x2, y2) boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = float(w * h)
    union = float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])) - inter
    return inter / union if union > 0 else 0.0


# ------------------------------------------------------------------------------------------------ detector
def check_model_file(path: Path) -> None:
    """Fail early, naming the file, when it is missing, empty or clearly not an ONNX model (ORT checks the rest)."""
    if not path.is_file():
        raise SCRFDModelError(f"SCRFD model missing: {path} does not exist; {DOWNLOAD_HINT}")
    with path.open("rb") as fh:
        head = fh.read(1)
    if not head:
        raise SCRFDModelError(
            f"SCRFD model {path} is empty (an interrupted download?); {DOWNLOAD_HINT} to fetch it again"
        )
    if head != _ONNX_MAGIC:
        raise SCRFDModelError(f"SCRFD model {path} is not an ONNX file; {DOWNLOAD_HINT} to replace it")


class SCRFDDetector:
    """SCRFD with 5 keypoints on ONNX Runtime, for fixed-size (640x640) and dynamic-size exports.

    ``detect`` is safe to call from several threads (each call has its own buffers); the video path passes a
    :class:`Scratch` to ``detect_arrays`` so that no buffer is allocated per frame.
    """

    def __init__(
        self,
        model_path: Path | str,
        providers: Sequence[Provider] | None = None,
        *,
        device: str = "auto",
        threads: int = 0,
        score_threshold: float = SCORE_THRESHOLD,
        nms_threshold: float = NMS_THRESHOLD,
    ) -> None:
        self.model_path = Path(model_path)
        check_model_file(self.model_path)
        requested: list[Provider] = list(providers) if providers else provider_chain(device)
        try:
            self.session = open_session(str(self.model_path), threads, requested)
        except Exception as exc:  # ORT raises its own types (InvalidProtobuf, Fail, ...) for broken files
            raise SCRFDModelError(
                f"SCRFD model {self.model_path} cannot be loaded (truncated or corrupt: "
                f"{str(exc).strip().splitlines()[0][:200]}); {DOWNLOAD_HINT} to fetch it again"
            ) from exc
        actual = self.session.get_providers()
        self.provider = actual[0]  # what really runs (ORT drops a provider whose libraries do not load)
        #: why the session did not get the provider it asked for (None when it did), naming the fix
        self.provider_reason = session_fallback(device, requested, actual)
        if self.provider_reason:
            logger.warning("SCRFD: %s", self.provider_reason)
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self._read_layout()
        self._anchors: dict[tuple[int, int], list[np.ndarray]] = {}
        self._check_outputs()
        logger.info("SCRFD %s loaded on %s (input %s)", self.model_path.name, self.provider, self.describe_input())

    # --------------------------------------------------------------------------------------------- layout
    def _read_layout(self) -> None:
        inputs = self.session.get_inputs()
        outputs = self.session.get_outputs()
        shape = list(inputs[0].shape) if inputs else []
        if len(inputs) != 1 or len(shape) != 4 or shape[1] != 3:
            got = ", ".join(f"{i.name} {i.shape}" for i in inputs) or "none"
            raise SCRFDModelError(
                f"SCRFD model {self.model_path} has inputs {got}, expected one 1x3xHxW image: "
                f"not an SCRFD detector; {DOWNLOAD_HINT}"
            )
        if len(outputs) not in _LAYOUTS:
            raise SCRFDModelError(
                f"SCRFD model {self.model_path} has {len(outputs)} outputs, expected 9 or 15 (score, box and "
                f"keypoints per stride): not an SCRFD export with keypoints; {DOWNLOAD_HINT}"
            )
        self.input_name: str = inputs[0].name
        self.output_names = [o.name for o in outputs]
        self.strides, self.num_anchors = _LAYOUTS[len(outputs)]
        h, w = shape[2], shape[3]
        self.fixed_size: tuple[int, int] | None = (h, w) if isinstance(h, int) and isinstance(w, int) else None
        levels = len(self.strides)
        widths = [o.shape[-1] for o in outputs]
        expected = [1] * levels + [4] * levels + [10] * levels
        if any(isinstance(got, int) and got != want for got, want in zip(widths, expected)):
            raise SCRFDModelError(
                f"SCRFD model {self.model_path} has output widths {widths}, expected {expected}: "
                f"not an SCRFD export with keypoints; {DOWNLOAD_HINT}"
            )

    def _check_outputs(self) -> None:
        """One dry run: the output sizes must match our anchor grid (also warms the session up)."""
        h, w = self.fixed_size or (DEFAULT_DET_SIZE, DEFAULT_DET_SIZE)
        try:
            outs = self.session.run(self.output_names, {self.input_name: np.zeros((1, 3, h, w), np.float32)})
        except Exception as exc:
            raise SCRFDModelError(
                f"SCRFD model {self.model_path} fails on a {w}x{h} input ({str(exc).splitlines()[0][:200]}); "
                f"{DOWNLOAD_HINT}"
            ) from exc
        for level, centres in enumerate(self._anchor_centres(h, w)):
            for k in (level, level + len(self.strides), level + 2 * len(self.strides)):
                count = outs[k].size // max(outs[k].shape[-1], 1)
                if count != centres.shape[0]:
                    raise SCRFDModelError(
                        f"SCRFD model {self.model_path} output {self.output_names[k]!r} has {count} anchors, "
                        f"expected {centres.shape[0]} for stride {self.strides[level]}: not a supported SCRFD export"
                    )

    @property
    def dynamic(self) -> bool:
        """True when the export accepts any input size (so a small region can run at a small size)."""
        return self.fixed_size is None

    def describe_input(self) -> str:
        return "dynamic" if self.fixed_size is None else f"{self.fixed_size[1]}x{self.fixed_size[0]}"

    def _anchor_centres(self, height: int, width: int) -> list[np.ndarray]:
        """Anchor points (x, y) in input pixels per stride, each repeated for the anchors of its location."""
        key = (height, width)
        cached = self._anchors.get(key)
        if cached is None:
            cached = []
            for stride in self.strides:
                ys, xs = np.mgrid[: height // stride, : width // stride]
                grid = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32) * stride
                cached.append(np.repeat(grid, self.num_anchors, axis=0))
            if len(self._anchors) > 32:  # a bounded cache: ROI sizes vary with the face size
                self._anchors.clear()
            self._anchors[key] = cached
        return cached

    # ---------------------------------------------------------------------------------------------- running
    def input_size(self, det_size: int) -> tuple[int, int]:
        """(height, width) of the network input for a square detection size (the fixed size if the export has one)."""
        if self.fixed_size is not None:
            return self.fixed_size
        if det_size <= 0 or det_size % 32:
            raise ValueError(f"det_size {det_size} is not a positive multiple of 32; use 640, 480, 320 ...")
        return det_size, det_size

    def detect(self, image_bgr: np.ndarray, det_size: int = DEFAULT_DET_SIZE, max_faces: int = 0) -> list[Face]:
        """Faces in a BGR image, best score first; ``max_faces`` > 0 keeps that many of the largest ones.

        A fixed-size export always runs at its own size, whatever ``det_size`` says.
        """
        found = self.detect_arrays(image_bgr, det_size, scratch=Scratch())
        order = list(range(len(found)))
        if max_faces > 0 and len(order) > max_faces:
            wh = found.boxes[:, 2:] - found.boxes[:, :2]
            biggest = np.argsort(-(wh[:, 0] * wh[:, 1]), kind="stable")[:max_faces]
            order = sorted(int(i) for i in biggest)  # indices are in score order already
        return [found.face(i) for i in order]

    def detect_arrays(
        self,
        image_bgr: np.ndarray,
        det_size: int = DEFAULT_DET_SIZE,
        *,
        region: tuple[int, int, int, int] | None = None,
        scratch: Scratch,
    ) -> Detections:
        """Detect in ``image_bgr[y0:y1, x0:x1]`` (the whole image by default); results are in image pixels."""
        if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 BGR image, got {image_bgr.shape} {image_bgr.dtype}")
        x0, y0, x1, y1 = region if region is not None else (0, 0, image_bgr.shape[1], image_bgr.shape[0])
        src = image_bgr[y0:y1, x0:x1]
        h, w = src.shape[:2]
        if h < 2 or w < 2:
            return _EMPTY
        det_h, det_w = self.input_size(det_size)
        # Letterbox: fit inside det_w x det_h, top-left aligned, aspect ratio kept.
        nw, nh = fit_inside(w, h, det_w, det_h).size_floor()
        if self.fixed_size is None:  # trim the padding the network would only spend time on
            det_h, det_w = min(det_h, -(-nh // 32) * 32), min(det_w, -(-nw // 32) * 32)
        buf = scratch.input(det_h, det_w)
        resized = buf.target(nh, nw)
        cv2.resize(src, (nw, nh), dst=resized, interpolation=cv2.INTER_LINEAR)
        cv2.split(resized, buf.planes)
        blob = buf.blob
        for channel in range(3):  # BGR planes -> RGB tensor channels, (v - 127.5) / 128 in one pass each
            plane = buf.planes[2 - channel]
            cv2.addWeighted(plane, _SCALE, plane, 0.0, _PAD_VALUE, dst=blob[0, channel, :nh, :nw], dtype=cv2.CV_32F)
        outs = self.session.run(self.output_names, {self.input_name: blob})
        found = self._decode(outs, det_h, det_w)
        if found is None:
            return _EMPTY
        boxes, scores, kps = found
        # Back to image pixels: one scale per axis (the resize), then the region's offset.
        sx, sy = w / nw, h / nh
        boxes *= np.array([sx, sy, sx, sy], np.float32)
        boxes += np.array([x0, y0, x0, y0], np.float32)
        kps *= np.array([sx, sy], np.float32)
        kps += np.array([x0, y0], np.float32)
        keep = nms(boxes, scores, self.nms_threshold)
        return Detections(boxes[keep], scores[keep], kps[keep])

    def _decode(self, outs: list[np.ndarray], det_h: int, det_w: int) -> tuple[np.ndarray, ...] | None:
        """Decode the anchors above the score threshold into boxes and keypoints in input pixels."""
        levels = len(self.strides)
        centres = self._anchor_centres(det_h, det_w)
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for level, stride in enumerate(self.strides):
            scores = outs[level].reshape(-1)
            idx = np.flatnonzero(scores >= self.score_threshold)
            if idx.size == 0:
                continue
            c = centres[level][idx]
            dist = outs[level + levels].reshape(-1, 4)[idx] * stride
            boxes = np.concatenate([c - dist[:, :2], c + dist[:, 2:]], axis=1)
            kps = outs[level + 2 * levels].reshape(-1, 5, 2)[idx] * stride + c[:, None, :]
            parts.append((scores[idx], boxes, kps))
        if not parts:
            return None
        scores = np.concatenate([p[0] for p in parts]).astype(np.float32, copy=False)
        boxes = np.concatenate([p[1] for p in parts]).astype(np.float32, copy=False)
        kps = np.concatenate([p[2] for p in parts]).astype(np.float32, copy=False)
        if scores.size > MAX_CANDIDATES:
            top = np.argpartition(-scores, MAX_CANDIDATES)[:MAX_CANDIDATES]
            scores, boxes, kps = scores[top], boxes[top], kps[top]
        return boxes, scores, kps


# ---------------------------------------------------------------------------------------------------- stage
