"""The voice for WebRTC viewers: the Mirage Microphone's delayed blocks as an Opus track beside the avatar video.

The audio thread is stood in by a tap feeder (what the Mirage Microphone hands its tap: the blocks it plays); the
oracle is the known signal fed in: sample for sample through the track, and its pitch after Opus and a real aiortc
peer on loopback.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from mirage_desktop.config import Settings
from mirage_desktop.engine.frame import Frame
from mirage_desktop.engine.outputs import Output
from mirage_desktop.engine.pipeline import Engine
from mirage_desktop.engine.sources import DemoSource
from mirage_desktop.webrtc.audio import FRAME_SAMPLES, MAX_QUEUED_S, RATE, MicrophoneAudioTrack, SharedAudio
from mirage_desktop.api.server import HttpServer

TOKEN = "audio-token-5d2a"
WAIT_S = 30.0  # an upper bound, never a speed check
TONE_HZ = 440.0


class TapPipe:
    """What the Mirage Microphone's audio thread offers a listener: add_tap/remove_tap, then 10 ms blocks."""

    def __init__(self) -> None:
        self.taps: tuple[Callable[[np.ndarray, int], None], ...] = ()

    def add_tap(self, tap: Callable[[np.ndarray, int], None]) -> None:
        self.taps = (*self.taps, tap)

    def remove_tap(self, tap: Callable[[np.ndarray, int], None]) -> None:
        self.taps = tuple(t for t in self.taps if t != tap)

    def play(self, block: np.ndarray) -> None:
        for tap in self.taps:
            tap(block, RATE)


class FakeMicrophone(Output):
    name = "microphone"

    def __init__(self) -> None:
        self.pipe = TapPipe()

    def send(self, frame: Frame) -> None:
        pass


class Outputs:
    """An engine's ``outputs``, for SharedAudio, without an engine."""

    def __init__(self, *outputs: Output) -> None:
        self.outputs = outputs


def tone(n: int, start: int = 0) -> np.ndarray:
    t = (np.arange(n) + start) / RATE
    return (0.5 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)[:, None]


def test_the_track_carries_the_tapped_blocks_sample_for_sample_in_20_ms_frames() -> None:
    microphone = FakeMicrophone()
    shared = SharedAudio(Outputs(microphone))  # type: ignore[arg-type]
    track = MicrophoneAudioTrack(shared)
    signal = tone(4800)  # 100 ms

    async def go() -> list[Any]:
        frames = [await track.recv()]  # silence: no microphone block yet (and the tap is put on now)
        assert microphone.pipe.taps
        for k in range(10):
            microphone.pipe.play(signal[k * 480:(k + 1) * 480])
        for _ in range(5):
            frames.append(await track.recv())
        return frames

    frames = asyncio.run(go())
    assert all(f.samples == FRAME_SAMPLES and f.sample_rate == RATE for f in frames)
    assert [f.pts for f in frames] == [i * FRAME_SAMPLES for i in range(6)]
    assert not frames[0].to_ndarray().any()
    received = np.concatenate([f.to_ndarray()[0] for f in frames[1:]])
    expected = np.clip(signal[:, 0], -1, 1) * 32767.0
    assert np.array_equal(received, expected.astype(np.int16))
    track.stop()
    assert microphone.pipe.taps == ()  # nobody listens: the audio thread does no work for WebRTC


def test_a_backlog_is_cut_so_the_voice_never_drifts_behind() -> None:
    microphone = FakeMicrophone()
    shared = SharedAudio(Outputs(microphone))  # type: ignore[arg-type]
    track = MicrophoneAudioTrack(shared)

    async def go() -> int:
        await track.recv()
        for k in range(100):  # a second at once: the sound card ran ahead of the network's clock
            microphone.pipe.play(tone(480, k * 480))
        await track.recv()
        return len(track._pending) + sum(len(b) for b in track.queue)

    assert asyncio.run(go()) <= MAX_QUEUED_S * RATE
    track.stop()


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[HttpServer, FakeMicrophone]]:
    engine = Engine(DemoSource(160, 120, fps=15))
    microphone = FakeMicrophone()
    engine.add_output(microphone)
    engine.start()
    server = HttpServer(engine, Settings(output_width=160, output_height=120, token=TOKEN), host="127.0.0.1",
                        port=0)
    server.start()
    stop = threading.Event()

    def play() -> None:  # the audio thread: a 10 ms block every 10 ms
        k = 0
        start = time.monotonic()
        while not stop.is_set():
            microphone.pipe.play(tone(480, k * 480))
            k += 1
            stop.wait(max(0.0, start + k * 0.01 - time.monotonic()))

    player = threading.Thread(target=play, daemon=True)
    player.start()
    yield server, microphone
    stop.set()
    player.join(5)
    server.stop()
    engine.stop()


def test_a_browser_like_peer_hears_the_voice_beside_the_video(served: tuple[HttpServer, FakeMicrophone]) -> None:
    server, _ = served

    async def go() -> tuple[np.ndarray, int]:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")
        audio: list[np.ndarray] = []
        video = [0]

        @pc.on("track")
        def on_track(track: Any) -> None:
            async def pump() -> None:
                try:
                    while True:
                        frame = await track.recv()
                        if track.kind == "audio":
                            audio.append(frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0])
                        else:
                            video[0] += 1
                except MediaStreamError:
                    pass

            asyncio.ensure_future(pump())

        async with aiohttp.ClientSession() as http:
            await pc.setLocalDescription(await pc.createOffer())
            resp = await http.post(server.url + "webrtc/offer", json={"sdp": pc.localDescription.sdp,
                                                                       "type": "offer"},
                                   headers={"Authorization": f"Bearer {TOKEN}"})
            assert resp.status == 200, await resp.text()
            answer = (await resp.json())["sdp"]
            assert "m=audio" in answer and "opus" in answer.lower()
            await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
            deadline = time.monotonic() + WAIT_S
            while sum(len(a) for a in audio) < RATE and time.monotonic() < deadline:  # a second of it
                await asyncio.sleep(0.05)
        await pc.close()
        return np.concatenate(audio) if audio else np.zeros(0), video[0]

    samples, frames = asyncio.run(asyncio.wait_for(go(), 120))
    assert frames > 0
    tail = samples[-RATE // 2:].astype(np.float64)  # after the decoder settled
    assert len(tail) == RATE // 2 and tail.std() > 1000, "the voice is silent"
    spectrum = np.abs(np.fft.rfft(tail * np.hanning(len(tail))))
    peak_hz = np.argmax(spectrum) * RATE / len(tail)
    assert abs(peak_hz - TONE_HZ) < 5, peak_hz
