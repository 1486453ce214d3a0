"""The remote-engine client library and the server's /control endpoints, in process on the loopback.

A real engine behind a real HttpServer; a real RemoteClient (aiortc) or RemoteControl (urllib) talks to it. Waits
are bounded and never asserted on.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from engine_helpers import InvertStage

from mirage_desktop.config import Settings
from mirage_desktop.engine.pipeline import Engine
from mirage_desktop.engine.sources import DemoSource
from mirage_desktop.remote import client as client_module
from mirage_desktop.remote.client import RemoteClient
from mirage_desktop.remote.control import RemoteControl, RemoteControlError
from mirage_desktop.remote.target import RemoteUrlError, check_remote_url, is_loopback, parse_ice_server
from mirage_desktop.stages.factory import build_stages
from mirage_desktop.api import control as control_module
from mirage_desktop.api.server import HttpServer
from mirage_desktop.api.tls import server_ssl_context

W, H = 320, 240
TOKEN = "remote-test-token-51"
WAIT_S = 30.0


def until(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


@pytest.fixture()
def invert_server() -> Iterator[HttpServer]:
    engine = Engine(DemoSource(W, H, fps=15), [InvertStage(enabled=True)])
    engine.start()
    server = HttpServer(engine, Settings(output_width=W, output_height=H, token=TOKEN), host="127.0.0.1", port=0)
    server.start()
    yield server
    server.stop()
    engine.stop()


@pytest.fixture()
def model_server(tmp_path: Path, shared_dir: Path) -> Iterator[tuple[HttpServer, Settings]]:
    """The real model stages (off), with the real SCRFD model installed, so an uploaded portrait is checked."""
    models = tmp_path / "models"
    (models / "scrfd").mkdir(parents=True)
    shutil.copy(shared_dir / "models" / "scrfd_2.5g.onnx", models / "scrfd" / "scrfd_2.5g_bnkps.onnx")
    settings = Settings(output_width=W, output_height=H, token=TOKEN, models_dir=models,
                        avatar_dir=tmp_path / "avatars", device="cpu")
    engine = Engine(DemoSource(W, H, fps=15), build_stages(settings))
    server = HttpServer(engine, settings, host="127.0.0.1", port=0)
    server.start()
    yield server, settings
    server.stop()


def control_for(server: HttpServer, token: str = TOKEN) -> RemoteControl:
    return RemoteControl(check_remote_url(server.url), token)


# ------------------------------------------------------------------------------------------------ transport
def test_frames_go_up_through_the_remote_stages_and_come_back_with_round_trip_figures(
        invert_server: HttpServer) -> None:
    client = RemoteClient(check_remote_url(invert_server.url), TOKEN)
    client.start()
    try:
        value = 40
        deadline = time.monotonic() + WAIT_S
        returned = None
        while returned is None or client.round_trip.count < 10:
            assert time.monotonic() < deadline, f"no avatar frames came back: {client.stats().to_json()}"
            client.submit(np.full((H, W, 3), value, np.uint8), time.perf_counter())
            returned = client.latest(max_age_s=5.0)
            time.sleep(1 / 30)
        stats = client.stats()
    finally:
        client.stop()
    # the remote engine's stage ran on our frame: 255 - 40 (the video codec moves a flat picture by a few levels)
    assert abs(float(returned.mean()) - (255 - value)) < 8
    assert stats.connected and stats.frames_received > 0 and stats.reconnects == 0
    assert stats.round_trip_p50_ms is not None and stats.round_trip_p95_ms is not None
    assert 0 < stats.round_trip_p50_ms <= stats.round_trip_p95_ms
    assert stats.echo_unmatched <= 2  # the pts echo matches (at most a frame or two in flight at hang-up)
    assert set(stats.to_json()) >= {"url", "connected", "frames_received", "round_trip_p50_ms", "round_trip_p95_ms",
                                    "reconnects"}


def test_a_wrong_token_is_reported_and_nothing_comes_back(invert_server: HttpServer,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "AUTH_BACKOFF_S", 0.2)
    client = RemoteClient(check_remote_url(invert_server.url), "not-the-token")
    client.start()
    try:
        until(lambda: client.auth_error is not None, "the refusal")
        client.submit(np.zeros((H, W, 3), np.uint8), time.perf_counter())
        assert client.latest() is None
        assert "refused the token" in client.reason and "Wrong token" in client.reason
    finally:
        client.stop()
    with pytest.raises(RemoteControlError) as info:
        control_for(invert_server, "not-the-token").stages()
    assert info.value.status == 401


def test_urls_that_would_leak_the_token_are_refused() -> None:
    for url in ("http://gpu.example.com:8765", "http://192.168.1.20:8765"):
        with pytest.raises(RemoteUrlError, match="clear text"):
            check_remote_url(url)
        assert check_remote_url(url, insecure=True).base == url
    assert check_remote_url("http://127.0.0.1:8765/").base == "http://127.0.0.1:8765"
    assert check_remote_url("https://gpu.example.com").secure
    for url, needle in (("gpu.example.com:8765", "scheme"), ("ftp://127.0.0.1", "http:// or https://"),
                        ("https://user:pw@gpu.example.com", "--token")):
        with pytest.raises(RemoteUrlError, match=needle):
            check_remote_url(url)
    assert is_loopback("localhost") and is_loopback("127.8.0.1") and is_loopback("::1")
    assert not is_loopback("10.0.0.1") and not is_loopback("example.com")


def test_ice_servers_parse_stun_and_turn_with_credentials() -> None:
    stun = parse_ice_server("stun:stun.l.google.com:19302")
    assert stun.urls == "stun:stun.l.google.com:19302" and stun.username is None
    turn = parse_ice_server("turn:alice:s%40cret@turn.example.com:3478?transport=tcp")
    assert (turn.urls, turn.username, turn.credential) == ("turn:turn.example.com:3478?transport=tcp", "alice",
                                                            "s@cret")
    for bad in ("turn:turn.example.com:3478", "http://x", "stun:u:p@host"):
        with pytest.raises(RemoteUrlError):
            parse_ice_server(bad)


def test_https_is_verified_and_insecure_skips_the_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    engine = Engine(DemoSource(W, H, fps=15), [])
    server = HttpServer(engine, Settings(token=TOKEN), host="127.0.0.1", port=0)
    server.ssl_context = server_ssl_context(cert, key)
    server.start()
    try:
        assert server.url.startswith("https://")
        with pytest.raises(RemoteControlError, match="not trusted"):
            RemoteControl(check_remote_url(server.url), TOKEN).stages()
        assert RemoteControl(check_remote_url(server.url, insecure=True), TOKEN).stages() == {}
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the user's way to trust a self-signed certificate
        assert RemoteControl(check_remote_url(server.url), TOKEN).stages() == {}
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------------- controls
def test_stage_switches_models_and_stats_act_on_the_remote_engine(model_server: tuple[HttpServer, Settings]) -> None:
    server, _ = model_server
    control = control_for(server)
    stages = control.stages()
    assert set(stages) == {"scrfd", "liveportrait"} and not stages["scrfd"]["enabled"]
    after = control.set_stages(scrfd=True)
    assert after["scrfd"]["enabled"] and server.engine.stage("scrfd").enabled
    assert not after["liveportrait"]["enabled"]
    for bad, needle in (({"warpdrive": True}, "Unknown stage 'warpdrive'"), ({"scrfd": "yes"}, "true or false")):
        with pytest.raises(RemoteControlError, match=needle) as info:
            control.set_stages(**bad)
        assert info.value.status == 400
    models = control.models()["models"]
    assert models["liveportrait"]["reason"] == "off" and "avatar" in models["liveportrait"]
    assert set(control.stats()) >= {"stages", "end_to_end", "fps_out"}


def test_animation_options_and_recalibrate(model_server: tuple[HttpServer, Settings]) -> None:
    server, _ = model_server
    control = control_for(server)
    avatar = server.engine.stage("liveportrait")
    assert control.animation()["relative_motion"] is True
    assert control.set_animation(relative_motion=False, eyes="target", eye_target=0.25, smoothing=0)["eyes"] == "target"
    assert avatar.options.relative_motion is False and avatar.options.eye_target == 0.25  # type: ignore[attr-defined]
    for bad, needle in (({"warp": 1}, "Unknown animation option"), ({"relative_pose": "no"}, "use true or false"),
                        ({"fallback": "nothing"}, "fallback"), ({"eyes": "closed"}, "eyes")):
        with pytest.raises(RemoteControlError, match=needle):
            control.set_animation(**bad)
    avatar._reference = object()  # type: ignore[attr-defined]  # as if calibrated
    control.recalibrate()
    assert avatar._reference is None  # type: ignore[attr-defined]


def test_avatar_upload_checks_type_and_size_on_both_sides(model_server: tuple[HttpServer, Settings], tmp_path: Path,
                                                           shared_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server, settings = model_server
    control = control_for(server)
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    with pytest.raises(RemoteControlError, match="not a PNG, JPEG or WebP") as info:
        control.upload_avatar(text)  # refused here, before any upload
    assert info.value.status == 415
    # the server checks for itself too (a client that does not check)
    import urllib.error
    import urllib.request

    request = urllib.request.Request(server.url + "control/avatar", data=b"GIF89a....", method="POST",
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "image/png"})
    with pytest.raises(urllib.error.HTTPError) as http_error:
        urllib.request.urlopen(request, timeout=10)
    assert http_error.value.code == 415 and b"not a PNG, JPEG or WebP" in http_error.value.read()
    monkeypatch.setattr(control_module, "MAX_AVATAR_BYTES", 1000)  # the server's limit, and the client's below
    big = urllib.request.Request(server.url + "control/avatar", data=b"\x89PNG\r\n\x1a\n" + bytes(5000),
                                 method="POST", headers={"Authorization": f"Bearer {TOKEN}"})
    with pytest.raises(urllib.error.HTTPError) as http_error:
        urllib.request.urlopen(big, timeout=10)
    assert http_error.value.code == 413
    import mirage_desktop.remote.control as remote_control

    monkeypatch.setattr(remote_control, "MAX_AVATAR_BYTES", 1000)
    with pytest.raises(RemoteControlError, match="up to") as info:
        control.upload_avatar(shared_dir / "media" / "astronaut.png")
    assert info.value.status == 413
    monkeypatch.undo()
    # a real portrait: stored on the remote and checked there by the real face detector
    answer = control.upload_avatar(shared_dir / "media" / "astronaut.png")
    assert answer["kind"] == "png" and (settings.avatar_dir / answer["avatar"]).is_file()
    assert server.engine.stage("liveportrait").avatar_path.name == answer["avatar"]  # type: ignore[attr-defined]
    blank = tmp_path / "blank.png"
    import cv2

    cv2.imwrite(str(blank), np.full((200, 200, 3), 128, np.uint8))
    with pytest.raises(RemoteControlError, match="No face found") as info:
        control.upload_avatar(blank)
    assert info.value.status == 422
