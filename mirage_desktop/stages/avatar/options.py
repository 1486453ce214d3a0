"""The avatar stage's user options and their one check, shared by the stage, the window and ``/control/animation``.

Torch-free on purpose: the server's control endpoint and a remote client's window check options without loading
the models. The option names follow :class:`AvatarOptions`; a client forwards a plain dict of changes, so a renamed
or new option needs no change anywhere but here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The values of ``fallback``: after the grace period without a face, show the avatar at rest or the camera.
FALLBACKS = ("avatar", "passthrough")


class AnimationOptionError(ValueError):
    """An unknown animation option or a value of the wrong kind; the message names the known ones."""


@dataclass
class AvatarOptions:
    """User options of the animation; the defaults give the steadiest picture (the official CLI's choices plus
    light keypoint smoothing)."""

    relative_pose: bool = True  # False: absolute head pose of the driver
    expression_friendly: bool = True  # False: pose-friendly
    eye_ratio: float | None = None  # eye openness to impose (retargeting), None to follow the driver
    lip_ratio: float | None = None  # mouth openness to impose, None to follow the driver
    driving_multiplier: float = 1.0
    smoothing: float = 0.3  # 0 = none, towards 1 = heavier smoothing of the driving keypoints
    grace_s: float = 1.0  # hold the last animated frame this long when the face is lost
    fallback: str = "avatar"  # after the grace period: "avatar" (at rest) or "passthrough" (the camera)


def check_option_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """``changes`` as a dict when every name is an option and every value has the option's kind (a number where
    the default is a number, None allowed where the default is None); :class:`AnimationOptionError` otherwise."""
    defaults = dataclasses.asdict(AvatarOptions())
    unknown = sorted(set(changes) - set(defaults))
    if unknown:
        raise AnimationOptionError(f"Unknown animation option {', '.join(map(repr, unknown))}; known: "
                                   f"{', '.join(defaults)}.")
    for name, value in changes.items():
        default = defaults[name]
        if default is None:  # optional numbers (the retargeting ratios)
            ok = value is None or _is_number(value)
        elif isinstance(default, bool) or isinstance(default, str):
            ok = type(value) is type(default)
        else:
            ok = _is_number(value)
        if not ok:
            raise AnimationOptionError(f"Animation option {name!r} must be like {default!r}"
                                       f"{' or a number' if default is None else ''}, got {value!r}.")
    if "fallback" in changes and changes["fallback"] not in FALLBACKS:
        raise AnimationOptionError(f"Animation option 'fallback' must be one of {', '.join(map(repr, FALLBACKS))}.")
    return dict(changes)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
