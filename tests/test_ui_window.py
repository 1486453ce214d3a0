"""The real window on the real engine with the ``demo`` source, offscreen (pytest-qt)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before anything imports Qt

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QFileDialog

from mirage_desktop.config import bundled_avatar
from mirage_desktop.engine.frame import Frame
from mirage_desktop.ui.app import create_application
from mirage_desktop.ui.avatars import unique_destination
from mirage_desktop.ui.main_window import MainWindow
from mirage_desktop.ui.preview import FrameBridge, qimage_view
from ui_helpers import WAIT_MS
from ui_helpers import open_window as _open
from ui_helpers import saved_settings as _saved
from ui_helpers import window_settings as _settings

@pytest.fixture()
def window(qtbot, tmp_path: Path) -> MainWindow:  # type: ignore[no-untyped-def]
    return _open(qtbot, _settings(tmp_path))


def _key(qtbot, window: MainWindow, key: Qt.Key, modifier: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier) -> None:  # type: ignore[no-untyped-def]
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=WAIT_MS)
    qtbot.keyClick(window.preview, key, modifier)


def _last_message(window: MainWindow) -> tuple[str, str]:
    return window.messages[-1] if window.messages else ("", "")


# ------------------------------------------------------------------------------------------------ preview parts
def test_bridge_keeps_at_most_one_frame_in_flight(qtbot) -> None:  # type: ignore[no-untyped-def]
    bridge = FrameBridge()
    image = np.zeros((4, 4, 3), np.uint8)
    received: list[Frame] = []
    bridge.frame_ready.connect(received.append)
    first, second, third = (Frame(image=image, index=i, t_capture=0.0) for i in range(3))
    bridge.offer(first)
    bridge.offer(second)  # the first is not painted yet: dropped, not queued
    assert received == [first]
    assert bridge.dropped == 1
    bridge.release()
    bridge.offer(third)
    assert received == [first, third]


def test_qimage_view_reads_the_array_in_place() -> None:
    create_application()
    array = np.zeros((6, 8, 3), np.uint8)
    array[..., 2] = 255  # BGR red
    array.flags.writeable = False  # as the engine publishes frames
    image = qimage_view(array)
    assert (image.width(), image.height()) == (8, 6)
    assert image.pixelColor(3, 2).name() == "#ff0000"
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        qimage_view(np.zeros((6, 8), np.uint8))


def test_unique_destination_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "me.png").write_bytes(b"x")
    (tmp_path / "me-2.png").write_bytes(b"x")
    assert unique_destination(tmp_path, "me.png") == tmp_path / "me-3.png"
    assert unique_destination(tmp_path, "you.png") == tmp_path / "you.png"


# ------------------------------------------------------------------------------------------------ the window
def test_preview_and_plots_receive_live_data(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    qtbot.waitUntil(lambda: window.latency.values("end_to_end").size >= 2, timeout=WAIT_MS)
    frame = window.preview.frame
    assert frame is not None and frame.image.shape == (240, 320, 3)
    assert not frame.image.flags.writeable  # painted straight from the published, read-only buffer
    assert np.all(window.latency.values("end_to_end") >= 0.0)
    assert window.latency.fps.value.text() not in ("", "–")
    assert window.status_device.text() == "CPU"
    qtbot.waitUntil(lambda: window.status_fps.text() != "– fps" and not window.status_fps.text().startswith("0.0"),
                    timeout=WAIT_MS)


def test_model_toggles_change_the_engine_and_show_why(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    names = [stage.name for stage in window.engine.stages]
    if "scrfd" not in names:
        pytest.skip("the face detection stage is not in this build")
    toggle = window.controls.stages["scrfd"]
    assert not window.engine.stage("scrfd").enabled
    toggle.checkbox.click()
    assert window.engine.stage("scrfd").enabled
    assert window.settings.enable_scrfd and _saved()["enable_scrfd"] is True
    # No SCRFD model in the test's empty models folder: the reason and the download button appear.
    qtbot.waitUntil(lambda: "mirage-models download" in toggle.reason_text, timeout=WAIT_MS)
    assert toggle.download.isVisibleTo(window)
    qtbot.waitUntil(lambda: "SCRFD" in window.status_reason.text(), timeout=WAIT_MS)
    toggle.checkbox.click()
    assert not window.engine.stage("scrfd").enabled
    assert _saved()["enable_scrfd"] is False
    qtbot.waitUntil(lambda: toggle.reason_text == "", timeout=WAIT_MS)


def test_shortcuts(qtbot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    names = {stage.name for stage in window.engine.stages}
    # Ctrl+1 / Ctrl+2: the two models
    for key, name in ((Qt.Key.Key_1, "scrfd"), (Qt.Key.Key_2, "liveportrait")):
        if name in names:
            before = window.engine.stage(name).enabled
            _key(qtbot, window, key, Qt.KeyboardModifier.ControlModifier)
            assert window.engine.stage(name).enabled is not before
            assert window.controls.stages[name].checkbox.isChecked() is not before
        else:
            count = len(window.messages)
            _key(qtbot, window, key, Qt.KeyboardModifier.ControlModifier)
            assert len(window.messages) == count + 1 and "not available" in _last_message(window)[1]
    # Space: recalibrate (a message says what happened, whichever build this is)
    count = len(window.messages)
    _key(qtbot, window, Qt.Key.Key_Space)
    assert len(window.messages) == count + 1
    assert any(word in _last_message(window)[1] for word in ("Recalibrat", "neutral pose"))
    # Ctrl+O: add a portrait (the native file dialog is the boundary: it returns the file a user would pick)
    portrait = tmp_path / "incoming" / "new face.png"
    portrait.parent.mkdir()
    shutil.copy(bundled_avatar(), portrait)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(portrait), "")))
    _key(qtbot, window, Qt.Key.Key_O, Qt.KeyboardModifier.ControlModifier)
    copied = window.settings.avatar_dir / "new face.png"
    qtbot.waitUntil(lambda: window.settings.avatar == copied, timeout=WAIT_MS)
    assert copied.read_bytes() == portrait.read_bytes()
    # the session sets the avatar on a pool thread; the gallery shows it when the result reaches the GUI thread
    qtbot.waitUntil(lambda: copied in window.avatar_picker.paths(), timeout=WAIT_MS)
    # F11: full-screen preview and back
    _key(qtbot, window, Qt.Key.Key_F11)
    qtbot.waitUntil(window.isFullScreen, timeout=WAIT_MS)
    assert window.sidebar.isHidden() and window.latency.isHidden()
    _key(qtbot, window, Qt.Key.Key_F11)
    qtbot.waitUntil(lambda: not window.isFullScreen(), timeout=WAIT_MS)
    assert not window.sidebar.isHidden()
    # Ctrl+Q: quit, which stops the engine
    _key(qtbot, window, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=WAIT_MS)
    assert not window.engine.running


def test_settings_persist_across_a_restart(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    still = tmp_path / "still.png"
    shutil.copy(bundled_avatar(), still)
    first = _open(qtbot, _settings(tmp_path))
    has_scrfd = any(stage.name == "scrfd" for stage in first.engine.stages)
    if has_scrfd:
        first.controls.stages["scrfd"].checkbox.click()
    first.controls.show_inset.click()  # hide the camera inset
    first.choose_source(str(still))
    qtbot.waitUntil(lambda: first.engine.source.describe() == "image:still.png", timeout=WAIT_MS)
    first.resize(760, 620)  # inside the offscreen 800x800 screen, which restoreGeometry clamps to
    qtbot.waitUntil(lambda: first.width() == 760, timeout=WAIT_MS)
    first.close()
    assert not first.engine.running
    saved = _saved()
    assert saved["source"] == str(still) and saved["ui"]["camera_inset"] is False

    second = _open(qtbot, _settings(tmp_path))  # loads the file the first one wrote
    assert second.engine.source.describe() == "image:still.png"
    assert second.controls.current_source() == str(still)
    assert not second.controls.show_inset.isChecked() and not second.preview.inset_visible
    assert (second.width(), second.height()) == (760, 620)
    if has_scrfd:
        assert second.engine.stage("scrfd").enabled and second.controls.stages["scrfd"].checkbox.isChecked()


def test_bad_portrait_shows_a_message_and_keeps_the_old_avatar(qtbot, window: MainWindow, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    good = tmp_path / "good.png"
    shutil.copy(bundled_avatar(), good)
    window.add_portrait(good)
    kept = window.settings.avatar_dir / "good.png"
    qtbot.waitUntil(lambda: window.settings.avatar == kept, timeout=WAIT_MS)

    bad = tmp_path / "broken.png"
    bad.write_text("this is not a picture", encoding="utf-8")
    count = len(window.messages)
    window.add_portrait(bad)
    qtbot.waitUntil(lambda: len(window.messages) > count and window.avatar_picker.list.isEnabled(), timeout=WAIT_MS)
    level, text = _last_message(window)
    assert level == "error" and "broken.png" in text
    assert window.banner.isVisible() and "broken.png" in window.banner.text()
    assert window.settings.avatar == kept
    assert _saved()["avatar"] == str(kept)
    assert not (window.settings.avatar_dir / "broken.png").exists()  # nothing left behind
    assert window.avatar_picker.list.currentItem().data(Qt.ItemDataRole.UserRole) == kept

    count = len(window.messages)
    window.add_portrait(tmp_path / "notes.txt")  # not an image type at all
    assert len(window.messages) == count + 1 and "notes.txt" in _last_message(window)[1]


def test_dropping_an_image_adds_it(qtbot, window: MainWindow, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dropped = tmp_path / "dropped.jpg"
    shutil.copy(bundled_avatar(), dropped.with_suffix(".png"))
    dropped = dropped.with_suffix(".png")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(dropped))])
    event = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    target = window.settings.avatar_dir / "dropped.png"
    qtbot.waitUntil(lambda: window.settings.avatar == target, timeout=WAIT_MS)
    assert target.exists()


def test_closing_stops_the_engine_and_releases_the_source(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    engine = window.engine
    assert engine.running
    window.close()
    assert not engine.running
    assert not window.pool.active
    assert "geometry" in _saved()["ui"]


def test_portrait_without_a_face_is_refused(qtbot, tmp_path: Path, shared_dir: Path) -> None:  # type: ignore[no-untyped-def]
    model = shared_dir / "models" / "scrfd_500m_bnkps.onnx"
    if not model.exists():
        pytest.skip(f"{model} is missing")
    settings = _settings(tmp_path)
    settings.scrfd_model = model  # the avatar stage looks for the face with the real detector
    window = _open(qtbot, settings)
    if not any(stage.name == "liveportrait" for stage in window.engine.stages):
        pytest.skip("the avatar stage is not in this build")
    import cv2

    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((256, 256, 3), 128, np.uint8))
    before = window.settings.avatar
    count = len(window.messages)
    window.add_portrait(blank)
    qtbot.waitUntil(lambda: len(window.messages) > count and window.avatar_picker.list.isEnabled(), timeout=WAIT_MS)
    level, text = _last_message(window)
    assert level == "error" and "No face found in wall.png" in text
    assert window.settings.avatar == before
    assert not (window.settings.avatar_dir / "wall.png").exists()
    assert window.engine.stage("liveportrait").avatar_path == bundled_avatar()


def test_download_models_button_fetches_and_enables_the_stage(  # type: ignore[no-untyped-def]
    qtbot, tmp_path: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real downloader against a local stand-in for the hub (the internet is the boundary), serving the real
    SCRFD file under its registry entry; the window then reloads the stage and it runs."""
    from hub_helpers import FakeHub

    from mirage_desktop.models.registry import REGISTRY

    entry = next(e for e in REGISTRY if e.local_path == "scrfd/scrfd_2.5g_bnkps.onnx")
    body = (shared_dir / "models" / "scrfd_2.5g.onnx").read_bytes()
    hub = FakeHub()
    hub.add(entry, body)
    with hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        window = _open(qtbot, _settings(tmp_path))
        if not any(stage.name == "scrfd" for stage in window.engine.stages):
            pytest.skip("the face detection stage is not in this build")
        toggle = window.controls.stages["scrfd"]
        toggle.checkbox.click()
        qtbot.waitUntil(lambda: toggle.download.isVisibleTo(window), timeout=WAIT_MS)
        toggle.download.click()
        qtbot.waitUntil(lambda: any("are ready" in text for _level, text in window.messages), timeout=60_000)
    assert (window.settings.models_dir / entry.local_path).read_bytes() == body
    assert window.engine.stage("scrfd").enabled
    qtbot.waitUntil(lambda: window.latency.values("scrfd").size > 0, timeout=60_000)  # the stage runs now
    assert toggle.reason_text == ""
