"""The Animation options: one frozen dataclass whose field names are the only vocabulary for them.

The settings file (its ``animation`` object), ``/control/animation``, the window's Animation card and the avatar
stage all use :class:`AnimationOptions`; the stage turns it into the motion maths' own form
(:func:`mirage_desktop.stages.avatar.options.drive_options`). Each field carries its one default, its one rule (a
choice or a range) and its words (the window's label, the help text that is also its tooltip), so a new option is
one new field here. The names are the official LivePortrait options' where there is one (``relative_motion``,
``driving_option``, ``animation_region``, ``driving_multiplier``, ``stitching``, ``normalize_lip``); the names used
before are still read, through :data:`OLD_NAMES`.

This module sits below everything, config included, and imports nothing of the app.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


class AnimationOptionError(ValueError):
    """An unknown animation option or a value it does not take; the message names the allowed ones."""


def _always(options: AnimationOptions) -> bool:
    return True


@dataclass(frozen=True)
class OptionSpec:
    """One option's rule and words: the metadata of its field."""

    help: str  # the window's tooltip
    label: str = ""  # the row's label in the window ("" for a check box, whose own text says it)
    choices: Mapping[Any, str] | None = None  # the allowed values -> the window's word for each, in its order
    low_high: tuple[float, float] | None = None  # a number's range, both ends allowed
    text: str = ""  # a check box's text
    fmt: str = "{:.2f}"  # a number's text beside its slider
    menu: bool = False  # the choices as a drop-down list rather than a row of buttons
    applies: Callable[[AnimationOptions], bool] = _always  # when it has an effect (the window greys it out otherwise)
    recalibrates: bool = False  # a change redefines the neutral pose, so the stage takes a new one


def _option(default: Any, **spec: Any) -> Any:
    return field(default=default, metadata={"spec": OptionSpec(**spec)})


_FOLLOW = {"driver": "Follow me", "target": "Target", "off": "Off"}


@dataclass(frozen=True)
class AnimationOptions:
    """How the user's face moves the avatar: every official LivePortrait option (the official CLI's defaults)
    plus the eyes and lips modes and smoothing. Built only with valid values (:class:`AnimationOptionError`)."""

    relative_motion: bool = _option(
        True, label="Motion", choices={True: "Relative", False: "Absolute"}, recalibrates=True,
        help="Relative: the avatar moves by how much you move away from your neutral pose (Space sets it), so its own "
             "look stays. Absolute: the avatar copies your head angle and expression as they are.")
    driving_option: str = _option(
        "expression-friendly", label="Friendly to", choices={"expression-friendly": "Expression",
                                                             "pose-friendly": "Pose"},
        applies=lambda o: o.relative_motion, recalibrates=True,
        help="Expression-friendly: scales your motion to the avatar's face size, which keeps expressions natural "
             "(relative motion only). Pose-friendly: passes your head motion through unscaled.")
    animation_region: str = _option(
        "all", label="Moves", menu=True, recalibrates=True,
        choices={"all": "Everything", "exp": "Expression only", "pose": "Head pose only", "lip": "Lips only",
                 "eyes": "Eyes only"},
        help="Which part of your face moves the avatar: everything, only the expression, only the head's pose, only "
             "the lips or only the eyes.")
    driving_multiplier: float = _option(
        1.0, label="Strength", low_high=(0.0, 2.0), fmt="{:.2f}×",
        help="How strongly your motion moves the avatar: above 1x exaggerates it, below 1x damps it.")
    stitching: bool = _option(
        True, text="Keep the shoulders still",
        help="Keeps the avatar's shoulders and neck in place while the head moves. Off: the whole crop moves, which "
             "can show a seam.")
    eyes: str = _option(
        "off", label="Eyes", choices=_FOLLOW,
        help="Follow: the avatar's eyes open and close as much as yours, measured every frame (the head keeps "
             "moving). Target: its eyes stay at the openness of the slider. Off: the eyes move with the rest of the "
             "expression.")
    eye_target: float = _option(
        0.3, low_high=(0.0, 0.8), applies=lambda o: o.eyes == "target",
        help="How open the avatar's eyes are held: 0 closed, about 0.3 open, higher wide open.")
    lips: str = _option(
        "off", label="Lips", choices=_FOLLOW,
        help="Follow: the avatar's mouth opens as much as yours, measured every frame (the head keeps moving). "
             "Target: its mouth stays at the openness of the slider. Off: the mouth moves with the rest of the "
             "expression.")
    lip_target: float = _option(
        0.0, low_high=(0.0, 0.8), applies=lambda o: o.lips == "target",
        help="How open the avatar's mouth is held: 0 closed, higher wider open.")
    retargeting_only: bool = _option(
        False, text="Only eyes and lips move", applies=lambda o: (o.eyes, o.lips) != ("off", "off"),
        help="With eyes or lips on Follow me or Target: only the eyes and lips move, the head stays still (the "
             "official retargeting mode).")
    normalize_lip: bool = _option(
        False, text="Close the portrait's mouth first", applies=lambda o: o.relative_motion,
        help="Closes the portrait's mouth first when it is open in the photo, so your closed mouth closes the "
             "avatar's too (relative motion only).")
    smoothing: float = _option(
        0.3, label="Smoothing", low_high=(0.0, 1.0),
        help="Calms small jitter of the motion when you hold still; fast moves still come through. 0 is off.")

    def __post_init__(self) -> None:
        for name in SPECS:
            object.__setattr__(self, name, _checked(name, getattr(self, name), name))

    def replace(self, **entries: Any) -> AnimationOptions:
        """These options with ``entries`` (option names or old names) changed; AnimationOptionError otherwise."""
        return dataclasses.replace(self, **option_changes(entries))

    def changes_from(self, other: AnimationOptions) -> dict[str, Any]:
        """The options whose value here differs from ``other``'s."""
        return {name: getattr(self, name) for name in SPECS if getattr(self, name) != getattr(other, name)}

    def applies(self, name: str) -> bool:
        """Whether option ``name`` has an effect with the others as they are (the window greys it out if not)."""
        return SPECS[name].applies(self)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: each option's rule and words, in the window's order
