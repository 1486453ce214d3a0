"""LivePortrait's motion maths: pose bins to degrees, rotation, keypoint transform, stitching, retargeting MLP calls.

Every function works on batched device tensors and keeps the official operation order, so float32 results match the
official code to rounding. Keypoints are row vectors: (B, 21, 3), multiplied on the right by rotations. The
option-dependent motion (relative/absolute, regions) is in :mod:`.options`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from mirage_desktop.liveportrait.motion_extractor import NUM_BINS, RawMotion

#: A retargeting or stitching MLP as the chain calls it: an ``nn.Module`` or a backend's runner of one.
Mlp = Callable[[torch.Tensor], torch.Tensor]

logger = logging.getLogger(__name__)

NUM_KP = 21
DEGREES_PER_BIN = 3.0
DEGREES_OFFSET = 97.5


@dataclass(frozen=True)
class KpInfo:
    """One image's motion: angles in degrees (B, 1), t (B, 3), exp and kp (B, 21, 3), scale (B, 1), rotation (B, 3, 3)."""

    pitch: torch.Tensor
    yaw: torch.Tensor
    roll: torch.Tensor
    t: torch.Tensor
    exp: torch.Tensor
    scale: torch.Tensor
    kp: torch.Tensor
    rotation: torch.Tensor


def bins_to_degrees(logits: torch.Tensor) -> torch.Tensor:
    """(B, 66) pose-bin logits -> (B,) degrees = 3 * E[bin] - 97.5."""
    idx = torch.arange(NUM_BINS, dtype=logits.dtype, device=logits.device)
    return torch.sum(torch.softmax(logits, dim=1) * idx, dim=1) * DEGREES_PER_BIN - DEGREES_OFFSET


