"""LivePortrait's cropper: landmarks from a face box, the source portrait's crop, the driving crops.

The official chains (KwaiVGI/LivePortrait ``src/utils/cropper.py``), with the face box given by our detector:

- **source**: InsightFace's 106 points from the box, the 512 crop (scale 2.3, raised by 0.125, turned upright) and
  its 256 area-resize; the 203 points (for the eye and lip ratios) from the landmark runner, in image pixels.
- **driving video** (offline): 106 points on the first frame, then 203 points tracked from each previous frame's
  203 points, one mean box for the whole video, a 512 crop per frame resized (bilinear) to 256.
- **tracking** (:func:`track`): the landmark runner's step on its own; the live path calls it every frame.

The live driving crop is :class:`~mirage_desktop.liveportrait.live_crop.LiveCropper`; this module's CLI prints its
crops for a landmark sequence::

    python -m mirage_desktop.liveportrait.cropper --live --landmarks SEQ.npy --json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mirage_desktop.liveportrait import crop as geo
from mirage_desktop.liveportrait.crop import Crop
from mirage_desktop.liveportrait.live_crop import LiveCropper
from mirage_desktop.models.registry import landmark_paths
from mirage_desktop.vision.landmarks import SIZE_203, Landmark106, Landmark203


@dataclass(frozen=True)
class Tracked:
    """One landmark-runner step: the 203 points in image pixels, the 224 crop it read and the raw outputs."""

    points: np.ndarray
    crop: Crop | None  # None when no previous landmarks were given (whole-image resize)
    crop_image: np.ndarray
    outputs: list[np.ndarray]


def track(model: Landmark203, image_rgb: np.ndarray, previous: np.ndarray | None, bgr: bool = False) -> Tracked:
    """203 points from the crop around ``previous`` (106 or 203 points) or, without them, the whole image squeezed
    to 224 (points scaled by max(H, W) / 224 on both axes, as officially: the aspect ratio is not restored).

    ``bgr``: the image is a BGR camera frame; only the 224 crop's channels are reversed (the same blob)."""
    if previous is not None:
        crop = geo.crop_image(image_rgb, previous, geo.LANDMARK_RUNNER)
        img, m_c2o = crop.image, crop.M_c2o
    else:
        crop = None
        img = cv2.resize(image_rgb, (SIZE_203, SIZE_203))
        s = max(image_rgb.shape[:2]) / SIZE_203
        m_c2o = np.array([[s, 0.0, 0.0], [0.0, s, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
    assert img is not None
    outputs = model.run(model.blob(img, bgr))
    return Tracked(geo.transform_points(model.points(outputs), m_c2o), crop, img, outputs)


@dataclass(frozen=True)
class SourceCrop:
    """The portrait as the networks see it and the maths to put the result back."""

    image_512: np.ndarray
    image_256: np.ndarray
    lmk106: np.ndarray  # image pixels
    lmk203: np.ndarray  # image pixels (the official "lmk_crop", despite the name): feeds the ratios
    pt_crop: np.ndarray  # the 106 points in the 512 crop
    M_o2c: np.ndarray
    M_c2o: np.ndarray


@dataclass(frozen=True)
class DrivingVideoCrop:
    lmk203: list[np.ndarray]  # per frame, frame pixels
    boxes: list[geo.DrivingBox]
    global_box: np.ndarray
    crops: list[Crop]  # 512 crops with the 203 points in them
    images_256: list[np.ndarray]


class Cropper:
    """The official source and driving-video chains over the two landmark models (face boxes come from SCRFD)."""

    def __init__(self, lmk106: Landmark106, lmk203: Landmark203) -> None:
        self.lmk106 = lmk106
        self.lmk203 = lmk203

    @classmethod
    def load(cls, models_dir: Path, device: str = "auto", threads: int = 0) -> Cropper:
        """Both models from a model directory (or an official ``pretrained_weights`` tree)."""
        paths = landmark_paths(models_dir)
        return cls(Landmark106(paths["2d106det.onnx"], device, threads), Landmark203(paths["landmark.onnx"], device, threads))

    def source(self, image_rgb: np.ndarray, box: np.ndarray, settings: geo.CropSettings = geo.SOURCE) -> SourceCrop:
        """Crop a portrait (already through :func:`~mirage_desktop.liveportrait.crop.limit_size`)."""
        lmk106 = self.lmk106.detect(image_rgb, box, bgr=False)
        crop = geo.crop_image(image_rgb, lmk106, settings)
        assert crop.image is not None
        lmk203 = track(self.lmk203, image_rgb, lmk106).points
        return SourceCrop(crop.image, geo.half_size(crop.image), lmk106, lmk203, crop.points, crop.M_o2c, crop.M_c2o)

    def driving_video(self, frames_rgb: Sequence[np.ndarray], box: np.ndarray) -> DrivingVideoCrop:
        """The offline driving path: 106 points on frame 0 from ``box``, then tracking, then one mean box."""
        lmks: list[np.ndarray] = []
        for i, frame in enumerate(frames_rgb):
            start = self.lmk106.detect(frame, box, bgr=False) if i == 0 else lmks[-1]
            lmks.append(track(self.lmk203, frame, start).points)
        boxes = [geo.driving_box(p) for p in lmks]
        global_box = geo.average_boxes([b.bbox for b in boxes])
        crops = [geo.crop_by_box(f, global_box, p) for f, p in zip(frames_rgb, lmks)]
        halves = [geo.half_size(c.image, cv2.INTER_LINEAR) for c in crops if c.image is not None]
        return DrivingVideoCrop(lmks, boxes, global_box, crops, halves)


# ------------------------------------------------------------------------------------------------------ CLI
def live_lines(sequence: np.ndarray, cropper: LiveCropper | None = None) -> list[dict]:
    """The live crop of every frame of a (frames, 106 or 203, 2) landmark sequence, as the CLI prints them."""
    cropper = cropper or LiveCropper()
    out = []
    for i, pts in enumerate(np.asarray(sequence, np.float32)):
        c = cropper.update(pts)
        out.append(
            {
                "frame": i,
                "center": [float(c.center[0]), float(c.center[1])],
                "side": float(c.side),
                "angle_deg": float(c.angle_deg),
                "M": np.asarray(c.M, np.float64).tolist(),
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mirage_desktop.liveportrait.cropper",
                                 description="Print the live driving crop for a landmark sequence.")
    ap.add_argument("--live", action="store_true", required=True, help="the live driving crop (the only mode)")
    ap.add_argument("--landmarks", type=Path, required=True, help="SEQ.npy: frames x 106 (or 203) x 2 float32 pixels")
    ap.add_argument("--json", action="store_true", help="one JSON object per frame (default: a short table)")
    ap.add_argument("--dsize", type=int, default=LiveCropper().dsize, help="crop side in pixels of M's output")
    args = ap.parse_args(argv)
    try:
        seq = np.load(args.landmarks)
    except (OSError, ValueError) as exc:
        print(f"error: cannot read {args.landmarks}: {exc}", file=sys.stderr)
        return 2
    if seq.ndim != 3 or seq.shape[1] not in (106, 203) or seq.shape[2] != 2:
        print(f"error: {args.landmarks} holds {seq.shape}; expected frames x 106 (or 203) x 2", file=sys.stderr)
        return 2
    for line in live_lines(seq, LiveCropper(dsize=args.dsize)):
        if args.json:
            print(json.dumps(line))
        else:
            cx, cy = line["center"]
            print(f"{line['frame']:5d}  centre ({cx:8.2f}, {cy:8.2f})  side {line['side']:8.2f}  angle {line['angle_deg']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
