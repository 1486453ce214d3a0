"""What the voice follows: the virtual camera's shown age, the engine's figure without it, plus the remote round
trip while the remote's frames are shown. Stand-ins hold known figures; they are the oracle."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mirage_desktop.audio.sync import REMOTE_STAGE, VideoDelay, round_trip_while_shown
from mirage_desktop.engine.frame import Frame
from mirage_desktop.engine.metrics import LatencyWindow
from mirage_desktop.engine.pipeline import Engine
from mirage_desktop.engine.sources import DemoSource
from mirage_desktop.engine.stage import Stage


@dataclass
class Camera:
    shown_age: float | None
    running: bool = True


class RemoteStandIn(Stage):
    name = REMOTE_STAGE

    def process(self, frame: Frame) -> Frame:
        return frame


def test_the_camera_s_shown_age_first_then_the_engine_s_newest_figure() -> None:
    engine = Engine(DemoSource(64, 48))
    assert VideoDelay(engine)() is None  # no frame yet
    engine.metrics.end_to_end.add(0.020)
    engine.metrics.end_to_end.add(0.031)
    assert VideoDelay(engine)() == pytest.approx(0.031)
    camera = Camera(0.145)
    assert VideoDelay(engine, lambda: camera)() == pytest.approx(0.145)
    camera.running = False  # a camera that failed shows nothing: the engine's figure again
    assert VideoDelay(engine, lambda: camera)() == pytest.approx(0.031)


def test_the_round_trip_is_added_only_while_the_remote_s_frames_are_shown() -> None:
    stage = RemoteStandIn(enabled=True)
    window = LatencyWindow()
    figure = round_trip_while_shown([stage], window)
    assert figure() is None
    window.add(0.080)
    assert figure() == pytest.approx(0.080)
    engine = Engine(DemoSource(64, 48))
    delay = VideoDelay(engine, lambda: Camera(0.030), figure)
    assert delay() == pytest.approx(0.110)
    stage.reason = "pass-through: remote engine not connected"
    assert delay() == pytest.approx(0.030)
    assert round_trip_while_shown([], window)() is None  # no remote stage: nothing to add
