"""The avatar video for WebRTC peers: one engine output fanned out to every peer's track.

The engine's output thread must never wait for the network, and a peer must never fall behind the engine: the
output keeps only the newest frame and schedules at most one delivery callback on the event loop
(``loop.call_soon_threadsafe``); each track keeps only the newest frame too. A slow peer therefore skips frames
instead of queueing them (queued frames are how WebRTC apps drift seconds behind).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from aiortc.mediastreams import VIDEO_CLOCK_RATE, VIDEO_TIME_BASE, MediaStreamError, VideoStreamTrack
from av import VideoFrame

from mirage_desktop.engine.frame import Frame
from mirage_desktop.engine.outputs import Output

logger = logging.getLogger(__name__)

#: A track repeats its last frame after this long without a new one, so the peer's decoder and the
#: connection stay alive while the engine is paused or slow.
REPEAT_AFTER_S = 1.0

FrameListener = Callable[[Frame], None]


class FrameFanout(Output):
    """The one engine output behind all WebRTC peers; listeners run on the event loop with the newest frame.

    ``send`` (engine output thread) stores the frame and schedules a delivery only when none is pending, so the
    loop's queue holds at most one callback whatever the engine's rate; frames that arrive meanwhile replace the
    stored one. Costs nothing while nobody listens.
    """

    name = "webrtc"

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._latest: Frame | None = None
        self._scheduled = False
        self._listeners: tuple[FrameListener, ...] = ()
        self.frames_delivered = 0
        self.frames_skipped = 0

    # ------------------------------------------------------------------------------------ engine output thread
    def send(self, frame: Frame) -> None:
        if not self._listeners:
            return
        if self._latest is not None:
            self.frames_skipped += 1
        self._latest = frame
        if not self._scheduled:
            self._scheduled = True
            try:
                self._loop.call_soon_threadsafe(self._deliver)
            except RuntimeError:  # the loop has closed: the server is stopping
                self._scheduled = False

    def stats(self) -> dict[str, Any]:
        return {"listeners": len(self._listeners), "frames_delivered": self.frames_delivered,
                "frames_skipped": self.frames_skipped}

    # ------------------------------------------------------------------------------------------ event loop only
    def add_listener(self, listener: FrameListener) -> None:
        self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: FrameListener) -> None:
        self._listeners = tuple(x for x in self._listeners if x is not listener)

    def _deliver(self) -> None:
        self._scheduled = False
        frame, self._latest = self._latest, None
        if frame is None:
            return
        self.frames_delivered += 1
        for listener in self._listeners:
            try:
                listener(frame)
            except Exception:
                logger.exception("WebRTC frame listener failed")


class EngineVideoTrack(VideoStreamTrack):
    """A peer's avatar video: the newest engine frame, bgr24, stamped on a 90 kHz clock.

    ``placeholder_size`` (width, height) is the black frame sent when no engine frame has arrived within
    ``REPEAT_AFTER_S`` of the peer connecting (engine not started yet).
    """

    def __init__(self, fanout: FrameFanout, placeholder_size: tuple[int, int] = (1280, 720)) -> None:
        super().__init__()
        self._fanout = fanout
        self._placeholder_size = placeholder_size
        self._image: np.ndarray | None = None
        self._fresh = asyncio.Event()
        self._t0: float | None = None
        self._last_pts = -1
        self.frames_sent = 0
        self.frames_repeated = 0
        self.on_echo: Callable[[int, int], None] | None = None  # (pts in, pts out); see mark()
        self._mark: tuple[np.ndarray, int] | None = None
        fanout.add_listener(self._on_frame)

    def mark(self, image: np.ndarray, in_pts: int) -> None:
        """Report through ``on_echo`` the pts this image goes out with: the remote-engine client matches its
        returned frames to the camera frames it sent (pts of its track) this way, for the round trip."""
        self._mark = (image, in_pts)

    def _on_frame(self, frame: Frame) -> None:
        self._image = frame.image  # read-only once published: keeping the reference is safe
        self._fresh.set()

    def _next_pts(self) -> int:
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        pts = int((now - self._t0) * VIDEO_CLOCK_RATE)
        if pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        return pts

    async def recv(self) -> VideoFrame:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        try:
            await asyncio.wait_for(self._fresh.wait(), REPEAT_AFTER_S)
        except asyncio.TimeoutError:
            self.frames_repeated += 1
        self._fresh.clear()
        image = self._image
        if image is None:
            w, h = self._placeholder_size
            image = self._image = np.zeros((h, w, 3), dtype=np.uint8)
        frame = VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = self._next_pts()
        frame.time_base = VIDEO_TIME_BASE
        self.frames_sent += 1
        mark = self._mark
        if mark is not None and mark[0] is image and self.on_echo is not None:
            self._mark = None
            self.on_echo(mark[1], frame.pts)
        return frame

    def stop(self) -> None:
        self._fanout.remove_listener(self._on_frame)
        super().stop()
