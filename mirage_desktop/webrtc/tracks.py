"""The avatar video for WebRTC peers: one engine output, one conversion per frame, fanned out to every peer's track.

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

import cv2
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


def bgr_to_yuv420p(image: np.ndarray) -> np.ndarray:
    """An even-sized bgr24 image as planar yuv420p (I420, ``(h * 3 // 2, w)``), what the VP8/H.264 encoders take.

    OpenCV's conversion uses the same BT.601 limited-range matrix as swscale's default (PyAV's ``reformat``): luma
    agrees within a level, chroma within 3 on camera pictures (its 2x2 subsampling filter differs from swscale's
    only on pixel-level detail). It is about ten times faster (SIMD), and the conversion is paid once per frame on
    each side of a remote engine's round trip.
    """
    return cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420)


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
        # ``==``, not ``is``: each ``obj.method`` access makes a new bound method, equal but never identical
        self._listeners = tuple(x for x in self._listeners if x != listener)

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


class SharedVideo:
    """The newest engine frame converted once for all peers' tracks.

    Every peer's encoder wants yuv420p. Converting each engine frame once (bgr24 -> yuv420p, the same PyAV
    conversion the encoder would do) and wrapping the pixels in a fresh ``VideoFrame`` per peer without a copy
    costs one conversion per tick whatever the number of peers, and each peer still owns its frame object: aiortc's
    encoders set ``pict_type`` on the frame they encode (on encoder threads), and each track stamps its own pts.
    Listens to the fan-out only while a track is subscribed.
    """

    def __init__(self, fanout: FrameFanout) -> None:
        self._fanout = fanout
        self._tracks: set[EngineVideoTrack] = set()
        self.image: np.ndarray | None = None  # the newest engine frame, read-only once published
        self._converted: np.ndarray | None = None  # the image ``_yuv`` was made from
        self._yuv: np.ndarray | None = None
        self.conversions = 0

    @property
    def subscribers(self) -> int:
        return len(self._tracks)

    def subscribe(self, track: EngineVideoTrack) -> None:
        if not self._tracks:
            self._fanout.add_listener(self._on_frame)
        self._tracks.add(track)

    def unsubscribe(self, track: EngineVideoTrack) -> None:
        if track not in self._tracks:
            return
        self._tracks.discard(track)
        if not self._tracks:
            self._fanout.remove_listener(self._on_frame)
            self.image = self._converted = self._yuv = None  # nobody watches: hold no frame

    def _on_frame(self, frame: Frame) -> None:
        self.image = frame.image
        for track in self._tracks:
            track.wake()

    def video_frame(self, image: np.ndarray) -> VideoFrame:
        """A new ``VideoFrame`` of ``image``, sharing the one yuv420p conversion of it with every other caller."""
        if image is not self._converted:
            h, w = image.shape[:2]
            if w % 2 or h % 2:  # yuv420p needs even sizes to wrap a buffer: convert per caller, as aiortc would
                return VideoFrame.from_ndarray(image, format="bgr24")
            self._yuv = bgr_to_yuv420p(image)
            self._converted = image
            self.conversions += 1
        assert self._yuv is not None
        return VideoFrame.from_numpy_buffer(self._yuv, format="yuv420p")


class EngineVideoTrack(VideoStreamTrack):
    """A peer's avatar video: the newest engine frame from :class:`SharedVideo`, stamped on a 90 kHz clock.

    ``placeholder_size`` (width, height) is the black frame sent when no engine frame has arrived within
    ``REPEAT_AFTER_S`` of the peer connecting (engine not started yet).
    """

    def __init__(self, shared: SharedVideo, placeholder_size: tuple[int, int] = (1280, 720)) -> None:
        super().__init__()
        self._shared = shared
        self._placeholder_size = placeholder_size
        self._placeholder: np.ndarray | None = None
        self._fresh = asyncio.Event()
        self._t0: float | None = None
        self._last_pts = -1
        self.frames_sent = 0
        self.frames_repeated = 0
        self.on_echo: Callable[[int, int], None] | None = None  # (pts in, pts out); see mark()
        self._mark: tuple[np.ndarray, int] | None = None
        shared.subscribe(self)

    def mark(self, image: np.ndarray, in_pts: int) -> None:
        """Report through ``on_echo`` the pts ``image`` goes out with on this track: the remote-engine client
        matches the avatar frames it gets back to the camera frames it sent (``in_pts``, its track's pts) this way,
        for the round trip. Event loop only."""
        self._mark = (image, in_pts)

    def wake(self) -> None:
        """A new engine frame is there (called on the event loop)."""
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

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        try:
            await asyncio.wait_for(self._fresh.wait(), REPEAT_AFTER_S)
        except asyncio.TimeoutError:
            self.frames_repeated += 1
        self._fresh.clear()
        image = self._shared.image
        if image is None:
            if self._placeholder is None:
                w, h = self._placeholder_size
                self._placeholder = np.zeros((h, w, 3), dtype=np.uint8)
            image = self._placeholder
        frame = self._shared.video_frame(image)
        frame.pts = self._next_pts()
        frame.time_base = VIDEO_TIME_BASE
        self.frames_sent += 1
        mark = self._mark
        if mark is not None and mark[0] is image and self.on_echo is not None:
            self._mark = None
            self.on_echo(mark[1], frame.pts)
        return frame

    def stop(self) -> None:
        self._shared.unsubscribe(self)
        super().stop()
