"""The Qt-free session both the window and ``mirage --headless`` run on: real engine, real server, real recorder.

The boundaries it cannot cross here are the v4l2 device (none on a CI machine: its start must fail cleanly) and the
models (absent: the stages say what to download).
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from mirage_desktop.config import Settings, bundled_avatar, load_settings
from mirage_desktop.engine.sources import DemoSource
from mirage_desktop.models.registry import download_hint
from mirage_desktop.session import Session, SessionClosed
from mirage_desktop.stages.avatar.stage import AvatarError
from mirage_desktop.stages.specs import STAGE_SPECS


def _settings(tmp_path: Path) -> Settings:
    settings = load_settings()  # the isolated test folders (conftest)
    settings.output_width, settings.output_height, settings.fps = 160, 120, 30.0
    settings.avatar_dir = tmp_path / "avatars"
    settings.device = "cpu"
    settings.http_port = 0  # a free port
    return settings


@pytest.fixture()
def session(tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = _settings(tmp_path)
    s = Session(settings, DemoSource(160, 120, 30.0, paced=False), remember=True)
    yield s
    s.close()


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def output_count(session: Session) -> int:
    return len(session.engine.outputs)


def test_stage_switches_reach_the_engine_and_the_settings(session: Session) -> None:
    for spec in STAGE_SPECS:
        session.control.set_stage_enabled(spec.name, True)
        assert session.engine.stage(spec.name).enabled and getattr(session.settings, spec.setting) is True
        session.control.set_stage_enabled(spec.name, False)
        assert not session.engine.stage(spec.name).enabled and getattr(session.settings, spec.setting) is False
    with pytest.raises(KeyError):
        session.control.set_stage_enabled("warpdrive", True)


def test_settings_choose_the_stages_at_start(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    settings.enable_scrfd = True
    s = Session(settings, DemoSource(160, 120, 30.0, paced=False))
    try:
        assert s.engine.stage("scrfd").enabled and not s.engine.stage("liveportrait").enabled
    finally:
        s.close()


def test_download_group_follows_the_status(session: Session) -> None:
    assert session.download_group("liveportrait") == "liveportrait"  # nothing asked yet: the stage's own group
    session.engine.stage("liveportrait").set_reason("needs face detection", "scrfd")
    assert session.download_group("liveportrait") == "scrfd"
    session.control.set_stage_enabled("scrfd", True)
    assert not session.engine.stage("scrfd").ensure_ready(block=True)  # no model in the test's models folder
    assert session.control.stage_status("scrfd").model_group == "scrfd" == session.download_group("scrfd")


def test_avatar_is_copied_kept_when_models_are_missing_and_bad_ones_leave_nothing(session: Session,
                                                                                  tmp_path: Path) -> None:
    portrait = tmp_path / "me.png"
    shutil.copy(bundled_avatar(), portrait)
    target = session.settings.avatar_dir / "me.png"
    path, note = session.set_avatar(portrait, copy_to=target)
    assert path == target and target.read_bytes() == portrait.read_bytes()
    assert download_hint("scrfd") in note  # the stage needs face detection to check the face
    assert session.settings.avatar == target

    bad = tmp_path / "broken.png"
    bad.write_text("not a picture", encoding="utf-8")
    with pytest.raises(AvatarError, match="broken.png"):
        session.set_avatar(bad, copy_to=session.settings.avatar_dir / "broken.png")
    assert not (session.settings.avatar_dir / "broken.png").exists()
    assert session.settings.avatar == target

    session.set_avatar(bundled_avatar())
    assert session.settings.avatar is None  # the bundled portrait is the default, not a saved choice


def test_rotated_token_applies_to_the_running_server_at_once(session: Session) -> None:
    session.settings.token = ""
    assert session.ensure_token() is True and session.ensure_token() is False
    old = session.settings.token
    server = session.start_http()
    assert session.settings.http_enabled is True
    status, body = _get(server.url + "health")
    assert status == 200 and json.loads(body)
    assert _get(server.url + "webrtc/connections", old)[0] == 200
    new = session.rotate_token()
    assert new != old and session.settings.token == new
    assert _get(server.url + "webrtc/connections", old)[0] == 401
    assert _get(server.url + "webrtc/connections", new)[0] == 200
    session.stop_http()
    assert session.server is None and session.settings.http_enabled is False
    with pytest.raises(OSError):
        _get(server.url + "health")  # nothing listens any more


def test_recorder_writes_what_the_engine_sends(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    s = Session(settings, DemoSource(160, 120, 30.0, paced=False), every_frame=True, max_frames=12)
    video = tmp_path / "out.mp4"
    s.start_recorder(video, keep_every_frame=True)
    s.start()
    assert s.engine.wait(30)
    s.close()  # finishes the file
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == 12 and frames[0].shape == (120, 160, 3)
    assert np.mean(frames[0]) > 5  # the demo picture, not black


def test_virtual_camera_failure_is_clean_and_not_remembered(session: Session) -> None:
    try:
        output = session.start_virtual_camera()
    except Exception as exc:  # no v4l2loopback device on this machine: the boundary
        assert str(exc)  # says what to install
        assert session.virtual_camera is None and session.settings.virtual_camera is False
        assert session.virtual_camera_status() == ("Off", False)
        assert output_count(session) == 0
    else:  # a machine with a virtual camera
        assert session.virtual_camera is output and session.settings.virtual_camera is True
        session.stop_virtual_camera()
        assert session.settings.virtual_camera is False


def test_headless_sessions_leave_the_output_switches_alone_and_close_is_final(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    s = Session(settings, DemoSource(160, 120, 30.0, paced=False))  # remember=False, as headless
    server = s.start_http()
    assert settings.http_enabled is False
    s.close()
    s.close()  # idempotent
    assert s.server is None
    with pytest.raises(OSError):
        _get(server.url + "health")
    with pytest.raises(SessionClosed):
        s.start_recorder(tmp_path / "late.mp4")
    assert output_count(s) == 0


def test_recalibrate_says_what_it_did(session: Session) -> None:
    level, text = session.control.recalibrate()
    assert level == "info" and "Ctrl+2" in text  # Animate is off
    session.control.set_stage_enabled("liveportrait", True)
    assert session.control.recalibrate() == ("info", "Recalibrated: your current pose is the neutral pose now.")
