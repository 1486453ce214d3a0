"""The Animation options are defined once (:class:`AnimationOptions`) and every consumer sees every field.

The oracle is the dataclass's own field list: for each field a value other than its default (taken from the field's
rule), then the settings file's round trip, ``/control/animation`` on a real server, the window's Animation card
(offscreen) and the motion maths must each carry that value under that name. A new field that one of them misses
fails here. Old names (the settings file's and ``/control``'s before) are read as the options they mean.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before anything imports Qt

import pytest

from mirage_desktop.animation_options import (
    OLD_NAMES,
    SPECS,
    AnimationOptionError,
    AnimationOptions,
)
from mirage_desktop.config import Settings, load_settings, save_settings
from mirage_desktop.liveportrait.options import ANIMATION_REGIONS, DRIVING_OPTIONS
from mirage_desktop.stages.avatar.options import drive_options, motion_smoother

FIELDS = [f.name for f in dataclasses.fields(AnimationOptions)]
#: every option has an effect here (targets in Target mode, "only eyes and lips" with both retargeted, relative)
BASE = AnimationOptions(eyes="target", lips="target")
TOKEN = "animation-options-token"


def other_value(name: str, base: AnimationOptions = BASE) -> Any:
    """A valid value of option ``name`` other than ``base``'s, from the field's rule alone."""
    spec, current = SPECS[name], getattr(base, name)
    if spec.low_high is not None:
        low, high = spec.low_high
        return high if high != current else low
    allowed = spec.choices if spec.choices is not None else (True, False)
    return next(v for v in allowed if v != current)


def test_every_field_has_a_help_text_and_one_rule() -> None:
    assert FIELDS == list(SPECS)
    for name, spec in SPECS.items():
        assert spec.help, name
        assert (spec.choices is None) or (spec.low_high is None), name
        with pytest.raises(AnimationOptionError, match=f"{name}="):
            AnimationOptions(**{name: "?"})


def test_choices_are_the_motion_maths_own() -> None:
    assert tuple(SPECS["animation_region"].choices or ()) == ANIMATION_REGIONS
    assert tuple(SPECS["driving_option"].choices or ()) == DRIVING_OPTIONS


def test_bad_values_are_named_with_what_they_take() -> None:
    with pytest.raises(AnimationOptionError, match=r"driving_multiplier=7: use a number from 0.0 to 2.0"):
        BASE.replace(driving_multiplier=7)
    with pytest.raises(AnimationOptionError, match=r"smoothing=True: use a number"):
        BASE.replace(smoothing=True)  # a bool is not a number here
    with pytest.raises(AnimationOptionError, match=r"eyes='closed': use one of driver, target, off"):
        BASE.replace(eyes="closed")
    with pytest.raises(AnimationOptionError, match=r"stitching=1: use true or false"):
        BASE.replace(stitching=1)
    with pytest.raises(AnimationOptionError, match="Unknown animation option 'warp'; known: relative_motion"):
        BASE.replace(warp=1)
    with pytest.raises(AnimationOptionError, match="given twice"):
        BASE.replace(relative_motion=True, relative_pose=False)
    assert BASE.replace(driving_multiplier=2).driving_multiplier == 2.0  # an int is a number


def test_old_names_mean_the_new_options() -> None:
    assert BASE.replace(motion="absolute").relative_motion is False
    assert BASE.replace(relative_pose=False).relative_motion is False
    assert BASE.replace(expression_friendly=False).driving_option == "pose-friendly"
    assert BASE.replace(driving="pose-friendly", region="lip", multiplier=1.5) == dataclasses.replace(
        BASE, driving_option="pose-friendly", animation_region="lip", driving_multiplier=1.5)
    with pytest.raises(AnimationOptionError, match=r"motion='sideways': use one of relative, absolute"):
        BASE.replace(motion="sideways")
    with pytest.raises(AnimationOptionError, match=r"relative_pose='no': use true or false"):
        BASE.replace(relative_pose="no")
    assert {new for new, _ in OLD_NAMES.values()} <= set(FIELDS)


# ------------------------------------------------------------------------------------------------ the settings file
@pytest.mark.parametrize("name", FIELDS)
def test_the_settings_file_keeps_every_option(name: str, tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    settings = Settings(animation=BASE.replace(**{name: other_value(name)}))
    save_settings(settings, path)
    saved = json.loads(path.read_text())["animation"]
    assert sorted(saved) == sorted(FIELDS)  # the file's keys are the field names
    assert saved[name] == other_value(name)
    assert load_settings(path, env={}).animation == settings.animation


def test_a_settings_file_with_the_old_names_still_loads(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"animation": {"motion": "absolute", "driving": "pose-friendly", "region": "lip",
                                              "multiplier": 1.5, "smoothing": 0.5, "eyes": "driver"}}))
    with caplog.at_level(logging.WARNING):
        settings = load_settings(path, env={})
    assert not caplog.records
    assert settings.animation == AnimationOptions(relative_motion=False, driving_option="pose-friendly",
                                                  animation_region="lip", driving_multiplier=1.5, smoothing=0.5,
                                                  eyes="driver")
    save_settings(settings, path)
    saved = json.loads(path.read_text())["animation"]
    assert sorted(saved) == sorted(FIELDS) and saved["relative_motion"] is False and saved["animation_region"] == "lip"


# ------------------------------------------------------------------------------------------------ the motion maths
@pytest.mark.parametrize("name", FIELDS)
def test_the_stage_and_the_motion_maths_see_every_option(name: str) -> None:
    def seen(options: AnimationOptions) -> tuple[Any, Any]:
        smoother = motion_smoother(options)
        return drive_options(options), None if smoother is None else smoother._exp.params  # noqa: SLF001

    assert seen(BASE.replace(**{name: other_value(name)})) != seen(BASE)


# ------------------------------------------------------------------------------------------------ /control
@pytest.fixture()
def control_server(tmp_path: Path) -> Iterator[Any]:
    """A real server on the real stages (no models needed to set options)."""
    from mirage_desktop.engine.pipeline import Engine
    from mirage_desktop.engine.sources import DemoSource
    from mirage_desktop.remote.control import RemoteControl
    from mirage_desktop.remote.target import check_remote_url
    from mirage_desktop.stages.factory import build_stages
    from mirage_desktop.api.server import HttpServer

    settings = Settings(output_width=160, output_height=120, token=TOKEN, models_dir=tmp_path / "models",
                        avatar_dir=tmp_path / "avatars", device="cpu")
    engine = Engine(DemoSource(160, 120, fps=15), build_stages(settings))
    server = HttpServer(engine, settings, host="127.0.0.1", port=0)
    server.start()
    try:
        yield RemoteControl(check_remote_url(server.url), TOKEN), engine.stage("liveportrait")
    finally:
        server.stop()


def test_control_sees_every_option(control_server: Any) -> None:
    control, stage = control_server
    assert list(control.animation()) == [*FIELDS, "grace_s", "fallback"]
    assert control.set_animation(**BASE.to_json()) == {**BASE.to_json(), "grace_s": 1.0, "fallback": "avatar"}
    for name in FIELDS:
        answer = control.set_animation(**{name: other_value(name)})
        assert answer[name] == other_value(name) and getattr(stage.options, name) == other_value(name), name
        control.set_animation(**{name: getattr(BASE, name)})
    assert stage.options == BASE


def test_control_still_takes_the_old_names_and_answers_in_the_new(control_server: Any) -> None:
    control, stage = control_server
    answer = control.set_animation(relative_pose=False, expression_friendly=False, grace_s=0.5,
                                   fallback="passthrough")
    assert (stage.options.relative_motion, stage.options.driving_option) == (False, "pose-friendly")
    assert (answer["relative_motion"], answer["driving_option"], answer["grace_s"]) == (False, "pose-friendly", 0.5)
    assert "relative_pose" not in answer and stage.lost_face.fallback == "passthrough"


# ------------------------------------------------------------------------------------------------ the window
def test_the_animation_card_shows_and_sends_every_option(qtbot) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("pytestqt")
    from PySide6.QtWidgets import QCheckBox, QComboBox

    from mirage_desktop.ui.animation_panel import AnimationPanel, Segmented, ValueSlider

    panel = AnimationPanel()
    qtbot.addWidget(panel)
    assert list(panel.controls) == FIELDS
    assert AnimationOptions(**panel.values()) == AnimationOptions()
    panel.show_options(BASE)
    assert AnimationOptions(**panel.values()) == BASE
    sent: list[tuple[str, Any]] = []
    panel.changed.connect(lambda name, value: sent.append((name, value)))
    for name in FIELDS:
        value, control = other_value(name), panel.controls[name]
        assert control.isEnabled() and control.toolTip() == SPECS[name].help, name
        if isinstance(control, Segmented):
            control.click(value)
        elif isinstance(control, ValueSlider):
            control.slider.setValue(round(value * control.steps))
        elif isinstance(control, QComboBox):
            control.setCurrentIndex(control.findData(value))
            control.activated.emit(control.currentIndex())  # as a pick in the (native) popup
        elif isinstance(control, QCheckBox):
            control.click()
        assert sent[-1] == (name, value), name
        panel.show_options(BASE.replace(**{name: value}))
        assert panel.values()[name] == value, name
        panel.show_options(BASE)
