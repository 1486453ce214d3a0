"""A remote peer as the engine's driving source: frames from its video track or from data-channel JPEGs.

Why the peer becomes the engine's *source* (instead of running its frames through the stages on a second
thread): the stages are stateful (face tracking, motion smoothing, one LivePortrait state) and the stage contract
says ``process`` runs on the engine's processing thread only. Feeding the peer's frames in as the source uses the
one engine, its latest-frame slots and its metrics unchanged; the processed frame is recognised on the way out by
its ``camera`` array (the very array this source delivered) and sent back to the peer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from mirage_desktop.engine.frame import Frame
from mirage_desktop.engine.slots import LatestSlot
from mirage_desktop.engine.sources import Source

logger = logging.getLogger(__name__)

#: While the peer sends nothing the engine gets the last frame again this often, so that a source switch (the
#: peer hung up) is never stuck behind a blocking read and the video does not freeze at the outputs.
REPEAT_INTERVAL_S = 0.5

#: How many delivered data-channel frames wait for their processed reply (the engine may drop some).
AWAITING_REPLIES = 4


class PeerSource(Source):
    """Frames pushed from the event loop (``push``), read by the engine's capture thread (``read``).

    A latest-frame slot joins the two: a peer that sends faster than the engine runs overwrites its unread frame.
    ``read`` never returns None (that would end the engine's stream): without a new frame it repeats the last one.
    """

    def __init__(self, peer_id: str, fps: float = 30.0) -> None:
        self.peer_id = peer_id
        self.name = f"webrtc:{peer_id}"
        self.fps = fps
        self._slot: LatestSlot[tuple[np.ndarray, Any]] = LatestSlot()
        self._last: np.ndarray | None = None
        self._awaiting: deque[tuple[np.ndarray, Any]] = deque(maxlen=AWAITING_REPLIES)
        self._awaiting_lock = threading.Lock()  # capture thread appends, event loop matches
        self.closed = False  # set when the engine let go of this source
        self.frames_pushed = 0
        self.frames_read = 0
        self.last_push = time.monotonic()

    # ------------------------------------------------------------------------------------------ event loop side
    def push(self, image: np.ndarray, reply_tag: Any = None) -> None:
        """Offer a frame (HxWx3 uint8 BGR, never written afterwards). ``reply_tag`` not None asks for the processed
        frame back (data-channel frames carry their ``seq`` here)."""
        self.frames_pushed += 1
        self.last_push = time.monotonic()
        self._slot.put((image, reply_tag))

    def take_reply_tag(self, frame: Frame) -> tuple[bool, Any]:
        """(True, tag) when ``frame`` was made from a data-channel frame of this source that still awaits its reply."""
        camera = frame.camera
        if camera is None:
            return False, None
        with self._awaiting_lock:
            for i, (image, tag) in enumerate(self._awaiting):
                if image is camera:
                    del self._awaiting[i]
                    return True, tag
        return False, None

    # -------------------------------------------------------------------------------------- capture thread side
    def open(self) -> None:
        if self.closed:  # opened again after the engine let go: forget what was waiting
            self._slot.reopen()
        self.closed = False

    def read(self) -> np.ndarray | None:
        item = self._slot.get(timeout=REPEAT_INTERVAL_S)
        if item is None:
            if self._last is None:  # nothing ever arrived (the switch raced the first frame): keep waiting
                item = self._slot.get(timeout=REPEAT_INTERVAL_S)
            if item is None:
                return self._last if self._last is not None else np.zeros((480, 640, 3), dtype=np.uint8)
        image, tag = item
        if tag is not None:
            with self._awaiting_lock:
                self._awaiting.append((image, tag))
        self._last = image
        self.frames_read += 1
        return image

    def close(self) -> None:
        self.closed = True
        self._slot.close()

    def describe(self) -> str:
        return self.name


async def pump_track(
    track: Any, on_image: Callable[[np.ndarray, int], None], wanted: Callable[[], bool] = lambda: True
) -> None:
    """Read a peer's incoming video track until it ends, handing each frame to ``on_image`` as BGR with its pts
    (aiortc's receiver counts the sender's 90 kHz timestamps from its first frame; the echo of :mod:`.tracks` uses it).

    Every frame is read at once (aiortc queues decoded frames without bound); while ``wanted()`` is False frames
    are read and dropped without the colour conversion.
    """
    from aiortc.mediastreams import MediaStreamError

    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:  # the peer hung up
            return
        if not wanted():
            continue
        try:
            image = frame.to_ndarray(format="bgr24")
        except Exception as exc:  # noqa: BLE001 -- a frame the converter rejects: skip it, keep the stream
            logger.debug("Dropping an incoming frame that cannot be converted: %s", exc)
            continue
        on_image(image, frame.pts)
