"""A WebRTC peer as the server sees it, and the coding of what peers send: SDP checks and data-channel JPEGs."""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from aiortc import RTCDataChannel, RTCPeerConnection

from mirage_desktop.engine.frame import Frame
from mirage_desktop.webrtc.peer_source import PeerSource
from mirage_desktop.webrtc.tracks import EngineVideoTrack

#: A processed frame sent back must fit the peer's max-message-size (256 KiB in browsers and aiortc).
MAX_REPLY_BYTES = 250_000
#: JPEG qualities tried in turn until a reply fits.
REPLY_QUALITIES = (85, 65, 45, 25)


class BadRequest(Exception):
    """A client sent something malformed; ``status`` and the message go back as the JSON error."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(eq=False)
class Peer:
    """One connected (or connecting) WebRTC peer and its counters."""

    id: str
    kind: str  # "webrtc" (our page, JSON offer) or "whep"
    remote: str
    pc: RTCPeerConnection
    started: str
    started_mono: float = field(default_factory=time.monotonic)
    track: EngineVideoTrack | None = None
    channel: RTCDataChannel | None = None
    source: PeerSource | None = None
    may_drive: bool = True
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    bytes_rtp: int = 0
    bytes_dc: int = 0
    bytes_counted: int = 0
    frames_counted: int = 0
    bitrate_bps: float = 0.0
    sample: tuple[float, int] | None = None
    frames_received: int = 0
    messages_received: int = 0
    decoding: bool = False
    pending_decode: tuple[str, Any] | None = None
    encoding: bool = False
    pending_reply: tuple[Frame, Any] | None = None
    closing: bool = False

    @property
    def bytes_sent(self) -> int:
        return self.bytes_rtp + self.bytes_dc

    @property
    def frames_sent(self) -> int:
        return self.track.frames_sent if self.track is not None else 0

    def describe(self, driving: bool) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "remote": self.remote,
            "state": self.pc.connectionState,
            "ice_state": self.pc.iceConnectionState,
            "started": self.started,
            "age_s": round(time.monotonic() - self.started_mono, 3),
            "frames_sent": self.frames_sent,
            "bytes_sent": self.bytes_sent,
            "bitrate_bps": round(self.bitrate_bps, 1),
            "frames_received": self.frames_received,
            "messages_received": self.messages_received,
            "data_channel": self.channel.readyState if self.channel is not None else None,
            "driving": driving,
        }


def check_sdp(sdp: str) -> None:
    """Cheap sanity checks before aiortc parses the offer, so the error names what is wrong."""
    text = sdp.strip()
    if not text:
        raise BadRequest("The SDP offer is empty.")
    if not text.startswith("v=0"):
        raise BadRequest(f"Not an SDP offer: it must start with 'v=0', got {text[:20]!r}.")
    if "\nm=" not in text:
        raise BadRequest("The SDP offer has no media section (m=video or m=application).")
    if "a=ice-ufrag:" not in text or "a=fingerprint:" not in text:
        raise BadRequest("The SDP offer lacks ICE credentials or a DTLS fingerprint (a=ice-ufrag, a=fingerprint).")


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
