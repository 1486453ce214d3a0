"""LivePortrait's crop geometry: the face rectangle from landmarks, the crop matrices and the warps.

This is the official cropper's arithmetic (KwaiVGI/LivePortrait ``src/utils/crop.py``), re-derived from the geometry
kit's description and reproduced operation for operation in float32 where the official code runs in float32: the
kit's golden arrays come out bit for bit, and the networks see exactly the crops they were trained on.

- :func:`parse_rect`: two anchors (eye centre, mouth centre) give the face's axes; the box of all landmarks in that
  rotated frame, made square and scaled, gives the side; the centre is shifted along the face's own y axis.
- :func:`crop_image`: the similarity from the rectangle (rotated or not) and the bilinear, black-bordered warp.
- :func:`driving_box` / :func:`average_boxes` / :func:`crop_by_box`: the offline driving-video path (one
  axis-aligned box for the whole video).
- :func:`limit_size`, :func:`half_size`: the source image's 1280 cap and the 512 -> 256 resize.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

F32 = np.float32


@dataclass(frozen=True)
class CropSettings:
    """What ``crop_image`` reads: output side, box scale, vertical offset (a fraction of the side), rotation."""

    dsize: int
    scale: float
    vy_ratio: float
    rotate: bool = True


#: The source portrait (CropConfig): 512 px, scale 2.3, centre raised by 0.125 of the side, turned upright.
SOURCE = CropSettings(dsize=512, scale=2.3, vy_ratio=-0.125)
#: The 203-point landmark model's input crop (human_landmark_runner): 224 px, scale 1.5, raised by 0.1.
LANDMARK_RUNNER = CropSettings(dsize=224, scale=1.5, vy_ratio=-0.1)
#: The offline driving-video box (CropConfig scale_crop_driving_video, vy_ratio_crop_driving_video); never rotated.
DRIVING_VIDEO_SCALE = 2.2
DRIVING_VIDEO_VY = -0.1
DRIVING_VIDEO_DSIZE = 512
#: The network input side.
NETWORK_SIZE = 256
#: The pipeline's source limit (InferenceConfig source_max_dim, source_division).
SOURCE_MAX_DIM = 1280
SOURCE_DIVISION = 2

# Anchor indices (eye rings averaged, mouth corners): the conventions the official code picks by point count.
_ANCHORS = {
    106: ((33, 35, 40, 39), (87, 89, 94, 93), (52, 61)),
    203: ((0, 6, 12, 18), (24, 30, 36, 42), (48, 66)),
}


@dataclass(frozen=True)
class Rect:
    """A face rectangle: anchors (2, 2), centre (2,), side as a 2-vector of equal entries, roll angle in radians."""

    pt2: np.ndarray
    center: np.ndarray
    size: np.ndarray
    angle: float


@dataclass(frozen=True)
class Crop:
    """A cut-out: the image (or None when only the geometry was asked for), the landmarks in it, both matrices."""

    image: np.ndarray | None
    points: np.ndarray
    M_o2c: np.ndarray  # (3, 3) float32, image -> crop
    M_c2o: np.ndarray  # (3, 3) float32, crop -> image
    rect: Rect | None = None

    def pixels(self) -> np.ndarray:
        """The image of a crop made with one (:func:`crop_image`); a geometry-only crop has none to give."""
        if self.image is None:
            raise ValueError("this crop holds only the geometry (crop_geometry), not the image")
        return self.image


def anchor_points(pts: np.ndarray) -> np.ndarray:
    """(2, 2): the mean of the two eye centres and the mean of the two mouth corners (106 or 203 points)."""
    try:
        left, right, mouth = _ANCHORS[pts.shape[0]]
    except KeyError:
        raise ValueError(f"landmarks must be 106 (InsightFace) or 203 (LivePortrait) points, got {pts.shape}") from None
    left_eye = np.mean(pts[list(left)], axis=0)
    right_eye = np.mean(pts[list(right)], axis=0)
    return np.stack([(left_eye + right_eye) / 2, (pts[mouth[0]] + pts[mouth[1]]) / 2], axis=0)


def face_axes(pt2: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(ux, uy, angle): uy points from the eyes to the mouth, ux is uy turned a quarter; angle is ux's roll.

    The angle is a Python float from the float32 ux, as officially (errors up to ~1e-5 rad near 0)."""
    uy = pt2[1] - pt2[0]
    length = np.linalg.norm(uy)
    if length <= 1e-3:
        uy = np.array([0, 1], dtype=F32)
    else:
        uy /= length
    ux = np.array((uy[1], -uy[0]), dtype=F32)
    angle = math.acos(ux[0])
    if ux[1] < 0:
        angle = -angle
    return ux, uy, angle


