"""The voice arrives with the face: a real PulseAudio server, the engine with the virtual camera (at pyvirtualcam's
boundary) and the Mirage Microphone, and the offset of every flash to its click measured end to end
(tests/av_sync_helpers.py says how).

Cases: an added 150 ms stage delay (a stage that holds frames like a slow network while keeping the camera's rate)
and a delay that changes mid-run (100 ms, then 267 ms): once settled, |offset| P95 <= 15 ms, the goal. The avatar
off: the synthetic source's picture reaches the camera 0.2 ms after capture, faster than any sound chain (PortAudio
over PulseAudio needs about 45 ms from microphone to virtual microphone in 10 ms blocks), so the voice cannot be
given that delay; it must then play as early as the chain allows: never ahead of the face (offset >= -15 ms) and
behind it by less than EBU R37's 60 ms for late sound. (A real webcam's own 50-100 ms before Mirage sees a frame,
which no software measures, usually covers it.)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from av_sync_helpers import (
    CAMERA_BACKEND,
    MIC_SOURCE,
    ClickTrain,
    FifoDelayStage,
    FlashCamera,
    FlashSource,
    MicRecorder,
    PrivatePulseAudio,
    offsets,
    private_pulseaudio,
    pulseaudio_missing,
    register_camera,
    wait_for,
)

from mirage_desktop.audio.output import MicrophoneOutput
from mirage_desktop.audio.pulse import SOURCE_NAME, SoundServer
from mirage_desktop.audio.sync import VideoDelay
from mirage_desktop.engine.pipeline import Engine
from mirage_desktop.outputs.virtual_camera import VirtualCameraOutput

pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(pulseaudio_missing()), reason=pulseaudio_missing())]

PERIOD = 0.4  # a click and a flash every 0.4 s (longer than any delay here: each pairs with the next arrival)
SETTLE_S = 3.0  # the goal holds once settled (the issue: about 2 s)
GOAL_P95_S = 0.015
LATE_LIMIT_S = 0.060  # EBU R37: sound later than the picture by more is noticed


@pytest.fixture(scope="module")
def pulse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivatePulseAudio]:
    with private_pulseaudio(tmp_path_factory.mktemp("pulse")) as server:
        yield server


@pytest.fixture(autouse=True)
def flash_camera(monkeypatch: pytest.MonkeyPatch) -> None:
    register_camera(monkeypatch)


def run_case(seconds: float, stage: FifoDelayStage | None = None,
             change: tuple[float, float] | None = None) -> tuple[list[tuple[float, float]], dict[str, Any]]:
    """The engine (flash source, optional stage) into the virtual camera and the Mirage Microphone for
    ``seconds``; ``change``: (after how many seconds, new stage delay). Returns (time since start, offset) of each
    event, and the Mirage Microphone's stats at the end."""
    start = time.perf_counter() + 4.0  # the first click and flash: once the audio has started
    source = FlashSource(start, PERIOD)
    engine = Engine(source, [stage] if stage is not None else [])
    camera = VirtualCameraOutput(320, 240, 30.0, backend=CAMERA_BACKEND)
    microphone = MicrophoneOutput(MIC_SOURCE, VideoDelay(engine, lambda: camera), server=SoundServer())
    engine.start()
    try:
        camera.start()
        engine.add_output(camera)
        microphone.start()
        engine.add_output(microphone)
        assert wait_for(lambda: microphone.pipe.status == "running", 20.0), microphone.stats()
        with MicRecorder(SOURCE_NAME) as recorder, ClickTrain(start, PERIOD) as clicks:
            end = start + seconds
            if change is not None:
                time.sleep(max(0.0, start + change[0] - time.perf_counter()))
                assert stage is not None
                stage.delay = change[1]
            time.sleep(max(0.0, end - time.perf_counter()))
        stats = microphone.stats()
    finally:
        engine.stop()
    shows = FlashCamera.instances[-1].shows
    measured = offsets(clicks.clicks, recorder.arrivals, source.flashes, shows, window=PERIOD)
    assert len(measured) >= 0.8 * seconds / PERIOD, (len(measured), len(clicks.clicks), len(recorder.arrivals),
                                                    len(source.flashes), len(shows), stats)
    return [(flash - start, value) for flash, value in measured], stats


def assert_in_sync(measured: list[tuple[float, float]], after: float) -> None:
    settled = np.array([value for t, value in measured if t >= after])
    assert len(settled) >= 10
    p95 = float(np.percentile(np.abs(settled), 95))
    assert p95 <= GOAL_P95_S, f"|offset| P95 {p95 * 1000:.1f} ms; offsets (ms): {np.round(settled * 1000, 1)}"


def test_avatar_off_the_voice_plays_as_early_as_the_sound_chain_allows(pulse: PrivatePulseAudio) -> None:
    measured, stats = run_case(12.0)
    settled = np.array([value for t, value in measured if t >= SETTLE_S])
    assert len(settled) >= 15
    assert np.percentile(settled, 5) >= -GOAL_P95_S, np.round(settled * 1000, 1)  # never ahead of the face
    # and no later than the sound chain's own shortest delay, as the Mirage Microphone finds it while it plays
    assert np.percentile(settled, 95) <= stats["min_delay_ms"] / 1000 + GOAL_P95_S, (np.round(settled * 1000, 1),
                                                                                    stats)


def test_a_150_ms_stage_delays_the_voice_as_much(pulse: PrivatePulseAudio) -> None:
    measured, _ = run_case(12.0, FifoDelayStage(0.15))
    assert_in_sync(measured, SETTLE_S)


def test_a_delay_that_changes_mid_run_is_followed(pulse: PrivatePulseAudio) -> None:
    # not whole frame intervals (33 ms), where a flash's frame would come out one early or one late at random
    stage = FifoDelayStage(0.09)
    measured, _ = run_case(20.0, stage, change=(8.0, 0.24))
    assert_in_sync([m for m in measured if m[0] < 8.0], SETTLE_S)
    assert_in_sync(measured, 8.0 + SETTLE_S)
