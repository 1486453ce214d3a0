"""The official LivePortrait options and the motion maths each one selects (``LivePortraitPipeline.execute``).

:class:`DriveOptions` holds every option; :func:`driven_motion` is the option-dependent part of the keypoint maths
(relative or absolute motion, animation region, single-image driving); :class:`FaceRatios` holds a face's eye and lip
openings (measured by :mod:`.ratios`) that the retargeting MLPs and lip normalisation take. The runner
(:meth:`LivePortrait.drive`) chains them with the expression-friendly step, stitching, retargeting, lip normalisation
and the driving multiplier, in the official order. Keypoints are row vectors (B, 21, 3), as in :mod:`.motion`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Literal, NamedTuple, TypeGuard, get_args

import numpy as np
import torch

from mirage_desktop.liveportrait import ratios
from mirage_desktop.liveportrait.motion import NUM_KP, KpInfo

DrivingOption = Literal["expression-friendly", "pose-friendly"]
AnimationRegion = Literal["all", "exp", "pose", "lip", "eyes"]
DrivingInput = Literal["video", "image"]
RetargetingBase = Literal["official", "source", "driven"]

DRIVING_OPTIONS: tuple[str, ...] = get_args(DrivingOption)
ANIMATION_REGIONS: tuple[str, ...] = get_args(AnimationRegion)
DRIVING_INPUTS: tuple[str, ...] = get_args(DrivingInput)
RETARGETING_BASES: tuple[str, ...] = get_args(RetargetingBase)

#: expression rows the official "lip" and "eyes" regions take from the driver
LIP_ROWS = (6, 12, 14, 17, 19, 20)
EYE_ROWS = (11, 13, 15, 16, 18)
#: absolute motion copies only these expression entries from the driver (row -> coordinates); rows 0, 7, 10 stay
ABSOLUTE_EXP_ENTRIES: dict[int, tuple[int, ...]] = {
    **{row: (0, 1, 2) for row in (1, 2, 6, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20)},
    3: (1,),
    4: (1,),
    5: (2,),
    8: (2,),
    9: (1, 2),
}
#: lip normalisation applies only when the source's lip ratio is at least this (the official default)
LIP_NORMALIZE_THRESHOLD = 0.03


@dataclass(frozen=True)
class DriveOptions:
    """How driving motion moves the source. The defaults are the official CLI's (``inference.py``).

    - ``relative_motion``: the source moves by the driver's change since the reference frame; False copies the
      driver's absolute pose and (a subset of) its expression.
    - ``driving_option``: "expression-friendly" rescales the motion by the source/driver face-size ratio (relative
      motion, video driving only, as officially); "pose-friendly" does not.
    - ``animation_region``: what the driver moves: "all", "exp" (expression only), "pose" (rotation and shift),
      "lip" or "eyes" (those expression rows only).
    - ``stitching``: the stitching MLP that keeps the shoulders in place.
    - ``driving_multiplier``: scales the final motion (> 1 exaggerates, < 1 damps).
    - ``normalize_lip``: close the source's open mouth before animating (relative motion only; FasterLivePortrait's
      default), when its lip ratio is at least ``lip_normalize_threshold``.
    - ``eye_retargeting`` / ``lip_retargeting``: eye and lip openness from the retargeting MLPs; the driving ratio is
      the driver's measured one each frame, or ``eye_target`` / ``lip_target`` when set (a user's slider).
    - ``retargeting_base``: what the retargeting deltas are added to. "official": the source keypoints in relative
      mode (the official retargeting-only mode: only eyes and lips move) and the driven keypoints in absolute mode;
      "source": the source keypoints always (only eyes and lips move); "driven": the driven keypoints always (the head
      keeps moving, as the official absolute branch does).
    - ``driving_input``: "video" (a stream of frames, the live case) or "image" (a single driving photo: the official
      image branch, expressions relative to the official ``lip_array``, no expression-friendly step).
    """

    relative_motion: bool = True
    driving_option: DrivingOption = "expression-friendly"
    animation_region: AnimationRegion = "all"
    stitching: bool = True
    driving_multiplier: float = 1.0
    normalize_lip: bool = False
    lip_normalize_threshold: float = LIP_NORMALIZE_THRESHOLD
    eye_retargeting: bool = False
    lip_retargeting: bool = False
    eye_target: float | None = None
    lip_target: float | None = None
    retargeting_base: RetargetingBase = "official"
    driving_input: DrivingInput = "video"

    def __post_init__(self) -> None:
        _check_choice("driving option", self.driving_option, DRIVING_OPTIONS)
        _check_choice("animation region", self.animation_region, ANIMATION_REGIONS)
        _check_choice("retargeting base", self.retargeting_base, RETARGETING_BASES)
        _check_choice("driving input", self.driving_input, DRIVING_INPUTS)
        if not math.isfinite(self.driving_multiplier):
            raise ValueError(f"driving multiplier {self.driving_multiplier} is not a finite number; use e.g. 1.0")
        for name in ("eye_target", "lip_target"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} {value} must be a ratio >= 0 (0.3: open eyes, 0.0: closed mouth) or None")

    @property
    def retargeting(self) -> bool:
        return self.eye_retargeting or self.lip_retargeting

    @property
    def expression_friendly(self) -> bool:
        """Whether the expression-friendly rescaling runs: officially relative motion with video driving only."""
        return self.relative_motion and self.driving_option == "expression-friendly" and self.driving_input == "video"

    @property
    def lip_normalization(self) -> bool:
        """Whether lip normalisation can apply: officially it needs relative motion."""
        return self.normalize_lip and self.relative_motion

    def retarget_onto_source(self) -> bool:
        """True when the retargeting deltas go on x_s (the driving motion is discarded), False for the driven x_d."""
        if self.retargeting_base == "official":
            return self.relative_motion
        return self.retargeting_base == "source"


def is_driving_option(value: str) -> TypeGuard[DrivingOption]:
    """Whether a settings string is a :data:`DrivingOption` (and may go into :class:`DriveOptions` as one)."""
    return value in DRIVING_OPTIONS


def is_animation_region(value: str) -> TypeGuard[AnimationRegion]:
    """Whether a settings string is an :data:`AnimationRegion`."""
    return value in ANIMATION_REGIONS


def _check_choice(what: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f'Invalid {what} "{value}": use one of {", ".join(allowed)}')


class Motion(NamedTuple):
    """The pipeline's motion of one frame before the keypoint post-processing."""

    rotation: torch.Tensor  # R_new (B, 3, 3)
    exp: torch.Tensor  # delta_new / exp_new (B, 21, 3)
    scale: torch.Tensor  # scale_new (B, 1)
    t: torch.Tensor  # t_new (B, 3), z = 0
    x_d: torch.Tensor  # x_d_motion = scale_new * (kp_s @ R_new + exp_new) + t_new (B, 21, 3)


