"""The two engine controls behind one interface, without a network: the local one on the real stages, the remote
one on a link whose figures are a real engine's ``/control/stats`` document (what the link's poller stores).

The window and the remote engine talking over the loopback are tests/test_remote_window.py's and
tests/test_remote_client.py's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine_helpers import InvertStage, NumberedSource

from mirage_desktop.config import Settings
from mirage_desktop.control.engine_control import EngineControl
from mirage_desktop.control.local_engine import LocalEngine
from mirage_desktop.control.remote_engine import RemoteEngine
from mirage_desktop.engine.pipeline import Engine
from mirage_desktop.engine.sources import DemoSource
from mirage_desktop.engine.stats import EngineStats
from mirage_desktop.remote.link import RemoteLink
from mirage_desktop.remote.target import check_remote_url

URL = "http://127.0.0.1:9"  # never contacted: the link's client is not started


def remote_figures() -> EngineStats:
    """A real engine's ``/control/stats`` document, read back as the link's poller reads it."""
    engine = Engine(NumberedSource(fps=200, count=6), [InvertStage(enabled=True)], every_frame=True)
    engine.start()
    assert engine.wait(20)
    engine.stop()
    return EngineStats.from_json(json.loads(json.dumps(engine.stats().to_json())))


def test_remote_control_shows_the_remote_stages_and_its_link() -> None:
    link = RemoteLink(check_remote_url(URL), "token")
    control: EngineControl = RemoteEngine(link, DemoSource(64, 48, 30), lambda: DemoSource(64, 48, 30))
    assert control.blocking and control.avatar_stage is None and control.face_stage is None
    assert [stage.name for stage in control.engine.stages] == ["remote"]
    assert control.has_stage("scrfd") and control.has_stage("liveportrait") and not control.has_stage("invert")
    status = control.stage_status("scrfd")
    assert (status.state, status.reason, status.model_group) == ("loading", "waiting for the remote engine", None)
    assert control.status_text() == "Remote: connecting..."
    assert control.refusal() is None and "--backend" in control.inference_note()

    before = control.stats()
    assert list(before.stages) == ["remote"] and before.stages["remote"].label == "Round trip"
    assert "remote_stages" not in control.link_stats().to_json()  # type: ignore[union-attr]

    remote = remote_figures()
    link.client.remote_stats = remote
    link.client.remote_stages = {"scrfd": {"enabled": True, "reason": "needs its model", "state": "unavailable"}}
    stats = control.stats()
    assert list(stats.stages) == ["remote", "invert"]
    invert = stats.stages["invert"]
    assert invert.label == "Invert (remote)" and invert.latency == remote.stages["invert"].latency
    assert stats.backends == {}  # what runs here: the remote's backends are its own
    assert control.stage_enabled("scrfd") and not control.stage_enabled("liveportrait")
    status = control.stage_status("scrfd")
    assert (status.state, status.reason) == ("unavailable", "needs its model (on the remote engine)")
    block = control.link_stats().to_json()  # type: ignore[union-attr]
    assert block["url"] == URL and block["connected"] is False and block["remote_device"] == "cpu"
    assert block["remote_stages"] == {"invert": {"enabled": True, "reason": "",
                                                 "p50_ms": remote.stages["invert"].latency.p50_ms,
                                                 "p95_ms": remote.stages["invert"].latency.p95_ms}}
    assert block["remote_end_to_end"] == remote.end_to_end.to_json()

    link.client.auth_error = "Wrong token"
    assert "refused the token (Wrong token)" in (control.refusal() or "")
    control.close()
    link.client.frames_received = 99  # after the close: the block stays as the run ended
    assert control.link_stats().frames_received == 0  # type: ignore[union-attr]


def test_local_control_switches_the_stages_and_remembers_them(tmp_path: Path) -> None:
    settings = Settings(output_width=64, output_height=48, models_dir=tmp_path / "no-models", device="cpu",
                        enable_scrfd=True)
    control: EngineControl = LocalEngine(settings, DemoSource(64, 48, 30))
    try:
        assert not control.blocking and control.link_stats() is None and control.refusal() is None
        assert control.status_text() == "CPU" and control.inference_note() == ""
        assert control.stage_enabled("scrfd") and not control.stage_enabled("liveportrait")  # as the settings say
        control.set_stage_enabled("liveportrait", True)
        assert control.engine.stage("liveportrait").enabled and settings.enable_liveportrait is True
        assert control.face_stage is control.engine.stage("scrfd")
        assert control.avatar_stage is control.engine.stage("liveportrait")
        assert list(control.stats().stages) == ["scrfd", "liveportrait"]
    finally:
        control.close()


def test_a_remote_session_with_saved_animation_options_opens_without_the_network(tmp_path: Path) -> None:
    """The window builds its session on the GUI thread: nothing there may wait for a remote engine, even one that
    is down, while the settings hold Animation options other than the defaults."""
    from mirage_desktop.animation_options import AnimationOptions
    from mirage_desktop.session import Session

    settings = Settings(output_width=64, output_height=48, models_dir=tmp_path / "no-models", device="cpu",
                        remote_url=URL, remote_token="token")
    settings.animation = AnimationOptions(eyes="target", smoothing=0.0)
    link = RemoteLink.from_settings(settings)
    assert link is not None
    session = Session(settings, DemoSource(64, 48, 30), remote=link)  # port 9: nothing listens
    assert session.control.blocking
    session.close()


def test_a_remote_engine_gets_the_saved_animation_options_when_it_starts_processing(tmp_path: Path) -> None:
    """A real remote engine on the loopback, at its defaults; our session's options reach it once its frames
    flow, and again when a session begins anew (an engine that restarted has its defaults back)."""
    import time

    from mirage_desktop.animation_options import AnimationOptions
    from mirage_desktop.api.server import HttpServer
    from mirage_desktop.session import Session
    from mirage_desktop.stages.factory import build_stages

    token = "control-animation-token"
    remote_settings = Settings(output_width=160, output_height=120, token=token, models_dir=tmp_path / "none",
                               avatar_dir=tmp_path / "avatars", device="cpu")
    remote_engine = Engine(DemoSource(160, 120, fps=15), build_stages(remote_settings))
    remote_engine.start()
    server = HttpServer(remote_engine, remote_settings, host="127.0.0.1", port=0)
    server.start()
    stage = remote_engine.stage("liveportrait")
    chosen = AnimationOptions(eyes="target", lips="target", smoothing=0.0, relative_motion=False)
    assert stage.options == AnimationOptions() != chosen  # type: ignore[attr-defined]
    settings = Settings(output_width=160, output_height=120, remote_url=server.url.rstrip("/"), remote_token=token,
                        models_dir=tmp_path / "none", device="cpu")
    settings.animation = chosen
    link = RemoteLink.from_settings(settings)
    assert link is not None
    session = Session(settings, DemoSource(160, 120, fps=15), remote=link)

    def until(condition: Any, what: str) -> None:
        deadline = time.monotonic() + 60.0
        while not condition():
            assert time.monotonic() < deadline, f"gave up waiting for {what}"
            time.sleep(0.05)

    try:
        session.engine.start()
        until(lambda: stage.options == chosen, "the remote stage to take the saved options")  # type: ignore[attr-defined]
        stage.set_options(**AnimationOptions().to_json())  # type: ignore[attr-defined]  # as a restarted engine
        assert link.client.on_processing is not None
        link.client.on_processing()  # what the link calls when a session begins processing again
        until(lambda: stage.options == chosen, "the options to be told again")  # type: ignore[attr-defined]
    finally:
        session.close()
        server.stop()
        remote_engine.stop()


def test_the_local_avatar_starts_with_the_saved_animation_options(tmp_path: Path) -> None:
    from mirage_desktop.animation_options import AnimationOptions

    settings = Settings(output_width=64, output_height=48, models_dir=tmp_path / "no-models", device="cpu")
    settings.animation = AnimationOptions(eyes="target", lips="target", smoothing=0.0)
    control: EngineControl = LocalEngine(settings, DemoSource(64, 48, 30))
    assert control.avatar_stage is not None and control.avatar_stage.options == settings.animation
    changed = settings.animation.replace(eyes="off")
    control.set_animation(changed)  # returns at once: the stage takes it on its next frame
    assert control.avatar_stage.options == changed
    control.close()


def test_a_session_beginning_never_waits_for_an_animation_change_in_flight() -> None:
    """The link calls ``on_processing`` on its event loop, which carries the video: it must not wait while a user's
    change is still crossing the network. The remote's controls are replaced at the network boundary by one whose
    PUT waits for a gate."""
    import threading

    from mirage_desktop.animation_options import AnimationOptions

    link = RemoteLink(check_remote_url(URL), "token")
    control = RemoteEngine(link, DemoSource(64, 48, 30), lambda: DemoSource(64, 48, 30))
    gate, sent = threading.Event(), []

    def slow_put(**changes: Any) -> dict[str, Any]:
        assert gate.wait(30)
        sent.append(changes)
        return changes

    link.control.set_animation = slow_put  # type: ignore[method-assign]
    chosen = AnimationOptions(eyes="target")
    user = threading.Thread(target=control.set_animation, args=(chosen,))
    user.start()
    began = threading.Thread(target=link.client.on_processing)
    began.start()
    began.join(10)
    assert not began.is_alive() and user.is_alive()  # returned while the user's PUT still waits
    gate.set()
    user.join(10)
    for thread in [t for t in threading.enumerate() if t.name == "remote-animation"]:
        thread.join(10)  # the new session's telling
    assert sent[0] == chosen.to_json()  # nothing was told before: the whole set
    assert sent[1] == chosen.to_json()  # the new session: the whole set again
    control.close()
