"""The voice for WebRTC viewers: the Mirage Microphone's delayed audio as an Opus track beside the avatar video.

The audio thread hands every block it plays into the virtual microphone to a tap (:meth:`MicrophonePipe.add_tap`):
the same samples, already delayed to match the video. :class:`SharedAudio` holds that one tap while any track
listens and copies each block into every track's short queue (on the sound card's thread: a deque append, no
lock, no wait). A track's ``recv`` hands aiortc 20 ms frames on its own 48 kHz clock (aiortc's Opus encoder takes
them), playing silence while the Mirage Microphone is off or a block is late, and dropping the oldest audio when
more than ``MAX_QUEUED_S`` waits (the sound card's clock running a little fast), so the voice never drifts behind.
aiortc puts both tracks of a peer in one media stream, which browsers play in sync.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections import deque
from typing import Any

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

from mirage_desktop.engine.pipeline import Engine

RATE = 48000
FRAME_SAMPLES = 960  # 20 ms, Opus's usual frame
TIME_BASE = fractions.Fraction(1, RATE)
MAX_QUEUED_S = 0.2
MICROPHONE_OUTPUT = "microphone"  # the engine output's name (audio/output.py)


class SharedAudio:
    """The Mirage Microphone's played blocks, fanned out to every listening track."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._tracks: tuple[MicrophoneAudioTrack, ...] = ()
        self._pipe: Any = None  # the audio thread the tap is on

    def subscribe(self, track: MicrophoneAudioTrack) -> None:
        self._tracks = (*self._tracks, track)

    def unsubscribe(self, track: MicrophoneAudioTrack) -> None:
        self._tracks = tuple(t for t in self._tracks if t is not track)
        if not self._tracks:
            self._attach(None)

    def follow(self) -> None:
        """Put the tap on the Mirage Microphone now running (it may have been switched on or off meanwhile)."""
        output = next((o for o in self.engine.outputs if o.name == MICROPHONE_OUTPUT), None)
        self._attach(getattr(output, "pipe", None) if self._tracks else None)

    def _attach(self, pipe: Any) -> None:
        if pipe is self._pipe:
            return
        if self._pipe is not None:
            self._pipe.remove_tap(self._on_block)
        self._pipe = pipe
        if pipe is not None:
            pipe.add_tap(self._on_block)

    def _on_block(self, block: np.ndarray, rate: int) -> None:
        """On the sound card's thread: the block as 16-bit samples, queued for every track."""
        if rate != RATE:  # a device that refused 48 kHz: the nearest samples (rare; a viewer still hears it)
            where = np.arange(0, len(block), rate / RATE)
            block = block[where.astype(np.int64)]
        samples = (np.clip(block[:, 0], -1.0, 1.0) * 32767.0).astype(np.int16)
        for track in self._tracks:
            track.queue.append(samples)


class MicrophoneAudioTrack(MediaStreamTrack):
    """One peer's voice track: 20 ms frames of the delayed microphone, silence while there is none."""

    kind = "audio"

    def __init__(self, shared: SharedAudio) -> None:
        super().__init__()
        self._shared = shared
        self.queue: deque[np.ndarray] = deque()
        self._pending = np.zeros(0, np.int16)
        self._start: float | None = None
        self._pts = 0
        self.frames_sent = 0
        self.silent_frames = 0
        shared.subscribe(self)

    def _take(self) -> np.ndarray:
        """FRAME_SAMPLES samples from the queue (zeros where it runs short); the oldest dropped beyond
        MAX_QUEUED_S."""
        queue = self.queue
        parts = [self._pending]
        have = len(self._pending)
        while queue and have < FRAME_SAMPLES:
            block = queue.popleft()
            parts.append(block)
            have += len(block)
        data = np.concatenate(parts) if len(parts) > 1 else parts[0]
        if have < FRAME_SAMPLES:
            self.silent_frames += 1
            data = np.concatenate((data, np.zeros(FRAME_SAMPLES - have, np.int16)))
        self._pending = data[FRAME_SAMPLES:]
        backlog = len(self._pending) + sum(len(b) for b in queue)
        while queue and backlog > MAX_QUEUED_S * RATE:
            backlog -= len(queue.popleft())
        return data[:FRAME_SAMPLES]

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._pts += FRAME_SAMPLES
            wait = self._start + self._pts / RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        self._shared.follow()
        samples = self._take()
        frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = TIME_BASE
        self.frames_sent += 1
        return frame

    def stop(self) -> None:
        self._shared.unsubscribe(self)
        super().stop()
