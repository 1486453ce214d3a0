"""The engine's typed stats: ``to_json()`` keeps the documented ``--stats-json`` shape, ``from_json`` reads it back,
and a dropped frame is counted once.

The key lists below are the documented format (README "--stats-json", /health, /metrics), written out here by hand:
the code under test does not produce them.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from engine_helpers import InvertStage, NumberedSource, SlowInvertStage

from mirage_desktop.engine.frame import Frame
from mirage_desktop.engine.outputs import CallbackOutput
from mirage_desktop.engine.pipeline import Engine
from mirage_desktop.engine.stage import Stage
from mirage_desktop.engine.stats import EngineStats
from mirage_desktop.api.metrics import EngineCollector, MetricsPage

TOP_LEVEL = ["source", "device", "frames_in", "frames_out", "dropped", "fps_in", "fps_out", "uptime_s", "stages",
             "end_to_end", "gpu_memory", "host_memory", "outputs", "backends"]
STAGE = ["enabled", "reason", "label", "p50_ms", "p95_ms", "p99_ms"]
LATENCY = ["p50_ms", "p95_ms", "p99_ms"]
GPU = ["torch_allocated_mb", "torch_reserved_mb", "device_used_mb", "device_total_mb", "available"]
WAIT_S = 20.0


class ReportingStage(Stage):
    """A stage with figures of its own, as the model stages have (the backend is what ``backends`` lists)."""

    name = "reporting"
    label = "Reporting"

    def process(self, frame: Frame) -> Frame:
        return frame

    def stats(self) -> dict[str, Any]:
        return {"backend": "onnxruntime cpu", "mode": "track", "faces": 1}


def test_to_json_has_the_documented_fields_in_their_order() -> None:
    source = NumberedSource(fps=200, count=12)
    engine = Engine(source, [InvertStage(enabled=True), ReportingStage(enabled=True), SlowInvertStage(0.01)],
                    device="cpu")
    received: list[Frame] = []
    engine.add_output(CallbackOutput(received.append, name="collector"))
    engine.start()
    assert engine.wait(WAIT_S)
    engine.stop(close_outputs=False)
    document = json.loads(json.dumps(engine.stats().to_json()))  # JSON-ready as it is

    assert list(document) == TOP_LEVEL
    assert document["source"] == "numbered" and document["device"] == "cpu"
    assert document["frames_in"] == 12 and document["frames_out"] == len(received)
    assert list(document["stages"]) == ["invert", "reporting", "slow"]
    assert list(document["stages"]["invert"]) == STAGE
    assert document["stages"]["invert"]["enabled"] is True and document["stages"]["invert"]["label"] == "Invert"
    assert list(document["stages"]["reporting"]) == [*STAGE, "backend", "mode", "faces"]  # its figures after ours
    assert list(document["stages"]["slow"]) == ["enabled", "reason", "label", "asynchronous", *LATENCY]
    assert document["stages"]["slow"]["asynchronous"] is True
    assert list(document["end_to_end"]) == LATENCY and document["end_to_end"]["p50_ms"] > 0
    assert list(document["gpu_memory"]) == GPU
    assert isinstance(document["host_memory"], dict)
    assert list(document["outputs"]) == ["collector"]
    assert document["backends"] == {"reporting": "onnxruntime cpu"}


def test_from_json_reads_the_document_back() -> None:
    engine = Engine(NumberedSource(fps=200, count=8), [ReportingStage(enabled=True)], every_frame=True)
    engine.start()
    assert engine.wait(WAIT_S)
    engine.stop()
    stats = engine.stats()
    document = json.loads(json.dumps(stats.to_json()))
    back = EngineStats.from_json(document)
    assert back.to_json() == document
    assert back.stages["reporting"].backend == "onnxruntime cpu"
    assert back.stages["reporting"].figures == {"backend": "onnxruntime cpu", "mode": "track", "faces": 1}
    assert back.frames_out == 8 and back.end_to_end == stats.end_to_end
    # a stage that reports its own latency (the remote stage: the round trip) is read as that latency
    entry = {"enabled": True, "reason": "", "label": "Remote", "p50_ms": 40.0, "p95_ms": 45.0, "p99_ms": 50.0,
             "connected": True}
    remote = EngineStats.from_json({**document, "stages": {"remote": entry}}).stages["remote"]
    assert (remote.latency.p50_ms, remote.latency.p95_ms) == (40.0, 45.0) and remote.figures == {"connected": True}
    assert remote.to_json() == entry


class GateStage(Stage):
    """Holds its first frame until ``release``; every later frame waits until the outputs got that first one, so
    only the capture slot can drop frames, and it drops every frame but the last while the gate is shut."""

    name = "gate"
    label = "Gate"

    def __init__(self) -> None:
        super().__init__(enabled=True)
        self.release = threading.Event()
        self.first_out = threading.Event()
        self._first = True

    def process(self, frame: Frame) -> Frame:
        if self._first:
            self._first = False
            assert self.release.wait(WAIT_S)
        else:
            assert self.first_out.wait(WAIT_S)
        return frame


def _capture_running() -> bool:
    return any(t.name == "mirage-capture" and t.is_alive() for t in threading.enumerate())


def test_a_dropped_frame_is_counted_once() -> None:
    source = NumberedSource(fps=100, count=21)
    gate = GateStage()
    engine = Engine(source, [gate])
    received: list[Frame] = []

    def deliver(frame: Frame) -> None:
        received.append(frame)
        gate.first_out.set()

    engine.add_output(CallbackOutput(deliver))
    engine.start()
    deadline = time.monotonic() + WAIT_S
    while _capture_running() and time.monotonic() < deadline:  # the whole clip is read while the gate is shut
        time.sleep(0.01)
    gate.release.set()
    assert engine.wait(WAIT_S)
    stats = engine.stats()
    # the oracle: what the source sent and the outputs received (the frame the gate held, and the newest one after
    # it, unless the gate's first frame was already the newest); every other frame was dropped, and counted once
    assert len(source.sent) == 21 and len(received) in (1, 2)
    dropped = len(source.sent) - len(received)
    assert stats.frames_in == 21 and stats.frames_out == len(received)
    assert stats.dropped == dropped and stats.to_json()["dropped"] == dropped
    metrics = MetricsPage(EngineCollector(engine, lambda: {})).render().decode()
    assert f"mirage_frames_dropped_total {float(dropped)}" in metrics.splitlines()
    engine.stop()
    engine.start()  # a new run counts its own drops (the clip is over: nothing more comes)
    assert engine.wait(WAIT_S)
    engine.stop()
    assert engine.stats().dropped == 0
