"""The Animation card: how the user's face moves the avatar (the official LivePortrait options, in plain words).

It shows the options the session holds (``settings.animation``, see :data:`~mirage_desktop.config.ANIMATION_DEFAULTS`)
and emits each change as (key, value) the moment the user makes it; the window hands it to the session, which
applies it from the next frame and remembers it. The card folds away under its title.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from mirage_desktop.config import ANIMATION_DEFAULTS, ANIMATION_RANGES

#: Slider steps per unit of each numeric option.
_STEPS = {"multiplier": 100, "eye_target": 100, "lip_target": 100, "smoothing": 100}

REGION_LABELS = {"all": "Everything", "exp": "Expression only", "pose": "Head pose only", "lip": "Lips only",
                 "eyes": "Eyes only"}

TIPS = {
    "motion": "Relative: the avatar moves by how much you move away from your neutral pose (Space sets it), so "
              "its own look stays. Absolute: the avatar copies your head angle and expression as they are.",
    "driving": "Expression-friendly: scales your motion to the avatar's face size, which keeps expressions "
               "natural (relative motion only). Pose-friendly: passes your head motion through unscaled.",
    "region": "Which part of your face moves the avatar: everything, only the expression, only the head's pose, "
              "only the lips or only the eyes.",
    "multiplier": "How strongly your motion moves the avatar: above 1x exaggerates it, below 1x damps it.",
    "stitching": "Keeps the avatar's shoulders and neck in place while the head moves. Off: the whole crop moves, "
                 "which can show a seam.",
    "eyes": "Follow: the avatar's eyes open and close as much as yours, measured every frame (the head keeps "
            "moving). Target: its eyes stay at the openness of the slider. Off: the eyes move with the rest of "
            "the expression.",
    "eye_target": "How open the avatar's eyes are held: 0 closed, about 0.3 open, higher wide open.",
    "lips": "Follow: the avatar's mouth opens as much as yours, measured every frame (the head keeps moving). "
            "Target: its mouth stays at the openness of the slider. Off: the mouth moves with the rest of the "
            "expression.",
    "lip_target": "How open the avatar's mouth is held: 0 closed, higher wider open.",
    "retargeting_only": "With eyes or lips on Follow me or Target: only the eyes and lips move, the head stays "
                        "still (the official retargeting mode).",
    "normalize_lip": "Closes the portrait's mouth first when it is open in the photo, so your closed mouth closes "
                     "the avatar's too (relative motion only).",
    "smoothing": "Calms small jitter of the motion when you hold still; fast moves still come through. 0 is off.",
    "reset": "Put every animation option back to its default.",
}


def _no_focus(widget: QWidget) -> QWidget:
    widget.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # Space stays "Recalibrate", digits stay "pick an avatar"
    return widget


class Segmented(QWidget):
    """A row of exclusive buttons, one per choice (a compact, always-visible radio group)."""

    chosen = Signal(str)

    def __init__(self, choices: Mapping[str, str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("segmented")
        self.group = QButtonGroup(self)
        self.group.setExclusive(True)
        self.buttons: dict[str, QToolButton] = {}
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        for i, (value, label) in enumerate(choices.items()):
            button = QToolButton()
            button.setText(label)
            button.setCheckable(True)
            button.setObjectName("segment")
            button.setProperty("position", "first" if i == 0 else "last" if i == len(choices) - 1 else "middle")
            button.setSizePolicy(button.sizePolicy().Policy.Expanding, button.sizePolicy().Policy.Fixed)
            _no_focus(button)
            button.clicked.connect(lambda _checked=False, v=value: self.chosen.emit(v))
            self.group.addButton(button)
            self.buttons[value] = button
            layout.addWidget(button, 1)

    def value(self) -> str:
        return next(v for v, b in self.buttons.items() if b.isChecked())

    def set_value(self, value: str) -> None:
        self.buttons[value].setChecked(True)

    def click(self, value: str) -> None:
        """As the user's click on ``value``."""
        self.buttons[value].click()


