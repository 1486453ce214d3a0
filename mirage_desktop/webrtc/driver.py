"""Which peer drives the engine: the first peer to send a frame, until it leaves, falls silent or the user picks
another source; then the engine gets back the source it had before.

The engine switches sources on its capture thread some time after ``set_source``; asking twice for the same
switch could make it reopen (and then close) the source it already runs. So each switch is requested once: to a
peer when it starts driving, back to the base source once per peer source left behind.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from mirage_desktop.config import Settings
from mirage_desktop.engine.frame import Frame
from mirage_desktop.engine.pipeline import Engine
from mirage_desktop.engine.sources import Source
from mirage_desktop.webrtc.peer import Peer
from mirage_desktop.webrtc.peer_source import PeerSource
from mirage_desktop.webrtc.tracks import FrameFanout

logger = logging.getLogger(__name__)

#: A driving peer that sent no frame for this long gives the engine back to its previous source.
DRIVER_SILENCE_S = 5.0


class Driving:
    """The arbitration between peers for the engine's source, and the processed frames sent back to the driver."""

    def __init__(self, engine: Engine, settings: Settings, fanout: FrameFanout) -> None:
        self.engine = engine
        self.settings = settings
        self._fanout = fanout
        self.driver: Peer | None = None
        self._base_source: Source | None = None
        self._restoring: PeerSource | None = None  # the peer source a switch back to the base was asked for
        self._listening = False

    def can_drive(self, peer: Peer) -> bool:
        return peer.may_drive and not peer.closing and (self.driver is None or self.driver is peer)

    def feed(self, peer: Peer, image: np.ndarray, reply_tag: Any) -> bool:
        """Hand a peer's frame to the engine; False when another peer drives (or this one may not)."""
        if not self.can_drive(peer):
            return False
        starting = self.driver is not peer
        if starting:
            self._claim(peer)
        source = peer.source
        assert source is not None
        source.push(image, reply_tag)  # before the switch, so the engine's first read finds a frame
        if starting and self.engine.source is not source:
            self.engine.set_source(source)
        return True

    def leave(self, peer: Peer) -> None:
        """``peer`` is going away: if it drives, the engine gets its previous source back."""
        if peer is self.driver:
            self.release()

    def release(self) -> None:
        driver, self.driver = self.driver, None
        if driver is not None:
            driver.source = None  # the engine closes it when it switches away; a new claim starts a fresh one
        self._listen(False)
        self.restore_source()

    def check(self, now: float) -> None:
        """The monitor's tick: end a driver the user replaced or that fell silent; keep the engine's source right."""
        driver = self.driver
        if driver is not None and driver.source is not None:
            if driver.source.closed:  # the user chose another source meanwhile: that choice wins
                logger.info("The engine left peer %s's video; that peer no longer drives", driver.id)
                driver.may_drive = False
                self.release()
            elif now - driver.source.last_push > DRIVER_SILENCE_S:
                logger.info("Peer %s sent no frame for %.0f s; it no longer drives", driver.id, DRIVER_SILENCE_S)
                self.release()
        self.restore_source()

    def restore_source(self) -> None:
        """Give the engine its pre-peer source back once no peer drives. Called again by the monitor, because a
        switch to a peer may still have been pending in the engine when the peer left."""
        current = self.engine.source
        if self._restoring is not None and current is not self._restoring:
            self._restoring = None  # the switch back happened: hold no left peer's source (nor its last frame)
        driver_source = self.driver.source if self.driver is not None else None
        if (isinstance(current, PeerSource) and current is not driver_source and current is not self._restoring
                and self._base_source is not None):
            self._restoring = current
            self.engine.set_source(self._base_source)

    def _claim(self, peer: Peer) -> None:
        """Make ``peer`` the driver, with a fresh source."""
        current = self.engine.source
        if not isinstance(current, PeerSource):
            self._base_source = current
        peer.source = PeerSource(peer.id, fps=self.settings.fps)
        self.driver = peer
        self._listen(True)
        logger.info("WebRTC peer %s drives the engine", peer.id)

    def _listen(self, on: bool) -> None:
        if on == self._listening:
            return
        self._listening = on
        if on:
            self._fanout.add_listener(self._on_engine_frame)
        else:
            self._fanout.remove_listener(self._on_engine_frame)

    def _on_engine_frame(self, frame: Frame) -> None:
        """A processed frame: if the driving peer sent its camera frame over the data channel, send it back."""
        peer = self.driver
        if peer is None or peer.source is None or peer.channel is None:
            return
        matched, tag = peer.source.take_reply_tag(frame)
        if matched:
            peer.channel.reply(frame, tag)
