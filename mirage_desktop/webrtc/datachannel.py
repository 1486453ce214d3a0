"""The data-channel protocol: JSON text messages, with camera frames in and processed frames out as base64 JPEGs.

A peer sends ``{"type": "frame", "image_jpeg_base64": ..., "seq": n}`` to drive the engine and gets
``{"type": "frame", "image_jpeg_base64", "width", "height", "index", "seq"}`` back once the engine processed it;
``{"type": "stats"}`` answers ``{"type": "stats", "stats": {...}}``; every mistake answers
``{"type": "error", "status", "error"}``. JPEG decoding and encoding run on a small thread pool, one at a time
per direction and peer, through :class:`LatestWins`: a peer that sends faster than the codecs keep up loses its
older frames instead of queueing them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Generic, TypeVar

import cv2
import numpy as np
from aiortc import RTCDataChannel

from mirage_desktop.engine.frame import Frame
from mirage_desktop.webrtc.errors import BadRequest

logger = logging.getLogger(__name__)

#: Largest accepted data-channel message: what aiortc advertises as its SCTP max-message-size.
MAX_MESSAGE_BYTES = 256 * 1024
#: Stop sending frame replies while this much is still queued on the data channel.
MAX_BUFFERED_BYTES = 4 * 2**20
#: A processed frame sent back must fit the peer's max-message-size (256 KiB in browsers and aiortc).
MAX_REPLY_BYTES = 250_000
#: JPEG qualities tried in turn until a reply fits.
REPLY_QUALITIES = (85, 65, 45, 25)

T = TypeVar("T")
Spawn = Callable[[Coroutine[Any, Any, None]], None]
#: Hands a decoded frame (and its reply tag) to the engine; False when this peer may not drive now.
Feed = Callable[[np.ndarray, Any], bool]


class LatestWins(Generic[T]):
    """Runs ``work`` on one item at a time; an item offered meanwhile waits, and a newer one replaces it.

    Why: a codec job per message would queue behind a fast peer and let latency grow; only the newest frame matters.
    """

    def __init__(self, work: Callable[[T], Awaitable[None]], spawn: Spawn) -> None:
        self._work = work
        self._spawn = spawn
        self._busy = False
        self._waiting: tuple[T] | None = None  # a 1-tuple, so that None can be an item too
        self.replaced = 0

    @property
    def busy(self) -> bool:
        return self._busy

    def offer(self, item: T) -> None:
        if self._busy:
            if self._waiting is not None:
                self.replaced += 1
            self._waiting = (item,)
            return
        self._busy = True
        self._spawn(self._drain(item))

    async def _drain(self, item: T) -> None:
        try:
            while True:
                await self._work(item)
                if self._waiting is None:
                    break
                (item,), self._waiting = self._waiting, None
        finally:
            self._busy = False
            self._waiting = None  # cancelled (the peer left): drop what waited with it


class FrameChannel:
    """One peer's data channel speaking the protocol above.

    ``feed`` takes a decoded camera frame, ``stats`` makes the stats payload, ``spawn`` starts a task the peer
    owns (cancelled when it leaves), ``codec_pool`` runs the JPEG work off the event loop.
    """

    def __init__(self, channel: RTCDataChannel, *, peer_id: str, feed: Feed, stats: Callable[[], Mapping[str, Any]],
                 spawn: Spawn, codec_pool: concurrent.futures.Executor | None) -> None:
        self.channel = channel
        self.peer_id = peer_id
        self._feed = feed
        self._stats = stats
        self._pool = codec_pool
        self._decodes: LatestWins[tuple[str, dict[str, Any]]] = LatestWins(self._decode, spawn)
        self._replies: LatestWins[tuple[Frame, dict[str, Any]]] = LatestWins(self._encode, spawn)
        self.bytes_sent = 0
        self.messages_received = 0
        channel.on("message", self.on_message)

    @property
    def state(self) -> str:
        return self.channel.readyState

    # ------------------------------------------------------------------------------------------------- sending
    def send(self, payload: Mapping[str, Any]) -> bool:
        channel = self.channel
        if channel.readyState != "open":
            return False
        text = json.dumps(payload, default=str)
        try:
            channel.send(text)
        except Exception as exc:  # noqa: BLE001 -- closed meanwhile, or larger than the peer accepts
            logger.debug("Data channel send to %s failed: %s", self.peer_id, exc)
            return False
        self.bytes_sent += len(text.encode("utf-8"))
        return True

    def send_error(self, status: int, message: str) -> None:
        self.send({"type": "error", "status": status, "error": message})

    def reply(self, frame: Frame, tag: dict[str, Any]) -> None:
        """Send the processed ``frame`` back (made from the camera frame ``tag`` names), unless the channel is
        backed up; a newer reply replaces one still waiting for the encoder."""
        if self.channel.readyState != "open" or self.channel.bufferedAmount > MAX_BUFFERED_BYTES:
            return
        self._replies.offer((frame, tag))

    # ----------------------------------------------------------------------------------------------- receiving
    def on_message(self, message: Any) -> None:
        self.messages_received += 1
        try:
            if isinstance(message, bytes):
                raise BadRequest("Binary messages are not supported; send JSON text such as {\"type\": \"stats\"}.")
            if len(message) > MAX_MESSAGE_BYTES:
                raise BadRequest(f"Message of {len(message)} bytes is larger than {MAX_MESSAGE_BYTES}; send a "
                                 "smaller JPEG.", status=413)
            try:
                data = json.loads(message)
            except ValueError as exc:
                raise BadRequest(f"Message is not JSON ({exc}).") from exc
            if not isinstance(data, dict) or not isinstance(data.get("type"), str):
                raise BadRequest("A message must be a JSON object with a string \"type\": \"frame\" or \"stats\".")
            kind = data["type"]
            if kind == "stats":
                self.send({"type": "stats", "stats": self._stats()})
            elif kind == "frame":
                encoded = data.get("image_jpeg_base64")
                if not isinstance(encoded, str) or not encoded:
                    raise BadRequest("A frame message needs \"image_jpeg_base64\": a base64 JPEG string.")
                self._decodes.offer((encoded, {"seq": data.get("seq")}))
            else:
                raise BadRequest(f"Unknown message type {kind!r}; use \"frame\" or \"stats\".")
        except BadRequest as exc:
            self.send_error(exc.status, str(exc))

    # ------------------------------------------------------------------------------------------- codec jobs
    async def _decode(self, item: tuple[str, dict[str, Any]]) -> None:
        encoded, tag = item
        try:
            image = await asyncio.get_running_loop().run_in_executor(self._pool, decode_jpeg_base64, encoded)
        except BadRequest as exc:
            self.send_error(exc.status, str(exc))
            return
        if not self._feed(image, tag):
            self.send_error(409, "Another peer drives the engine now; try again when it is done.")

    async def _encode(self, item: tuple[Frame, dict[str, Any]]) -> None:
        frame, tag = item
        encoded = await asyncio.get_running_loop().run_in_executor(self._pool, encode_jpeg_base64, frame.image)
        if encoded is None:
            self.send_error(500, f"Processed frame {frame.index} does not fit in one message even as a "
                                 "low-quality JPEG; send smaller frames.")
            return
        h, w = frame.image.shape[:2]
        reply: dict[str, Any] = {"type": "frame", "image_jpeg_base64": encoded, "width": w, "height": h,
                                 "index": frame.index}
        if tag.get("seq") is not None:
            reply["seq"] = tag["seq"]
        self.send(reply)


def decode_jpeg_base64(encoded: str) -> np.ndarray:
    """base64 JPEG (a data: URL prefix is allowed) -> BGR image; BadRequest naming the problem otherwise."""
    if encoded.startswith("data:"):
        encoded = encoded.partition(",")[2]
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"image_jpeg_base64 is not valid base64 ({exc}).") from exc
    if not raw.startswith(b"\xff\xd8\xff"):
        raise BadRequest(f"image_jpeg_base64 is not a JPEG (it starts with {raw[:4]!r}); send a JPEG image.")
    image = cv2.imdecode(np.frombuffer(raw, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise BadRequest(f"image_jpeg_base64 is a broken JPEG ({len(raw)} bytes) that does not decode.")
    return image


def encode_jpeg_base64(image: np.ndarray) -> str | None:
    """The best-quality JPEG that fits one data-channel message, as base64; None when none fits."""
    for quality in REPLY_QUALITIES:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok and (len(buf) + 2) // 3 * 4 <= MAX_REPLY_BYTES - 200:
            return base64.b64encode(buf.tobytes()).decode("ascii")
    return None
