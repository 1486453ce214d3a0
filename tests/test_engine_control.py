"""The two engine controls behind one interface, without a network: the local one on the real stages, the remote
one on a link whose figures are a real engine's ``/control/stats`` document (what the link's poller stores).

The window and the remote engine talking over the loopback are tests/test_remote_window.py's and
tests/test_remote_client.py's.
"""

from __future__ import annotations

import json
from pathlib import Path

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
