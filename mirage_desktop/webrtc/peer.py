"""A WebRTC peer as the server sees it: its connection, what it owns (track, data channel, tasks) and its counters.

Everything a peer owns hangs off this object, so closing the peer (see :mod:`.registry`) is one place that ends it all.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCPeerConnection

from mirage_desktop.webrtc.audio import MicrophoneAudioTrack
from mirage_desktop.webrtc.datachannel import FrameChannel
from mirage_desktop.webrtc.peer_source import PeerSource
from mirage_desktop.webrtc.tracks import EngineVideoTrack


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
    audio_track: MicrophoneAudioTrack | None = None  # the Mirage Microphone's voice, when the offer takes audio
    channel: FrameChannel | None = None
    source: PeerSource | None = None
    may_drive: bool = True
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    bytes_rtp: int = 0
    bytes_counted: int = 0
    frames_counted: int = 0
    bitrate_bps: float = 0.0
    sample: tuple[float, int] | None = None
    frames_received: int = 0
    closing: bool = False

    @property
    def bytes_sent(self) -> int:
        return self.bytes_rtp + (self.channel.bytes_sent if self.channel is not None else 0)

    @property
    def frames_sent(self) -> int:
        return self.track.frames_sent if self.track is not None else 0

    @property
    def messages_received(self) -> int:
        return self.channel.messages_received if self.channel is not None else 0

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Start a task this peer owns: it is cancelled when the peer closes."""
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

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
            "data_channel": self.channel.state if self.channel is not None else None,
            "driving": driving,
        }
