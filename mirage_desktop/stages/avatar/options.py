"""The avatar stage's user options and their one check, shared by the stage, the window and ``/control/animation``.

The option names follow :class:`AvatarOptions`; the window, a remote client and ``/control/animation`` forward a
plain dict of changes, so a renamed or new option needs no change anywhere but here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import fields
from typing import Any

from mirage_desktop.liveportrait.options import ANIMATION_REGIONS, DriveOptions
from mirage_desktop.liveportrait.smoothing import MIN_CUTOFF_HZ, MotionSmoother, OneEuroParams

#: The values of ``fallback``: after the grace period without a face, show the avatar at rest or the camera.
FALLBACKS = ("avatar", "passthrough")
#: what the eyes and the lips can do: follow the driver's measured openness, hold a target value, or neither
EYE_LIP_MODES = ("off", "driver", "target")
#: the smoothing value at which the One-Euro filter has FasterLivePortrait's parameters (4 Hz)
DEFAULT_SMOOTHING = 0.3


class AnimationOptionError(ValueError):
    """An unknown animation option or a value of the wrong kind; the message names the known ones."""


@dataclass(frozen=True)
class AvatarOptions:
    """User options of the animation (every official option; defaults are the official CLI's plus smoothing).

    ``eyes`` / ``lips``: "off" (they move with the expression, as officially by default), "driver" (retargeting
    follows the driver's measured openness each frame; the head keeps moving) or "target" (held at
    ``eye_target`` / ``lip_target``). ``retargeting_only``: the official relative retargeting mode, where only the
    eyes and lips move. ``smoothing``: 0 = off; otherwise the One-Euro filter on the motion, its still-face cutoff
    ``4 Hz x 0.3 / smoothing`` (0.3: FasterLivePortrait's 4 Hz; 1: 1.2 Hz, heavier).
    """

    relative_pose: bool = True  # False: absolute pose and (the official subset of) expression of the driver
    expression_friendly: bool = True  # False: pose-friendly
    animation_region: str = "all"  # all, exp, pose, lip, eyes
    driving_multiplier: float = 1.0
    stitching: bool = True
    eyes: str = "off"
    eye_target: float = 0.3
    lips: str = "off"
    lip_target: float = 0.0
    retargeting_only: bool = False
    normalize_lip: bool = False
    smoothing: float = DEFAULT_SMOOTHING
    grace_s: float = 1.0  # hold the last animated frame this long when the face is lost
    fallback: str = "avatar"  # after the grace period: "avatar" (at rest) or "passthrough" (the camera)

    def __post_init__(self) -> None:
        for name in ("eyes", "lips"):
            if getattr(self, name) not in EYE_LIP_MODES:
                raise ValueError(f'{name} "{getattr(self, name)}": use one of {", ".join(EYE_LIP_MODES)}')
        if self.animation_region not in ANIMATION_REGIONS:
            raise ValueError(f'animation region "{self.animation_region}": use one of {", ".join(ANIMATION_REGIONS)}')
        if not 0 <= self.smoothing <= 1:
            raise ValueError(f"smoothing {self.smoothing} must be between 0 (off) and 1 (heaviest)")
        self.drive_options()  # the motion options' own checks

    def drive_options(self) -> DriveOptions:
        """The motion maths' options for these user options."""
        return DriveOptions(
            relative_motion=self.relative_pose,
            driving_option="expression-friendly" if self.expression_friendly else "pose-friendly",
            animation_region=self.animation_region,  # type: ignore[arg-type]
            stitching=self.stitching,
            driving_multiplier=self.driving_multiplier,
            normalize_lip=self.normalize_lip,
            eye_retargeting=self.eyes != "off",
            lip_retargeting=self.lips != "off",
            eye_target=self.eye_target if self.eyes == "target" else None,
            lip_target=self.lip_target if self.lips == "target" else None,
            retargeting_base="source" if self.retargeting_only else "driven",
        )

    @property
    def needs_driver_ratios(self) -> bool:
        return "driver" in (self.eyes, self.lips)

    def smoother(self) -> MotionSmoother | None:
        if self.smoothing <= 0:
            return None
        return MotionSmoother(OneEuroParams(min_cutoff=MIN_CUTOFF_HZ * DEFAULT_SMOOTHING / self.smoothing))


#: option names that change what the reference (neutral) frame means
RECALIBRATING_OPTIONS = {"relative_pose", "expression_friendly", "animation_region"}
OPTION_NAMES = tuple(f.name for f in fields(AvatarOptions))


def check_option_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """``changes`` as a dict when every name is an option and the options they make are valid (checked by
    :class:`AvatarOptions` itself); :class:`AnimationOptionError`, naming the known options, otherwise."""
    unknown = sorted(set(changes) - set(OPTION_NAMES))
    if unknown:
        raise AnimationOptionError(f"Unknown animation option {', '.join(map(repr, unknown))}; known: "
                                   f"{', '.join(OPTION_NAMES)}.")
    for name, value in changes.items():
        default = getattr(_DEFAULTS, name)
        kind_ok = type(value) is type(default) if isinstance(default, (bool, str)) else _is_number(value)
        if not kind_ok:
            raise AnimationOptionError(f"Animation option {name!r} must be like {default!r}, got {value!r}.")
    if "fallback" in changes and changes["fallback"] not in FALLBACKS:
        raise AnimationOptionError(f"Animation option 'fallback' must be one of {', '.join(map(repr, FALLBACKS))}.")
    try:
        dataclasses.replace(_DEFAULTS, **changes)
    except ValueError as exc:
        raise AnimationOptionError(str(exc)) from None
    return dict(changes)


_DEFAULTS = AvatarOptions()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
