"""The window's Animation card, the 1-9 avatar keys and face picking, on the real window and engine (pytest-qt).

Each control is read back from the avatar stage's own options object; the click test computes the letterbox
mapping itself from the widget and frame sizes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before anything imports Qt

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, Qt

from mirage_desktop.animation_options import AnimationOptions
from mirage_desktop.config import animation_options, bundled_avatar, load_settings
from mirage_desktop.ui.main_window import MainWindow
from ui_helpers import WAIT_MS
from ui_helpers import open_window as _open
from ui_helpers import saved_settings as _saved
from ui_helpers import window_settings as _settings

def _stage_options(window: MainWindow):  # type: ignore[no-untyped-def]
    stage = window.session.avatar_stage
    if stage is None:
        pytest.skip("the avatar stage is not in this build")
    return stage.options


# ------------------------------------------------------------------------------------------------ settings
def test_animation_settings_are_checked_on_load(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"animation": {"relative_motion": False, "animation_region": "ears",
                                              "driving_multiplier": 7, "smoothing": 0.5, "eyes": "driver",
                                              "lips": "follow", "bogus": 1}}))
    with caplog.at_level(logging.WARNING):
        settings = load_settings(path, env={})
    assert settings.animation == AnimationOptions(relative_motion=False, smoothing=0.5, eyes="driver")
    text = caplog.text
    assert "animation_region='ears'" in text and "all, exp, pose, lip, eyes" in text  # the bad value, the choices
    assert "lips='follow'" in text and "driver, target, off" in text
    assert "driving_multiplier=7" in text and "from 0.0 to 2.0" in text
    assert "Unknown animation option 'bogus'" in text
    assert animation_options("not a dict") == AnimationOptions()


# ------------------------------------------------------------------------------------------------ the card
def test_each_control_changes_the_avatar_stage(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    window = _open(qtbot, _settings(tmp_path))
    panel = window.animation
    c = panel.controls
    assert panel.expanded
    options = _stage_options(window)
    assert (options.relative_motion, options.driving_option, options.driving_multiplier) == (
        True, "expression-friendly", 1.0)
    assert options.smoothing == pytest.approx(0.3)

    c["driving_option"].click("pose-friendly")
    assert _stage_options(window).driving_option == "pose-friendly"
    c["relative_motion"].click(False)
    assert _stage_options(window).relative_motion is False
    assert not c["driving_option"].isEnabled() and not c["normalize_lip"].isEnabled()  # relative-only options
    c["relative_motion"].click(True)
    assert _stage_options(window).relative_motion is True and c["driving_option"].isEnabled()
    c["driving_multiplier"].slider.setValue(150)
    assert _stage_options(window).driving_multiplier == pytest.approx(1.5)
    assert c["driving_multiplier"].label.text() == "1.50×"
    c["smoothing"].slider.setValue(0)
    assert _stage_options(window).smoothing == 0.0

    assert not c["eye_target"].isEnabled() and not c["retargeting_only"].isEnabled()
    c["eyes"].click("target")  # only a target needs the slider, only retargeting the "only" switch
    assert c["eye_target"].isEnabled() and c["retargeting_only"].isEnabled()
    c["eye_target"].slider.setValue(45)
    assert (_stage_options(window).eyes, _stage_options(window).eye_target) == ("target", pytest.approx(0.45))
    c["eyes"].click("driver")
    assert _stage_options(window).eyes == "driver" and not c["eye_target"].isEnabled()
    c["retargeting_only"].click()
    assert _stage_options(window).retargeting_only is True
    c["lips"].click("target")
    c["lip_target"].slider.setValue(60)
    assert (_stage_options(window).lips, _stage_options(window).lip_target) == ("target", pytest.approx(0.6))
    c["eyes"].click("off")
    assert _stage_options(window).eyes == "off"
    region = c["animation_region"]
    index = region.findData("lip")
    region.setCurrentIndex(index)
    region.activated.emit(index)  # as a pick in the (native) popup
    assert _stage_options(window).animation_region == "lip"
    assert window.settings.animation.animation_region == "lip"
    c["normalize_lip"].click()
    assert _stage_options(window).normalize_lip is True
    c["stitching"].click()
    assert _stage_options(window).stitching is False

    qtbot.waitUntil(lambda: _saved().get("animation", {}).get("smoothing") == 0.0, timeout=WAIT_MS)
    panel.reset.click()
    assert window.settings.animation == AnimationOptions()
    assert AnimationOptions(**panel.values()) == AnimationOptions()
    assert _stage_options(window) == AnimationOptions()
    assert _saved()["animation"] == AnimationOptions().to_json()


def test_animation_options_survive_a_restart(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    first = _open(qtbot, _settings(tmp_path))
    first.animation.controls["relative_motion"].click(False)
    first.animation.controls["driving_multiplier"].slider.setValue(80)
    first.animation.controls["smoothing"].slider.setValue(55)
    first.animation.header.click()  # fold the card
    assert not first.animation.expanded
    first.close()
    assert _saved()["animation"]["driving_multiplier"] == pytest.approx(0.8)

    second = _open(qtbot, _settings(tmp_path))
    assert not second.animation.expanded
    values = second.animation.values()
    assert (values["relative_motion"], values["driving_multiplier"], values["smoothing"]) == (False, 0.8, 0.55)
    options = _stage_options(second)
    assert options.relative_motion is False
    assert options.driving_multiplier == pytest.approx(0.8) and options.smoothing == pytest.approx(0.55)


# ------------------------------------------------------------------------------------------------ 1-9 keys
def test_number_keys_pick_gallery_avatars(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = _settings(tmp_path)
    settings.avatar_dir.mkdir(parents=True)
    for name in ("a.png", "b.png", "c.png"):
        shutil.copy(bundled_avatar(), settings.avatar_dir / name)
    window = _open(qtbot, settings)
    paths = window.avatar_picker.paths()
    assert paths == [bundled_avatar(), *(settings.avatar_dir / n for n in ("a.png", "b.png", "c.png"))]
    assert "(key 3)" in window.avatar_picker.list.item(2).toolTip()

    def press(key: Qt.Key) -> None:
        window.activateWindow()
        qtbot.waitUntil(window.isActiveWindow, timeout=WAIT_MS)
        qtbot.keyClick(window.preview, key)

    press(Qt.Key.Key_3)
    qtbot.waitUntil(lambda: window.settings.avatar == paths[2], timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.avatar_picker.list.isEnabled(), timeout=WAIT_MS)
    assert window.avatar_picker.list.currentRow() == 2
    assert _saved()["avatar"] == str(paths[2])
    press(Qt.Key.Key_4)
    qtbot.waitUntil(lambda: window.settings.avatar == paths[3], timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.avatar_picker.list.isEnabled(), timeout=WAIT_MS)
    press(Qt.Key.Key_9)
    assert window.messages[-1][1].startswith("No avatar 9: the gallery has 4")
    assert window.settings.avatar == paths[3]


# ------------------------------------------------------------------------------------------------ face picking
def test_a_click_on_the_face_picks_it_in_frame_pixels(qtbot, tmp_path: Path, shared_dir: Path,  # type: ignore[no-untyped-def]
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(tmp_path)
    settings.scrfd_model = shared_dir / "models" / "scrfd_500m_bnkps.onnx"
    settings.enable_scrfd = True
    settings.source = str(shared_dir / "media" / "astronaut.png")
    window = _open(qtbot, settings)
    stage = window.session.face_stage
    assert stage is not None
    picks: list[tuple[float, float]] = []
    monkeypatch.setattr(stage, "pick_face", lambda x, y: picks.append((x, y)), raising=False)
    preview = window.preview
    qtbot.waitUntil(lambda: preview.frame is not None and preview.frame.face is not None, timeout=WAIT_MS)
    frame = preview.frame
    assert frame is not None and frame.face is not None
    height, width = frame.image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in frame.face.box)

    # the letterbox, computed here from the sizes alone
    scale = min(preview.width() / width, preview.height() / height)
    left, top = (preview.width() - width * scale) / 2, (preview.height() - height * scale) / 2
    centre = ((x1 + x2) / 2, (y1 + y2) / 2)
    click = QPoint(round(left + centre[0] * scale), round(top + centre[1] * scale))
    expected = ((click.x() - left) / scale, (click.y() - top) / scale)

    qtbot.mouseClick(preview, Qt.MouseButton.LeftButton, pos=click)
    assert len(picks) == 1
    x, y = picks[0]
    assert abs(x - expected[0]) <= 1.0 and abs(y - expected[1]) <= 1.0  # within a frame pixel of the rounding
    assert x1 < x < x2 and y1 < y < y2
    assert "drives the avatar" in window.messages[-1][1]

    # the letterbox bars are not the picture: no pick
    if left >= 4:
        qtbot.mouseClick(preview, Qt.MouseButton.LeftButton, pos=QPoint(round(left / 2), preview.height() // 2))
    else:
        qtbot.mouseClick(preview, Qt.MouseButton.LeftButton, pos=QPoint(preview.width() // 2, round(top / 2)))
    assert len(picks) == 1

    # the driving face is outlined in the accent colour on its box's left edge
    image = preview.grab().toImage()
    edge_x = round(left + x1 * scale)
    mid_y = round(top + centre[1] * scale)
    colours = [image.pixelColor(edge_x + dx, mid_y) for dx in (-1, 0, 1)]
    assert any(c.blue() > 180 and c.blue() > c.red() + 60 for c in colours), [c.name() for c in colours]
