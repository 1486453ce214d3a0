"""What the avatar stage makes of the Animation options, and its own options for a lost face.

The Animation options are :class:`~mirage_desktop.animation_options.AnimationOptions` (one vocabulary for the
settings, the window, ``/control/animation`` and this stage); :func:`drive_options` turns them into the motion
maths' own form, :func:`motion_smoother` into the motion filter. :class:`LostFace` is what the stage shows when the
camera loses the face (``/control/animation`` sets it too; the settings' ``fallback`` is its start value).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from mirage_desktop.animation_options import DEFAULTS, SPECS, AnimationOptionError, AnimationOptions
from mirage_desktop.liveportrait.options import DriveOptions, is_animation_region, is_driving_option
from mirage_desktop.liveportrait.smoothing import MIN_CUTOFF_HZ, MotionSmoother, OneEuroParams

#: The values of ``fallback``: after the grace period without a face, show the avatar at rest or the camera.
FALLBACKS = ("avatar", "passthrough")
#: the options whose change redefines the neutral pose (the stage then takes a new one)
RECALIBRATING_OPTIONS = frozenset(name for name, spec in SPECS.items() if spec.recalibrates)


def drive_options(options: AnimationOptions) -> DriveOptions:
    """The motion maths' options for these Animation options: "eyes"/"lips" become the retargeting switches and
    targets, ``retargeting_only`` the retargeting base (onto the source: only eyes and lips move)."""
    driving, region = options.driving_option, options.animation_region
    if not is_driving_option(driving) or not is_animation_region(region):  # AnimationOptions checked the same words
        raise AnimationOptionError(f"The motion maths take no driving option {driving!r} or region {region!r}.")
    return DriveOptions(
        relative_motion=options.relative_motion,
        driving_option=driving,
        animation_region=region,
        stitching=options.stitching,
        driving_multiplier=options.driving_multiplier,
        normalize_lip=options.normalize_lip,
        eye_retargeting=options.eyes != "off",
        lip_retargeting=options.lips != "off",
        eye_target=options.eye_target if options.eyes == "target" else None,
        lip_target=options.lip_target if options.lips == "target" else None,
        retargeting_base="source" if options.retargeting_only else "driven",
    )


def motion_smoother(options: AnimationOptions) -> MotionSmoother | None:
    """The One-Euro filter on the motion, None at smoothing 0: its still-face cutoff is 4 Hz x default / smoothing
    (the default smoothing, 0.3, is FasterLivePortrait's 4 Hz; 1 is 1.2 Hz, heavier)."""
    if options.smoothing <= 0:
        return None
    return MotionSmoother(OneEuroParams(min_cutoff=MIN_CUTOFF_HZ * DEFAULTS["smoothing"] / options.smoothing))


def needs_driver_ratios(options: AnimationOptions) -> bool:
    """Whether the driver's eye and lip openings are measured each frame (eyes or lips follow the driver)."""
    return "driver" in (options.eyes, options.lips)


@dataclass(frozen=True)
class LostFace:
    """When the face is lost: hold the last animated frame ``grace_s`` seconds, then show ``fallback``: "avatar"
    (at rest) or "passthrough" (the camera)."""

    grace_s: float = 1.0
    fallback: str = "avatar"

    def __post_init__(self) -> None:
        if isinstance(self.grace_s, bool) or not isinstance(self.grace_s, (int, float)) or not (
                math.isfinite(self.grace_s) and self.grace_s >= 0):
            raise AnimationOptionError(f"Option 'grace_s' must be a number of seconds >= 0, got {self.grace_s!r}.")
        if self.fallback not in FALLBACKS:
            raise AnimationOptionError(f"Option 'fallback' must be one of {', '.join(map(repr, FALLBACKS))}, got "
                                       f"{self.fallback!r}.")


LOST_FACE_OPTIONS = tuple(f.name for f in dataclasses.fields(LostFace))