SPECS: dict[str, OptionSpec] = {f.name: f.metadata["spec"] for f in dataclasses.fields(AnimationOptions)}
DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(AnimationOptions)}

#: The names used before this vocabulary, still read from a settings file and ``/control/animation``: each old name,
#: the option it means, and (where the kind of value changed) what each old value becomes.
OLD_NAMES: dict[str, tuple[str, Mapping[Any, Any] | None]] = {
    "motion": ("relative_motion", {"relative": True, "absolute": False}),  # the settings file
    "driving": ("driving_option", None),
    "region": ("animation_region", None),
    "multiplier": ("driving_multiplier", None),
    "relative_pose": ("relative_motion", None),  # /control/animation
    "expression_friendly": ("driving_option", {True: "expression-friendly", False: "pose-friendly"}),
}


def option_entry(given: str, value: Any) -> tuple[str, Any]:
    """(the option's name, its checked value) for one entry written under its name or an old one;
    AnimationOptionError naming the entry as written and what it takes."""
    name, old_values = OLD_NAMES.get(given, (given, None))
    if name not in SPECS:
        raise AnimationOptionError(f"Unknown animation option {given!r}; known: {', '.join(SPECS)}.")
    if old_values is not None:
        new = [v for old, v in old_values.items() if type(old) is type(value) and old == value]
        if not new:
            raise AnimationOptionError(f"Invalid animation option {given}={value!r}: use {_words(old_values)}.")
        value = new[0]
    return name, _checked(name, value, given)


def option_changes(entries: Mapping[str, Any]) -> dict[str, Any]:
    """``entries`` (option names or old names) as checked values under the option names; AnimationOptionError for
    the first bad one or for one option given twice with different values."""
    out: dict[str, Any] = {}
    written: dict[str, str] = {}
    for given, value in entries.items():
        name, checked = option_entry(given, value)
        if name in out and out[name] != checked:
            raise AnimationOptionError(f"Animation option {name} is given twice, as {written[name]} and {given}, "
                                       "with different values; send one of them.")
        out[name], written[name] = checked, given
    return out


def _checked(name: str, value: Any, given: str) -> Any:
    spec, default = SPECS[name], DEFAULTS[name]
    if spec.low_high is not None:
        low, high = spec.low_high
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= float(value) <= high:
            raise AnimationOptionError(f"Invalid animation option {given}={value!r}: use a number from {low} to "
                                       f"{high}.")
        return float(value)
    allowed: Mapping[Any, Any] = spec.choices if spec.choices is not None else {True: "", False: ""}
    if type(value) is not type(default) or value not in allowed:
        raise AnimationOptionError(f"Invalid animation option {given}={value!r}: use {_words(allowed)}.")
    return value


def _words(allowed: Mapping[Any, Any]) -> str:
    if all(isinstance(v, bool) for v in allowed):
        return "true or false"
    return "one of " + ", ".join(map(str, allowed))
