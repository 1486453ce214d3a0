"""The Animation card: how the user's face moves the avatar (the official LivePortrait options, in plain words).

It shows the options the session holds (``settings.animation``, an
:class:`~mirage_desktop.animation_options.AnimationOptions`) and emits each change as (option name, value) the moment
the user makes it; the window hands it to the session, which applies it from the next frame and remembers it. The
rows are made from the options' fields: each one's label, words, range and tooltip come from there. The card folds
away under its title.
"""

from __future__ import annotations

from collections.abc import Mapping
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

from mirage_desktop.animation_options import SPECS, AnimationOptions, OptionSpec

#: Slider steps per unit of a numeric option.
STEPS = 100
RESET_TIP = "Put every animation option back to its default."


def _no_focus(widget: QWidget) -> QWidget:
    widget.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # Space stays "Recalibrate", digits stay "pick an avatar"
    return widget


class Segmented(QWidget):
    """A row of exclusive buttons, one per choice (a compact, always-visible radio group)."""

    chosen = Signal(object)

    def __init__(self, choices: Mapping[Any, str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("segmented")
        self.group = QButtonGroup(self)
        self.group.setExclusive(True)
        self.buttons: dict[Any, QToolButton] = {}
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

    def value(self) -> Any:
        return next(v for v, b in self.buttons.items() if b.isChecked())

    def set_value(self, value: Any) -> None:
        self.buttons[value].setChecked(True)

    def click(self, value: Any) -> None:
        """As the user's click on ``value``."""
        self.buttons[value].click()


class ValueSlider(QWidget):
    """A horizontal slider over a float range, with its value written next to it."""

    moved = Signal(float)

    def __init__(self, low: float, high: float, fmt: str = "{:.2f}", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.low, self.high = low, high
        self.steps = STEPS
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


def _control(spec: OptionSpec) -> QWidget:
    """The widget for one option: a slider for a range, a drop-down or a row of buttons for choices, else a check
    box."""
    if spec.low_high is not None:
        return ValueSlider(*spec.low_high, fmt=spec.fmt)
    if spec.choices is None:
        return _no_focus(QCheckBox(spec.text))
    if spec.menu:
        menu = QComboBox()
        for value, word in spec.choices.items():
            menu.addItem(word, value)
        return _no_focus(menu)
    return Segmented(spec.choices)


class AnimationPanel(QFrame):
    """Every animation option, each applied the moment it changes; folds under its title."""

    changed = Signal(str, object)  # the option's name (a field of AnimationOptions), its new value
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

        #: one control per option, by its name, in the options' order
        self.controls: dict[str, QWidget] = {}
        self.labels: dict[str, QLabel] = {}
        for row, (name, spec) in enumerate(SPECS.items()):
            control = self.controls[name] = _control(spec)
            label = self.labels[name] = QLabel(spec.label)
            label.setObjectName("hint")
            label.setToolTip(spec.help)
            control.setToolTip(spec.help)
            grid.addWidget(label, row, 0)
            grid.addWidget(control, row, 1)
            self._connect(name, control)
        self.reset = QPushButton("Reset to defaults")
        _no_focus(self.reset)
        self.reset.setToolTip(RESET_TIP)
        reset_row = QHBoxLayout()
        reset_row.addStretch(1)
        reset_row.addWidget(self.reset)
        grid.addLayout(reset_row, len(SPECS), 0, 1, 2)
        self.reset.clicked.connect(self.reset_requested)

        self.show_options(AnimationOptions())
        self.set_expanded(True)

    def _connect(self, name: str, control: QWidget) -> None:
        if isinstance(control, Segmented):
            control.chosen.connect(lambda value: self._emit(name, value))
        elif isinstance(control, ValueSlider):
            control.moved.connect(lambda value: self._emit(name, value))
        elif isinstance(control, QComboBox):
            control.activated.connect(lambda index: self._emit(name, control.itemData(index)))
        elif isinstance(control, QCheckBox):
            control.toggled.connect(lambda on: self._emit(name, bool(on)))

    # ------------------------------------------------------------------------------------------------ state
    def values(self) -> dict[str, Any]:
        """What the controls show, by option name."""
        out: dict[str, Any] = {}
        for name, control in self.controls.items():
            if isinstance(control, (Segmented, ValueSlider)):
                out[name] = control.value()
            elif isinstance(control, QComboBox):
                out[name] = control.currentData()
            elif isinstance(control, QCheckBox):
                out[name] = control.isChecked()
        return out

    def show_options(self, options: AnimationOptions) -> None:
        """Show the session's options without emitting anything."""
        for name, control in self.controls.items():
            value = getattr(options, name)
            if isinstance(control, (Segmented, ValueSlider)):
                control.set_value(value)
            elif isinstance(control, QComboBox):
                control.setCurrentIndex(max(0, control.findData(value)))
            elif isinstance(control, QCheckBox):
                control.blockSignals(True)
                control.setChecked(bool(value))
                control.blockSignals(False)
        self._show_dependencies()

    def _show_dependencies(self) -> None:
        """Grey out what has no effect with the others as they are (a target outside Target mode, "only eyes and
        lips" with neither retargeted, the relative-only options in absolute motion), as the options say."""
        shown = AnimationOptions(**self.values())
        for name, control in self.controls.items():
            control.setEnabled(shown.applies(name))

    def _emit(self, name: str, value: Any) -> None:
        self._show_dependencies()
        self.changed.emit(name, value)

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
