import threading
import time

import numpy as np
import pytest

from engine_helpers import FailingStage, InvertStage, NumberedSource, SleepStage
from mirage_desktop.engine.frame import Frame
from mirage_desktop.engine.outputs import CallbackOutput
from mirage_desktop.engine.pipeline import MAX_CONSECUTIVE_FAILURES, Engine
from mirage_desktop.engine.slots import LatestSlot
from mirage_desktop.engine.sources import DemoSource


def collect(engine: Engine) -> list[Frame]:
    frames: list[Frame] = []
    engine.add_output(CallbackOutput(frames.append))
    return frames


def test_latest_slot_replaces_unread_items_and_counts_drops() -> None:
    slot: LatestSlot[int] = LatestSlot()
    assert slot.put(1) is True
    assert slot.put(2) is False
    assert slot.get(0) == 2
    assert slot.get(0.01) is None
    assert slot.dropped == 1


def test_frames_pass_through_bit_identical() -> None:
    source = NumberedSource(fps=200, count=40)
    engine = Engine(source, every_frame=True)
    frames = collect(engine)
    engine.start()
    assert engine.wait(10)
    engine.stop()
    assert len(frames) == 40
    for sent, got in zip(source.sent, frames):
        assert got.image is sent or np.array_equal(got.image, sent)
        assert got.image.dtype == np.uint8 and not got.image.flags.writeable
    assert [f.index for f in frames] == list(range(40))


def test_slow_stage_drops_frames_instead_of_building_delay() -> None:
    source = NumberedSource(fps=60)
    engine = Engine(source, [SleepStage(0.1)])  # 10 fps stage behind a 60 fps source
    frames = collect(engine)
    engine.start()
    time.sleep(2.0)
    engine.stop()
    stats = engine.stats()
    assert stats["dropped"] > 0.5 * stats["frames_in"]
    assert 5 <= len(frames) <= 25
    # latency stays bounded: no frame waited behind a queue of stale ones
    late = [f for f in frames[3:]]
    assert stats["end_to_end"]["p99_ms"] < 500, stats["end_to_end"]
    assert all(b.index - a.index >= 2 for a, b in zip(late, late[1:]))


def test_failing_stage_keeps_video_going_and_disables_itself() -> None:
    source = NumberedSource(fps=100, count=30)
    failing = FailingStage()
    engine = Engine(source, [failing], every_frame=True)
    messages: list[tuple[str, str]] = []
    engine.add_listener(lambda level, msg: messages.append((level, msg)))
    frames = collect(engine)
    engine.start()
    assert engine.wait(10)
    engine.stop()
    assert len(frames) == 30  # every frame still came out
    assert failing.calls == MAX_CONSECUTIVE_FAILURES
    assert failing.enabled is False
    assert "model exploded" in failing.reason and "disabled after" in failing.reason
    assert any(level == "error" and "model exploded" in msg for level, msg in messages)
    assert engine.stats()["stages"]["failing"]["reason"] == failing.reason


def test_toggling_from_other_threads_under_load_is_safe() -> None:
    source = NumberedSource(fps=300, size=(160, 120))
    invert = InvertStage()
    engine = Engine(source, [invert])
    frames = collect(engine)
    engine.start()
    stop = threading.Event()

    def flip() -> None:
        on = False
        while not stop.is_set():
            on = not on
            engine.set_stage_enabled("invert", on)
            time.sleep(0.0002)  # a busy loop would only measure GIL starvation

    threads = [threading.Thread(target=flip) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    stop.set()
    for t in threads:
        t.join()
    engine.set_stage_enabled("invert", True)
    n = len(frames)
    deadline = time.time() + 5
    while len(frames) < n + 5 and time.time() < deadline:
        time.sleep(0.01)
    engine.stop()
    assert engine.stats()["frames_out"] > 20
    assert invert.seen > 0
    # after the final "on", the output is the inverted camera frame
    last = frames[-1]
    assert np.array_equal(last.image, 255 - last.camera)


def test_lost_camera_falls_back_to_demo() -> None:
    source = NumberedSource(fps=100, lose_after=5)
    engine = Engine(source, fallback_source=lambda: DemoSource(160, 120, 30))
    messages: list[str] = []
    engine.add_listener(lambda level, msg: messages.append(msg))
    frames = collect(engine)
    engine.start()
    deadline = time.time() + 5
    while len(frames) < 20 and time.time() < deadline:
        time.sleep(0.02)
    engine.stop()
    assert source.closed
    assert frames[-1].image.shape == (120, 160, 3)
    assert any("stopped delivering" in m and "demo" in m for m in messages)


def test_unknown_stage_name_is_a_clear_error() -> None:
    engine = Engine(NumberedSource())
    with pytest.raises(KeyError, match="Unknown stage 'nope'"):
        engine.set_stage_enabled("nope", True)