def parse_rect(pts: np.ndarray, scale: float = 1.5, vx_ratio: float = 0.0, vy_ratio: float = 0.0) -> Rect:
    """The square face rectangle of ``pts`` (106 or 203 points, float32 image pixels)."""
    pts = np.asarray(pts, dtype=F32)
    pt2 = anchor_points(pts)
    ux, uy, angle = face_axes(pt2.copy())
    rot = np.array([ux, uy])
    center0 = np.mean(pts, axis=0)
    rpts = (pts - center0) @ rot.T
    lt = np.min(rpts, axis=0)
    rb = np.max(rpts, axis=0)
    center1 = (lt + rb) / 2
    size = rb - lt
    m = max(size[0], size[1])
    size[0] = m
    size[1] = m
    size *= scale
    center = center0 + ux * center1[0] + uy * center1[1]
    center = center + ux * (vx_ratio * size) + uy * (vy_ratio * size)
    return Rect(pt2=pt2, center=center, size=size, angle=angle)


def similarity(center: np.ndarray, side: float, angle: float, dsize: int, rotate: bool = True) -> np.ndarray:
    """(2, 3) float32 image -> crop: the rectangle's centre to the crop centre, ``side`` to ``dsize``, roll undone.

    The operands keep the official types (float32 side and centre, float64 trigonometry), so the products round
    the same way."""
    s = dsize / side
    tc = np.array([dsize / 2, dsize / 2], dtype=F32)
    cx, cy = center[0], center[1]
    if rotate:
        c, sn = math.cos(angle), math.sin(angle)
        m = [[s * c, s * sn, tc[0] - s * (c * cx + sn * cy)], [-s * sn, s * c, tc[1] - s * (-sn * cx + c * cy)]]
    else:
        m = [[s, 0, tc[0] - s * cx], [0, s, tc[1] - s * cy]]
    return np.array(m, dtype=F32)


