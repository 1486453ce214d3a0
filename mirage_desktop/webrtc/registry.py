"""The peers the server holds: admission under ``max_peers``, closing (the one place a peer's resources end),
counters, and the monitor that drops peers that never connect and keeps the driver honest."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.stats import RTCOutboundRtpStreamStats

from mirage_desktop.webrtc.driver import Driving
from mirage_desktop.webrtc.errors import BadRequest
from mirage_desktop.webrtc.peer import Peer

logger = logging.getLogger(__name__)

#: A peer that has not connected after this long is dropped.
CONNECT_TIMEOUT_S = 20.0
#: How often peers' byte counters, bitrates and timeouts are checked.
MONITOR_INTERVAL_S = 1.0
#: How long closing one peer connection may take.
CLOSE_TIMEOUT_S = 5.0


class PeerRegistry:
    """Every connected or connecting peer by id, and the server's running totals (event loop only)."""

    def __init__(self, max_peers: int, driving: Driving, ice_servers: Sequence[RTCIceServer] = ()) -> None:
        self.max_peers = max_peers
        self.driving = driving
        self.ice_servers = list(ice_servers)  # STUN/TURN for an engine behind NAT; none: host candidates only
        self.peers: dict[str, Peer] = {}
        self.bytes_sent_total = 0
        self.frames_sent_total = 0
        self.rejected_total = 0

    def __len__(self) -> int:
        return len(self.peers)

    def numbers(self) -> dict[str, float]:
        """The server's peer numbers for ``/metrics`` and the stats message."""
        return {"peers": len(self.peers), "max_peers": self.max_peers, "frames_sent": self.frames_sent_total,
                "bytes_sent": self.bytes_sent_total, "rejected": self.rejected_total}

    def admit(self, kind: str, remote: str) -> Peer:
        """A new peer with its connection, counted at once (so concurrent offers respect ``max_peers``);
        :class:`BadRequest` with 503 when the server is full."""
        if len(self.peers) >= self.max_peers:
            self.rejected_total += 1
            raise BadRequest(f"Too many peers: {len(self.peers)} of {self.max_peers} are connected. Hang one up "
                             "(DELETE /webrtc/connections/{id}) or raise max_peers in the settings.", 503,
                             {"Retry-After": "10"})
        peer_id = secrets.token_hex(8)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=list(self.ice_servers)))
        peer = Peer(id=peer_id, kind=kind, remote=remote, pc=pc,
                    started=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        self.peers[peer_id] = peer
        return peer

    async def close(self, peer_id: str, reason: str) -> bool:
        """End the peer and all it owns (driving, tasks, track, connection); False when no such peer."""
        peer = self.peers.get(peer_id)
        if peer is None or peer.closing:
            return False
        peer.closing = True
        await self.refresh(peer)
        self.peers.pop(peer_id, None)
        self.driving.leave(peer)
        for task in list(peer.tasks):
            task.cancel()
        if peer.track is not None:
            peer.track.stop()
        if peer.audio_track is not None:
            peer.audio_track.stop()
        try:
            await asyncio.wait_for(peer.pc.close(), CLOSE_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001
            logger.debug("Closing peer %s: %s", peer_id, exc)
        peer.pc.remove_all_listeners()
        logger.info("WebRTC peer %s closed: %s", peer_id, reason)
        return True

    async def close_all(self, reason: str) -> None:
        await asyncio.gather(*(self.close(pid, reason) for pid in list(self.peers)), return_exceptions=True)

    async def connections(self) -> list[dict[str, Any]]:
        peers = list(self.peers.values())
        await asyncio.gather(*(self.refresh(p) for p in peers), return_exceptions=True)
        return [p.describe(p is self.driving.driver) for p in peers]

    async def refresh(self, peer: Peer) -> None:
        """Update the peer's byte counters and bitrate, and the server's running totals."""
        try:
            report = await peer.pc.getStats()
            peer.bytes_rtp = sum(s.bytesSent for s in report.values() if isinstance(s, RTCOutboundRtpStreamStats))
        except Exception as exc:  # noqa: BLE001 -- a closing connection: keep the last numbers
            logger.debug("getStats for %s failed: %s", peer.id, exc)
        now, total = time.monotonic(), peer.bytes_sent
        if peer.sample is None:
            peer.sample = (now, total)
        elif now - peer.sample[0] >= 0.5:
            peer.bitrate_bps = (total - peer.sample[1]) * 8.0 / (now - peer.sample[0])
            peer.sample = (now, total)
        self.bytes_sent_total += total - peer.bytes_counted
        peer.bytes_counted = total
        frames = peer.frames_sent
        self.frames_sent_total += frames - peer.frames_counted
        peer.frames_counted = frames

    async def monitor(self) -> None:
        """Drops peers that never connect, ends silent drivers, keeps counters and the engine's source right."""
        while True:
            await asyncio.sleep(MONITOR_INTERVAL_S)
            await self._tick(time.monotonic())

    async def _tick(self, now: float) -> None:
        # a method of its own, so that no peer stays referenced by the loop's variables while it sleeps
        for peer in list(self.peers.values()):
            if peer.closing:
                continue
            if peer.pc.connectionState in ("new", "connecting") and now - peer.started_mono > CONNECT_TIMEOUT_S:
                await self.close(peer.id, f"not connected after {CONNECT_TIMEOUT_S:.0f} s")
                continue
            await self.refresh(peer)
        self.driving.check(now)
