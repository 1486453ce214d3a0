"""From an SDP offer to a wired peer and its answer: where the avatar track goes, and what a peer's events do.

Both offer endpoints (our page's JSON ``/webrtc/offer`` and ``/whep``) come here; a failed offer leaves no peer behind.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from aiortc import RTCDataChannel, RTCSessionDescription

from mirage_desktop.config import Settings
from mirage_desktop.engine.pipeline import Engine
from mirage_desktop.webrtc.datachannel import FrameChannel
from mirage_desktop.webrtc.driver import Driving
from mirage_desktop.webrtc.errors import BadRequest
from mirage_desktop.webrtc.peer import Peer
from mirage_desktop.webrtc.peer_source import pump_track
from mirage_desktop.webrtc.registry import PeerRegistry
from mirage_desktop.webrtc.sdp import check_sdp, receiving_mids, receiving_video_mids
from mirage_desktop.webrtc.audio import MicrophoneAudioTrack, SharedAudio
from mirage_desktop.webrtc.tracks import EngineVideoTrack, SharedVideo

logger = logging.getLogger(__name__)


class Offers:
    """Answers offers: admits the peer, gives it the avatar track if it wants video, wires its events."""

    def __init__(self, engine: Engine, settings: Settings, registry: PeerRegistry, driving: Driving,
                 video: SharedVideo, codec_pool: concurrent.futures.Executor,
                 stats: Callable[[], Mapping[str, Any]]) -> None:
        self.engine = engine
        self.settings = settings
        self.registry = registry
        self.driving = driving
        self.video = video
        self.codec_pool = codec_pool
        self.stats = stats
        self.audio = SharedAudio(engine)  # the Mirage Microphone's voice, for offers that take audio

    async def answer(self, sdp: str, kind: str, remote: str) -> tuple[Peer, str]:
        """Validate the offer, make the peer and its answer; BadRequest when the offer is unusable."""
        check_sdp(sdp)
        peer = self.registry.admit(kind, remote)
        pc = peer.pc
        self._wire(peer)
        try:
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            except Exception as exc:
                raise BadRequest(f"Invalid SDP offer: {type(exc).__name__}: {exc}") from exc
            wanted = receiving_video_mids(sdp)
            video = [t for t in pc.getTransceivers() if t.kind == "video" and t.mid in wanted]
            if kind == "whep" and not video:
                raise BadRequest("The WHEP offer has no video section that can receive (a=recvonly or sendrecv).")
            if video:
                peer.track = EngineVideoTrack(self.video, self._frame_size())
                peer.track.on_echo = lambda in_pts, out_pts: self._echo(peer, in_pts, out_pts)
                pc.addTrack(peer.track)
                if kind == "whep":
                    video[0].direction = "sendonly"  # a WHEP player only watches
            wanted_audio = receiving_mids(sdp, "audio")
            audio = [t for t in pc.getTransceivers() if t.kind == "audio" and t.mid in wanted_audio]
            if audio:  # the voice, delayed like the video (silence while the Mirage Microphone is off)
                peer.audio_track = MicrophoneAudioTrack(self.audio)
                pc.addTrack(peer.audio_track)
                if kind == "whep":
                    audio[0].direction = "sendonly"
            try:
                await pc.setLocalDescription(await pc.createAnswer())
            except Exception as exc:
                raise BadRequest(f"Cannot answer this offer: {type(exc).__name__}: {exc}") from exc
        except BaseException:
            await self.registry.close(peer.id, "offer failed")
            raise
        logger.info("WebRTC peer %s (%s) from %s", peer.id, kind, remote or "?")
        return peer, pc.localDescription.sdp

    @staticmethod
    def _echo(peer: Peer, in_pts: int, out_pts: int) -> None:
        if peer.channel is not None:
            peer.channel.echo(in_pts, out_pts)

    def _frame_size(self) -> tuple[int, int]:
        """The placeholder's size until the first engine frame: the last frame's, else the configured output's."""
        last = self.engine.last_frame
        if last is not None:
            return last.image.shape[1], last.image.shape[0]
        return self.settings.output_width, self.settings.output_height

    def _wire(self, peer: Peer) -> None:
        pc = peer.pc

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            state = pc.connectionState
            logger.debug("Peer %s is %s", peer.id, state)
            if state in ("failed", "closed") and not peer.closing:
                await self.registry.close(peer.id, f"connection {state}")

        if peer.kind != "webrtc":
            return

        def on_track_image(image: np.ndarray, pts: int) -> None:
            peer.frames_received += 1
            # with a data channel open, ask which pts the avatar made from this frame leaves with (the echo)
            self.driving.feed(peer, image, {"pts": pts} if peer.channel is not None else None)

        def on_channel_image(image: np.ndarray, tag: Any) -> bool:
            peer.frames_received += 1
            return self.driving.feed(peer, image, tag)

        @pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "video":
                peer.spawn(pump_track(track, on_track_image, wanted=lambda: self.driving.can_drive(peer)))

        @pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            peer.channel = FrameChannel(channel, peer_id=peer.id, feed=on_channel_image, stats=self.stats,
                                        spawn=peer.spawn, codec_pool=self.codec_pool)