def rotation_matrix(pitch: torch.Tensor, yaw: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """(B, 1) or (B,) angles in degrees -> R = (Rz Ry Rx)^T (B, 3, 3), for row-vector keypoints (x @ R)."""
    x = (pitch / 180 * math.pi).reshape(-1, 1)
    y = (yaw / 180 * math.pi).reshape(-1, 1)
    z = (roll / 180 * math.pi).reshape(-1, 1)
    one = torch.ones_like(x)
    zero = torch.zeros_like(x)
    b = x.shape[0]
    rot_x = torch.cat([one, zero, zero, zero, x.cos(), -x.sin(), zero, x.sin(), x.cos()], dim=1).view(b, 3, 3)
    rot_y = torch.cat([y.cos(), zero, y.sin(), zero, one, zero, -y.sin(), zero, y.cos()], dim=1).view(b, 3, 3)
    rot_z = torch.cat([z.cos(), -z.sin(), zero, z.sin(), z.cos(), zero, zero, zero, one], dim=1).view(b, 3, 3)
    return (rot_z @ rot_y @ rot_x).permute(0, 2, 1)


def kp_info_from_raw(raw: RawMotion) -> KpInfo:
    """The official ``get_kp_info`` refinement: bins to degrees, kp/exp to (B, 21, 3); plus the rotation."""
    b = raw.kp.shape[0]
    pitch = bins_to_degrees(raw.pitch)[:, None]
    yaw = bins_to_degrees(raw.yaw)[:, None]
    roll = bins_to_degrees(raw.roll)[:, None]
    return KpInfo(
        pitch=pitch,
        yaw=yaw,
        roll=roll,
        t=raw.t,
        exp=raw.exp.reshape(b, -1, 3),
        scale=raw.scale,
        kp=raw.kp.reshape(b, -1, 3),
        rotation=rotation_matrix(pitch, yaw, roll),
    )


def transform_keypoint(
    kp: torch.Tensor, exp: torch.Tensor, t: torch.Tensor, scale: torch.Tensor, rotation: torch.Tensor
) -> torch.Tensor:
    """x = scale * (kp @ R + exp), then x[..., :2] += t[:2]; t_z is not used."""
    x = (kp @ rotation + exp) * scale[..., None]
    return torch.cat([x[..., :2] + t[:, None, :2], x[..., 2:]], dim=-1)


def keypoints(info: KpInfo) -> torch.Tensor:
    """transform_keypoint of one image's motion: x_s for the source, x_d for a driving frame."""
    return transform_keypoint(info.kp, info.exp, info.t, info.scale, info.rotation)


def hull_volume(points: torch.Tensor) -> float:
    """Volume of the 3-D convex hull of (21, 3) points (qhull on float32, as the official code)."""
    from scipy.spatial import ConvexHull  # imported here: only needed once per reference frame

    pts = points.detach().to("cpu", torch.float32).numpy().reshape(-1, 3)
    return float(ConvexHull(pts).volume)


def motion_multiplier(x_s: torch.Tensor, x_d0_new: torch.Tensor) -> float:
    """Expression-friendly scale m = sqrt(V(x_s)) / sqrt(V(x_d0_new)) (float64), computed once per reference frame."""
    return float(np.sqrt(hull_volume(x_s)) / np.sqrt(hull_volume(x_d0_new)))


def expression_friendly(
    x_d_new: torch.Tensor, x_d0_new: torch.Tensor, multiplier: torch.Tensor, x_s: torch.Tensor
) -> torch.Tensor:
    """x' = (x_d_new - x_d0_new) * m + x_s, with m a float32 tensor (the official float64 m rounded to float32)."""
    return (x_d_new - x_d0_new) * multiplier + x_s


def stitch_input(x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
    """[flatten(x_s), flatten(x_d)] (B, 126), keypoint index major, xyz minor."""
    b = x_s.shape[0]
    return torch.cat([x_s.reshape(b, -1), x_d.reshape(b, -1)], dim=1)


def apply_stitching_delta(x_d: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """x_d + delta[:63] per keypoint, then delta[63:65] added to every keypoint's (x, y)."""
    b, n, _ = x_d.shape
    x = x_d + delta[:, : 3 * n].reshape(b, n, 3)
    txy = delta[:, 3 * n : 3 * n + 2].reshape(b, 1, 2)
    return torch.cat([x[..., :2] + txy, x[..., 2:]], dim=-1)


def stitch(mlp: Mlp, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
    """The stitching step: removes the seams a moved head would leave at the crop border."""
    return apply_stitching_delta(x_d, mlp(stitch_input(x_s, x_d)))


def apply_driving_multiplier(x_s: torch.Tensor, x_d: torch.Tensor, multiplier: float) -> torch.Tensor:
    """x_s + (x_d - x_s) * multiplier: exaggerates (> 1) or damps (< 1) the motion."""
    return x_s + (x_d - x_s) * multiplier


def retarget_lip(mlp: Mlp, kp: torch.Tensor, lip_ratio: torch.Tensor) -> torch.Tensor:
    """[flatten(kp), lip ratios (B, 2)] -> keypoint delta (B, 21, 3) that opens or closes the mouth."""
    b = kp.shape[0]
    return mlp(torch.cat([kp.reshape(b, -1), lip_ratio.reshape(b, -1)], dim=1)).reshape(b, -1, 3)


def retarget_eye(mlp: Mlp, kp: torch.Tensor, eye_ratio: torch.Tensor) -> torch.Tensor:
    """[flatten(kp), eye ratios (B, 3)] -> keypoint delta (B, 21, 3) that opens or closes the eyes."""
    b = kp.shape[0]
    return mlp(torch.cat([kp.reshape(b, -1), eye_ratio.reshape(b, -1)], dim=1)).reshape(b, -1, 3)


def image_to_uint8(image: torch.Tensor) -> torch.Tensor:
    """The official parse_output on the device: NCHW -> NHWC, clip [0, 1], x255, clip, truncate to uint8."""
    x = image.permute(0, 2, 3, 1).clamp(0, 1)
    return (x * 255).clamp(0, 255).to(torch.uint8)


def parse_output(image: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) float in [0, 1] -> (B, H, W, 3) uint8; the cast truncates toward zero, as the official code."""
    return image_to_uint8(image.float()).cpu().numpy()
