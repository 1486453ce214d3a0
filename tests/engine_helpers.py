"""Test-only sources and stages (a camera stand-in that numbers its frames; stages with known behaviour)."""

from __future__ import annotations

import threading
import time

import numpy as np

from mirage_desktop.engine.frame import Frame
from mirage_desktop.engine.sources import Pacer, Source, SourceLost
from mirage_desktop.engine.stage import Stage


class NumberedSource(Source):
    """Random frames whose first pixel row encodes the index; stands in for a webcam (the boundary we cannot cross)."""

    def __init__(self, fps: float = 30.0, size: tuple[int, int] = (64, 48), count: int | None = None,
                 lose_after: int | None = None) -> None:
        self.fps = fps
        self.size = size
        self.count = count
        self.lose_after = lose_after
        self.name = "numbered"
        self.sent: list[np.ndarray] = []
        self._pacer = Pacer(fps)
        self._rng = np.random.default_rng(0)
        self.closed = False

    def open(self) -> None:
        self._pacer = Pacer(self.fps)

    def read(self) -> np.ndarray | None:
        if self.count is not None and len(self.sent) >= self.count:
            return None
        if self.lose_after is not None and len(self.sent) >= self.lose_after:
            raise SourceLost("Camera 7 stopped delivering frames (unplugged).")
        self._pacer.wait()
        w, h = self.size
        img = self._rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        self.sent.append(img)
        return img

    def close(self) -> None:
        self.closed = True


class SleepStage(Stage):
    name = "sleepy"
    label = "Sleepy"

    def __init__(self, seconds: float, enabled: bool = True) -> None:
        super().__init__(enabled)
        self.seconds = seconds

    def process(self, frame: Frame) -> Frame:
        time.sleep(self.seconds)
        return frame


class FailingStage(Stage):
    name = "failing"
    label = "Failing"

    def __init__(self, enabled: bool = True) -> None:
        super().__init__(enabled)
        self.calls = 0

    def process(self, frame: Frame) -> Frame:
        self.calls += 1
        raise ValueError("model exploded")


class InvertStage(Stage):
    """Returns a new image (never writes the input): 255 - image."""

    name = "invert"
    label = "Invert"

    def __init__(self, enabled: bool = False) -> None:
        super().__init__(enabled)
        self.seen = 0
        self.lock = threading.Lock()

    def process(self, frame: Frame) -> Frame:
        self.seen += 1
        frame.image = 255 - frame.image
        return frame


class SlowInvertStage(Stage):
    """An asynchronous stage much slower than the camera: sleeps, then returns 255 - image (a new array). Records
    what it saw (index, capture time, the face the stage before it attached, its thread) for the tests to check."""

    name = "slow"
    label = "Slow"
    asynchronous = True

    def __init__(self, seconds: float, enabled: bool = True) -> None:
        super().__init__(enabled)
        self.seconds = seconds
        self.seen: list[tuple[int, float, object, str]] = []
        self.done: list[int] = []  # indices whose result was returned

    def process(self, frame: Frame) -> Frame:
        self.seen.append((frame.index, frame.t_capture, frame.face, threading.current_thread().name))
        time.sleep(self.seconds)
        frame.image = 255 - frame.image
        self.done.append(frame.index)
        return frame


class TagFaceStage(Stage):
    """Stands in for the face stage: attaches a marker naming the frame it came from as ``frame.face``."""

    name = "tag"
    label = "Tag"

    def process(self, frame: Frame) -> Frame:
        frame.face = ("face of", frame.index)  # type: ignore[assignment]  # a marker, not a Face: only compared
        frame.face_checked = True
        return frame