def homogeneous(m23: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(M_o2c, M_c2o) as 3x3 float32: the last row appended, the inverse taken by numpy in float32."""
    m = np.vstack([m23, np.array([0, 0, 1], dtype=F32)])
    return m, np.linalg.inv(m)


def transform_points(pts: np.ndarray, m: np.ndarray) -> np.ndarray:
    """p' = M[:2, :2] p + M[:2, 2] for every row of ``pts``."""
    return pts @ m[:2, :2].T + m[:2, 2]


def warp(image: np.ndarray, m: np.ndarray, width: int, height: int | None = None) -> np.ndarray:
    """cv2.warpAffine, bilinear, constant-0 (black) border: what every official crop and paste-back uses."""
    return cv2.warpAffine(image, m[:2], (width, width if height is None else height), flags=cv2.INTER_LINEAR)


def crop_geometry(pts: np.ndarray, settings: CropSettings) -> Crop:
    """The matrices and the landmarks in the crop, without cutting an image."""
    rect = parse_rect(pts, scale=settings.scale, vy_ratio=settings.vy_ratio)  # vx is never forwarded officially
    m23 = similarity(rect.center, rect.size[0], rect.angle, settings.dsize, settings.rotate)
    m_o2c, m_c2o = homogeneous(m23)
    return Crop(image=None, points=transform_points(np.asarray(pts, F32), m23), M_o2c=m_o2c, M_c2o=m_c2o, rect=rect)


def crop_image(image: np.ndarray, pts: np.ndarray, settings: CropSettings) -> Crop:
    """``crop_geometry`` plus the warped ``dsize`` x ``dsize`` image (black where the crop leaves the image)."""
    geo = crop_geometry(pts, settings)
    img = warp(image, geo.M_o2c, settings.dsize)
    return Crop(image=img, points=geo.points, M_o2c=geo.M_o2c, M_c2o=geo.M_c2o, rect=geo.rect)


def half_size(image: np.ndarray, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    """The 512 crop at the networks' 256 (INTER_AREA for the source, INTER_LINEAR for driving frames)."""
    return cv2.resize(image, (NETWORK_SIZE, NETWORK_SIZE), interpolation=interpolation)


def limit_size(image: np.ndarray, max_dim: int = SOURCE_MAX_DIM, division: int = SOURCE_DIVISION) -> np.ndarray:
    """The pipeline's source limit: longer side cut to ``max_dim`` (bilinear), then even width and height."""
    h, w = image.shape[:2]
    if max_dim > 0 and max(h, w) > max_dim:
        if h > w:
            new_h, new_w = max_dim, int(w * (max_dim / h))
        else:
            new_w, new_h = max_dim, int(h * (max_dim / w))
        image = cv2.resize(image, (new_w, new_h))
    division = max(division, 1)
    new_h = image.shape[0] - image.shape[0] % division
    new_w = image.shape[1] - image.shape[1] % division
    if new_h == 0 or new_w == 0:
        return image
    return image[:new_h, :new_w]


# ------------------------------------------------------------------------------------------ driving video (offline)
@dataclass(frozen=True)
class DrivingBox:
    """One frame's box (parse_bbox_from_landmark): axis-aligned [left, top, right, bottom]; angle and rotated corners
    are computed as officially but not used by the crop."""

    center: np.ndarray
    size: np.ndarray
    angle: float
    bbox_rot: np.ndarray  # (4, 2)
    bbox: np.ndarray  # (4,) left, top, right, bottom


def driving_box(pts: np.ndarray, scale: float = DRIVING_VIDEO_SCALE, vy_ratio: float = DRIVING_VIDEO_VY) -> DrivingBox:
    rect = parse_rect(pts, scale=scale, vy_ratio=vy_ratio)  # the official x offset goes to an ignored keyword
    cx, cy = rect.center
    w, h = rect.size
    corners = np.array(
        [[cx - w / 2, cy - h / 2], [cx + w / 2, cy - h / 2], [cx + w / 2, cy + h / 2], [cx - w / 2, cy + h / 2]],
        dtype=F32,
    )
    a = rect.angle
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]], dtype=F32)
    bbox_rot = (corners.copy() - rect.center) @ rot.T + rect.center
    bbox = np.array([corners[0, 0], corners[0, 1], corners[2, 0], corners[2, 1]], dtype=F32)
    return DrivingBox(center=rect.center, size=rect.size, angle=a, bbox_rot=bbox_rot, bbox=bbox)


def average_boxes(boxes: Sequence[np.ndarray]) -> np.ndarray:
    """One box for the whole video: the mean of the per-frame boxes (float64 holding the float32 mean)."""
    return np.asarray(np.mean(np.array(boxes), axis=0).tolist(), dtype=np.float64)


def box_matrix(box: np.ndarray, dsize: int = DRIVING_VIDEO_DSIZE) -> tuple[np.ndarray, np.ndarray]:
    """(M_o2c, M_c2o) of crop_image_by_bbox without rotation: scale dsize / width about the box centre."""
    left, top, right, bottom = (float(v) for v in box)
    center = np.array([(left + right) / 2, (top + bottom) / 2], dtype=F32)
    tc = np.array([dsize / 2, dsize / 2], dtype=F32)
    s = dsize / (right - left)
    m23 = np.array([[s, 0, tc[0] - s * center[0]], [0, s, tc[1] - s * center[1]]], dtype=F32)
    return homogeneous(m23)


def crop_by_box(image: np.ndarray, box: np.ndarray, pts: np.ndarray | None = None,
                dsize: int = DRIVING_VIDEO_DSIZE) -> Crop:
    m_o2c, m_c2o = box_matrix(box, dsize)
    points = transform_points(pts, m_o2c[:2]) if pts is not None else np.empty((0, 2), F32)
    return Crop(image=warp(image, m_o2c, dsize), points=points, M_o2c=m_o2c, M_c2o=m_c2o)