class ValueSlider(QWidget):
    """A horizontal slider over a float range, with its value written next to it."""

    moved = Signal(float)

    def __init__(self, key: str, fmt: str = "{:.2f}", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.low, self.high = ANIMATION_RANGES[key]
        self.steps = _STEPS[key]
        self.fmt = fmt
        self.slider = QSlider(Qt.Orientation.Horizontal)
        _no_focus(self.slider)
        self.slider.setRange(round(self.low * self.steps), round(self.high * self.steps))
        self.slider.setPageStep(max(1, self.steps // 10))
        self.label = QLabel("")
        self.label.setObjectName("sliderValue")
        self.label.setMinimumWidth(38)
        self.label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(8)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.label)
        self.slider.valueChanged.connect(self._on_changed)

    def value(self) -> float:
        return self.slider.value() / self.steps

    def set_value(self, value: float) -> None:
        self.slider.blockSignals(True)
        self.slider.setValue(round(value * self.steps))
        self.slider.blockSignals(False)
        self.label.setText(self.fmt.format(self.value()))

    def _on_changed(self, position: int) -> None:
        value = position / self.steps
        self.label.setText(self.fmt.format(value))
        self.moved.emit(value)


class AnimationPanel(QFrame):
    """Every animation option, each applied the moment it changes; folds under its title."""

    changed = Signal(str, object)  # key of ANIMATION_DEFAULTS, new value
    reset_requested = Signal()
    expanded_changed = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("section")
        outer = QVBoxLayout(self)
        outer.setContentsMargins(12, 10, 12, 12)
        outer.setSpacing(8)
        self.header = QToolButton()
        self.header.setObjectName("sectionToggle")
        self.header.setText("ANIMATION")
        self.header.setCheckable(True)
        self.header.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.header.setToolTip("Show or hide how your face moves the avatar")
        _no_focus(self.header)
        self.header.toggled.connect(self.set_expanded)
        outer.addWidget(self.header)

        self.body = QWidget()
        grid = QGridLayout(self.body)
        grid.setContentsMargins(0, 2, 0, 0)
        grid.setHorizontalSpacing(10)
        grid.setVerticalSpacing(8)
        grid.setColumnStretch(1, 1)
        outer.addWidget(self.body)

        self.motion = Segmented({"relative": "Relative", "absolute": "Absolute"})
        self.driving = Segmented({"expression-friendly": "Expression", "pose-friendly": "Pose"})
        self.region = QComboBox()
        _no_focus(self.region)
        for value, label in REGION_LABELS.items():
            self.region.addItem(label, value)
        self.multiplier = ValueSlider("multiplier", "{:.2f}×")
        self.eyes = Segmented({"driver": "Follow me", "target": "Target", "off": "Off"})
        self.eye_target = ValueSlider("eye_target")
        self.lips = Segmented({"driver": "Follow me", "target": "Target", "off": "Off"})
        self.lip_target = ValueSlider("lip_target")
        self.normalize_lip = QCheckBox("Close the portrait's mouth first")
        _no_focus(self.normalize_lip)
        self.stitching = QCheckBox("Keep the shoulders still")
        _no_focus(self.stitching)
        self.retargeting_only = QCheckBox("Only eyes and lips move")
        _no_focus(self.retargeting_only)
        self.smoothing = ValueSlider("smoothing")
        self.reset = QPushButton("Reset to defaults")
        _no_focus(self.reset)

        self.controls: dict[str, QWidget] = {
            "motion": self.motion, "driving": self.driving, "region": self.region, "multiplier": self.multiplier,
            "stitching": self.stitching, "eyes": self.eyes, "eye_target": self.eye_target, "lips": self.lips,
            "lip_target": self.lip_target, "retargeting_only": self.retargeting_only,
            "normalize_lip": self.normalize_lip, "smoothing": self.smoothing,
        }
        self.checkboxes: dict[str, QCheckBox] = {
            "stitching": self.stitching, "retargeting_only": self.retargeting_only, "normalize_lip": self.normalize_lip,
        }
        self.labels: dict[str, QLabel] = {}
        rows = (("motion", "Motion"), ("driving", "Friendly to"), ("region", "Moves"), ("multiplier", "Strength"),
                ("stitching", ""), ("eyes", "Eyes"), ("eye_target", ""), ("lips", "Lips"), ("lip_target", ""),
                ("retargeting_only", ""), ("normalize_lip", ""), ("smoothing", "Smoothing"))
        for row, (key, text) in enumerate(rows):
            label = QLabel(text)
            label.setObjectName("hint")
            label.setToolTip(TIPS[key])
            self.labels[key] = label
            grid.addWidget(label, row, 0)
            grid.addWidget(self.controls[key], row, 1)
            self.controls[key].setToolTip(TIPS[key])
        self.reset.setToolTip(TIPS["reset"])
        reset_row = QHBoxLayout()
        reset_row.addStretch(1)
        reset_row.addWidget(self.reset)
        grid.addLayout(reset_row, len(rows), 0, 1, 2)

        for key in ("motion", "driving", "eyes", "lips"):
            segmented: Segmented = self.controls[key]  # type: ignore[assignment]
            segmented.chosen.connect(lambda value, k=key: self._emit(k, value))
        for key in ("multiplier", "eye_target", "lip_target", "smoothing"):
            slider: ValueSlider = self.controls[key]  # type: ignore[assignment]
            slider.moved.connect(lambda value, k=key: self._emit(k, value))
        self.region.activated.connect(lambda index: self._emit("region", self.region.itemData(index)))
        for key, box in self.checkboxes.items():
            box.toggled.connect(lambda on, k=key: self._emit(k, bool(on)))
        self.reset.clicked.connect(self.reset_requested)

        self._unsupported: set[str] = set()
        self.show_options(ANIMATION_DEFAULTS)
        self.set_expanded(True)

    # ------------------------------------------------------------------------------------------------ state
    def values(self) -> dict[str, Any]:
        """What the controls show, as the session's options."""
        return {
            "motion": self.motion.value(), "driving": self.driving.value(), "region": self.region.currentData(),
            "multiplier": self.multiplier.value(), "stitching": self.stitching.isChecked(), "eyes": self.eyes.value(),
            "eye_target": self.eye_target.value(), "lips": self.lips.value(), "lip_target": self.lip_target.value(),
            "retargeting_only": self.retargeting_only.isChecked(), "normalize_lip": self.normalize_lip.isChecked(),
            "smoothing": self.smoothing.value(),
        }

    def show_options(self, options: Mapping[str, Any]) -> None:
        """Show the session's options without emitting anything."""
        for key in ("motion", "driving", "eyes", "lips"):
            self.controls[key].set_value(options[key])  # type: ignore[attr-defined]
        for key in ("multiplier", "eye_target", "lip_target", "smoothing"):
            self.controls[key].set_value(float(options[key]))  # type: ignore[attr-defined]
        self.region.setCurrentIndex(max(0, self.region.findData(options["region"])))
        for key, box in self.checkboxes.items():
            box.blockSignals(True)
            box.setChecked(bool(options[key]))
            box.blockSignals(False)
        self._show_dependencies()

    def set_supported(self, keys: Iterable[str]) -> None:
        """Grey out the options this build's avatar stage does not honour, saying so."""
        self._unsupported = set(self.controls) - set(keys)
        for key, widget in self.controls.items():
            tip = TIPS[key] + ("\n\nNot available with this build's Animate stage." if key in self._unsupported else "")
            widget.setToolTip(tip)
        self._show_dependencies()

    def _show_dependencies(self) -> None:
        """Targets only matter in Target mode, "only eyes and lips" only when one of them is retargeted, the
        expression-friendly choice and lip normalisation only in relative motion (as officially)."""
        enabled = {key: key not in self._unsupported for key in self.controls}
        relative = self.motion.value() == "relative"
        enabled["driving"] &= relative
        enabled["normalize_lip"] &= relative
        enabled["eye_target"] &= self.eyes.value() == "target"
        enabled["lip_target"] &= self.lips.value() == "target"
        enabled["retargeting_only"] &= (self.eyes.value(), self.lips.value()) != ("off", "off")
        for key, widget in self.controls.items():
            widget.setEnabled(enabled[key])

    def _emit(self, key: str, value: Any) -> None:
        self._show_dependencies()
        self.changed.emit(key, value)

    # ------------------------------------------------------------------------------------------------ fold
    @property
    def expanded(self) -> bool:
        return self.body.isVisibleTo(self)

    def set_expanded(self, expanded: bool) -> None:
        self.header.blockSignals(True)
        self.header.setChecked(expanded)
        self.header.blockSignals(False)
        self.header.setArrowType(Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow)
        self.body.setVisible(expanded)
        self.expanded_changed.emit(expanded)
