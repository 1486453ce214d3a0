import threading
import time

import numpy as np
import pytest

from engine_helpers import FailingStage, InvertStage, NumberedSource, SleepStage, SlowInvertStage, TagFaceStage
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
    assert stats.dropped > 0.5 * stats.frames_in
    assert 5 <= len(frames) <= 25
    # latency stays bounded: no frame waited behind a queue of stale ones
    late = [f for f in frames[3:]]
    assert stats.end_to_end.p99_ms is not None and stats.end_to_end.p99_ms < 500, stats.end_to_end
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
    assert engine.stats().stages["failing"].reason == failing.reason


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
    assert engine.stats().frames_out > 20
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


def test_the_source_changes_only_through_set_source() -> None:
    """One path for the source (a user's choice, a driving peer, the lost-camera fallback): no caller assigns it."""
    engine = Engine(NumberedSource())
    with pytest.raises(AttributeError):
        engine.source = DemoSource(160, 120, 30)  # type: ignore[misc]
    demo = DemoSource(160, 120, 30)
    engine.set_source(demo)  # before the start: taken at once
    assert engine.source is demo


def test_unknown_stage_name_is_a_clear_error() -> None:
    engine = Engine(NumberedSource())
    with pytest.raises(KeyError, match="Unknown stage 'nope'"):
        engine.set_stage_enabled("nope", True)


# ------------------------------------------------------------------------------------------ asynchronous stages
def wait_for(cond, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.time() + timeout
    while not cond() and time.time() < deadline:
        time.sleep(0.01)
    return bool(cond())


def classify(frames: list[Frame], sent: list[np.ndarray]) -> list[int | None]:
    """Per output frame: None when it shows its own camera frame (pass-through), else the index of the source
    frame whose inverted image it shows (an oracle computed here, independent of the engine)."""
    inverted = {i: 255 - img for i, img in enumerate(sent)}
    out: list[int | None] = []
    for f in frames:
        if np.array_equal(f.image, f.camera):
            out.append(None)
            continue
        match = next((i for i in range(f.index, -1, -1) if np.array_equal(f.image, inverted[i])), -1)
        out.append(match)
    return out


def test_async_stage_keeps_the_source_rate_and_shows_its_latest_result() -> None:
    source = NumberedSource(fps=40)
    slow = SlowInvertStage(0.25)
    engine = Engine(source, [TagFaceStage(enabled=True), slow])
    frames = collect(engine)
    engine.start()
    assert wait_for(lambda: len(slow.done) >= 5, 20)
    engine.stop()
    shown = classify(frames, source.sent)
    assert -1 not in shown  # every frame shows its own camera or an inverted earlier frame
    first = next(i for i, s in enumerate(shown) if s is not None)
    assert all(s is None for s in shown[:first])  # pass-through until the first result exists ...
    assert all(s is not None for s in shown[first:])  # ... and from then on the latest result, every frame
    # the video kept going while the stage computed: many more frames out than the stage made
    assert len(frames) >= 4 * len(slow.done)
    # each result is shown until the next one: the results appear in order, each a frame the stage processed
    results = [s for s in shown[first:]]
    assert results == sorted(results) and set(results) <= set(slow.done)
    # the stage ran on its own thread, fed the face of the very frame it processed (by the stage before it)
    assert all(face == ("face of", index) and thread == "mirage-stage-slow" for index, _, face, thread in slow.seen)
    # handed the newest frame whenever idle, never a queue: consecutive jobs are several frames apart
    assert all(b[0] - a[0] >= 3 for a, b in zip(slow.seen, slow.seen[1:]))
    # the shown content's age is measured from the frame the stage computed on
    t_of = {index: t for index, t, _, _ in slow.seen}
    for f, s in zip(frames[first:], shown[first:]):
        assert f.t_content == t_of[s] and f.t_content <= f.t_capture
    stats = engine.stats()
    entry = stats.stages["slow"]
    assert entry.asynchronous is True and entry.to_json()["asynchronous"] is True
    # the stage's latency is its compute time (sleep never returns early)
    assert entry.latency.p50_ms is not None and entry.latency.p50_ms >= 250.0
    assert engine.metrics.stage("slow").count == len(slow.done)
    assert stats.end_to_end.p50_ms is not None and stats.end_to_end.p50_ms >= 250.0  # content at least one compute old


def test_async_stage_failures_pass_through_and_switch_it_off() -> None:
    source = NumberedSource(fps=60)
    failing = FailingStage()
    failing.asynchronous = True
    engine = Engine(source, [failing])
    messages: list[tuple[str, str]] = []
    engine.add_listener(lambda level, msg: messages.append((level, msg)))
    frames = collect(engine)
    engine.start()
    assert wait_for(lambda: not failing.enabled)
    n = len(frames)
    assert wait_for(lambda: len(frames) >= n + 10)
    engine.stop()
    assert failing.calls == MAX_CONSECUTIVE_FAILURES
    assert "disabled after" in failing.reason and "model exploded" in failing.reason
    assert any(level == "error" and "model exploded" in msg for level, msg in messages)
    assert all(np.array_equal(f.image, f.camera) for f in frames)  # every frame passed through


def test_disabling_an_async_stage_passes_through_at_once() -> None:
    source = NumberedSource(fps=40)
    slow = SlowInvertStage(0.4)
    engine = Engine(source, [slow])
    frames = collect(engine)
    engine.start()
    assert wait_for(lambda: len(slow.done) >= 1 and len(slow.seen) >= 2)  # a result shown, the next one computing
    assert wait_for(lambda: frames and not np.array_equal(frames[-1].image, frames[-1].camera))
    engine.set_stage_enabled("slow", False)
    captured = len(source.sent)
    computed = len(slow.done)
    assert wait_for(lambda: len(slow.done) > computed)  # the frame in flight finished while the stage was off ...
    n = len(frames)
    assert wait_for(lambda: len(frames) >= n + 10)
    engine.stop()
    late = [f for f in frames if f.index > captured + 1]  # processed after the switch (one frame may be in a slot)
    assert late and all(np.array_equal(f.image, f.camera) and f.t_content is None for f in late)  # ... not shown


def test_every_frame_mode_runs_an_async_stage_inline_on_every_frame() -> None:
    source = NumberedSource(fps=200, count=12)
    slow = SlowInvertStage(0.02)
    engine = Engine(source, [slow], every_frame=True)
    frames = collect(engine)
    engine.start()
    assert engine.wait(20)
    engine.stop()
    assert [f.index for f in frames] == list(range(12)) and slow.done == list(range(12))
    assert all(np.array_equal(f.image, 255 - sent) for f, sent in zip(frames, source.sent))
    assert {thread for *_, thread in slow.seen} == {"mirage-process"}
    assert "asynchronous" not in engine.stats().stages["slow"].to_json()