@cache
def _entry_mask(entries: tuple[tuple[int, tuple[int, ...]], ...], device: torch.device) -> torch.Tensor:
    """(1, 21, 3) bool mask of the given (row, coordinates) entries, made once per device."""
    mask = torch.zeros(1, NUM_KP, 3, dtype=torch.bool)
    for row, coords in entries:
        mask[0, row, list(coords)] = True
    return mask.to(device)


def _rows(rows: tuple[int, ...]) -> tuple[tuple[int, tuple[int, ...]], ...]:
    return tuple((row, (0, 1, 2)) for row in rows)


LIP_ENTRIES = _rows(LIP_ROWS)
EYE_ENTRIES = _rows(EYE_ROWS)
ABSOLUTE_ENTRIES = tuple(sorted(ABSOLUTE_EXP_ENTRIES.items()))


def driven_motion(
    source: KpInfo,
    driving: KpInfo,
    reference: KpInfo,
    options: DriveOptions,
    image_reference_exp: torch.Tensor | None = None,
) -> Motion:
    """R_new, exp_new, scale_new, t_new and x_d_motion for the options' motion mode and animation region.

    ``reference`` is the first driving frame. With ``options.driving_input == "image"`` the driving image is its own
    reference, and ``image_reference_exp`` (the official ``lip_array``, (1, 21, 3) float32) replaces the reference
    expression for regions all/exp/lip; region eyes then uses the driver's expression as it is.
    """
    region = options.animation_region
    pose = region in ("all", "pose")
    s_exp = source.exp
    if options.relative_motion:
        rotation = source.rotation
        if pose:
            rotation = (driving.rotation @ reference.rotation.permute(0, 2, 1)) @ source.rotation
        if options.driving_input == "image":
            if image_reference_exp is None:
                raise ValueError("single-image driving needs image_reference_exp (the official lip_array, (1, 21, 3))")
            ref_exp = image_reference_exp if region != "eyes" else None
        else:
            ref_exp = reference.exp
        if region == "pose":
            exp = s_exp
        else:
            moved = s_exp + (driving.exp - ref_exp) if ref_exp is not None else s_exp + driving.exp
            if region in ("all", "exp"):
                exp = moved
            else:
                rows = LIP_ENTRIES if region == "lip" else EYE_ENTRIES
                exp = torch.where(_entry_mask(rows, s_exp.device), moved, s_exp)
        scale = source.scale * (driving.scale / reference.scale) if region == "all" else source.scale
        t = source.t + (driving.t - reference.t) if pose else source.t
    else:
        rotation = driving.rotation if pose else source.rotation
        if region == "pose":
            exp = s_exp
        else:
            entries = ABSOLUTE_ENTRIES if region in ("all", "exp") else LIP_ENTRIES if region == "lip" else EYE_ENTRIES
            exp = torch.where(_entry_mask(entries, s_exp.device), driving.exp, s_exp)
        scale = source.scale
        t = driving.t if pose else source.t
    t = torch.cat([t[:, :2], torch.zeros_like(t[:, 2:])], dim=1)
    x_d = scale[..., None] * (source.kp @ rotation + exp) + t[:, None, :]
    return Motion(rotation=rotation, exp=exp, scale=scale, t=t, x_d=x_d)


@dataclass(frozen=True)
class FaceRatios:
    """One face's measured openings: ``eyes`` (1, 2) [left, right] and ``lip`` (1, 1), float32."""

    eyes: np.ndarray
    lip: np.ndarray

    @classmethod
    def from_landmarks(cls, lmk203: np.ndarray) -> FaceRatios:
        """From one face's 203 LivePortrait landmarks (any pixel frame: the ratios do not depend on scale)."""
        return cls(eyes=ratios.eye_ratio(lmk203), lip=ratios.lip_ratio(lmk203))
