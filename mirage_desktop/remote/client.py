"""The WebRTC client of a remote Mirage engine: the local camera goes up as a video track, the avatar comes back
as one, and the round trip is measured frame by frame.

Runs aiortc on its own asyncio loop in a background thread, like the server, so the engine's processing thread
only calls :meth:`RemoteClient.submit` (store the newest frame, never wait) and :meth:`RemoteClient.latest`.

Connection: ``POST URL/webrtc/offer`` with the bearer token and ``{"sdp", "type": "offer"}`` (a sendrecv video
section and a data channel); the engine answers, our track drives its engine, and its avatar track comes back on
the same transceiver. A connection that fails, closes or goes silent for :data:`SILENCE_S` is dropped and a new
one is tried with back-off (at most :data:`MAX_BACKOFF_S` between tries), forever, until :meth:`stop`.

Round trip (local capture -> the avatar frame back here), how frames are matched: our track stamps each frame's
pts from its capture time, 0 for the first frame; aiortc's receiver counts a stream's timestamps from the first
frame it gets, so the engine sees the same pts. For each frame it made from one of ours, the engine's outgoing
track says over the data channel ``{"type": "echo", "in_pts": <ours>, "out_pts": <the pts it goes out with>}``;
its outgoing pts also start at 0 for the first frame, so the frame that arrives here with ``pts == out_pts`` is
that avatar frame. Round trip = its arrival (decoded, ready for the outputs) - the capture time of ``in_pts``.
The echo and the frame may arrive in either order; both wait in small bounded tables for the other.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import numpy as np
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import VIDEO_TIME_BASE, MediaStreamError, MediaStreamTrack
from av import VideoFrame

from mirage_desktop.engine.metrics import LatencyWindow
from mirage_desktop.engine.stats import EngineStats
from mirage_desktop.remote.link_stats import LinkStats
from mirage_desktop.remote.target import RemoteTarget
from mirage_desktop.webrtc.tracks import bgr_to_yuv420p

logger = logging.getLogger(__name__)

#: A connected engine sends a frame at least every second (it repeats its last one); this long without one = gone.
SILENCE_S = 2.5
#: Give up on a connection attempt (offer, ICE, DTLS, first frame) after this long.
CONNECT_TIMEOUT_S = 10.0
#: Back-off between attempts: doubles from the first value up to the cap, so a restarted engine is found again
#: within the cap plus one connection set-up (the goal is 5 s).
FIRST_BACKOFF_S = 0.25
MAX_BACKOFF_S = 2.0
#: A refused token is not retried faster than this (the user has to fix it; the log stays readable).
AUTH_BACKOFF_S = 5.0
#: How often the remote's own per-stage figures are fetched (GET /control/stats).
REMOTE_STATS_INTERVAL_S = 2.0
#: A pts may come back one or two 90 kHz ticks off (float rounding in the timebase conversions); frames are ~3000
#: ticks apart at 30 fps, so this tolerance never confuses two frames.
PTS_TOLERANCE = 2
#: Frames waiting for their echo (or echoes for their frame): about 4 s at 30 fps.
MATCH_TABLE_SIZE = 128
HTTP_TIMEOUT_S = 10.0


class RemoteAuthError(RuntimeError):
    """The remote engine refused the token (HTTP 401)."""


class _Bounded(OrderedDict[int, float]):
    """A dict that forgets its oldest entries beyond ``size`` (unmatched frames must not pile up)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: int, value: float) -> None:
        self[key] = value
        if len(self) > self.size:
            self.popitem(last=False)

    def pop_near(self, key: int) -> float | None:
        """The value stored at ``key`` give or take :data:`PTS_TOLERANCE` (aiortc's timebase conversions round)."""
        for candidate in (key, key - 1, key + 1, key - 2, key + 2):
            value = self.pop(candidate, None)
            if value is not None:
                return value
        return None


class _CameraTrack(MediaStreamTrack):
    """The local camera for the remote: always the newest submitted frame (a slow link skips frames, never
    queues them), pts from the capture time, 0 for the first."""

    kind = "video"

    def __init__(self, client: RemoteClient) -> None:
        super().__init__()
        self._client = client
        self.fresh = asyncio.Event()
        self._t0: float | None = None
        self._last_pts = -1

    async def recv(self) -> VideoFrame:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            await self.fresh.wait()
            self.fresh.clear()
            item = self._client._up
            if item is not None:
                break
        image, t_capture = item
        if self._t0 is None:
            self._t0 = t_capture
        pts = max(int(round((t_capture - self._t0) * 90000)), self._last_pts + 1)
        self._last_pts = pts
        self._client._sent.put(pts, t_capture)
        self._client.frames_sent += 1
        h, w = image.shape[:2]
        if w % 2 or h % 2:  # yuv420p needs even sizes to wrap a buffer: let the encoder convert
            frame = VideoFrame.from_ndarray(image, format="bgr24")
        else:  # the fast conversion (see bgr_to_yuv420p); the encoder then takes the frame as it is
            frame = VideoFrame.from_numpy_buffer(bgr_to_yuv420p(image), format="yuv420p")
        frame.pts = pts
        frame.time_base = VIDEO_TIME_BASE
        return frame


class RemoteClient:
    """One remote engine: connect, keep connected, hand frames up, keep the newest avatar frame that came back."""

    def __init__(self, target: RemoteTarget, token: str, ice_servers: Sequence[RTCIceServer] = ()) -> None:
        self.target = target
        self.token = token
        self.ice_servers = list(ice_servers)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        # up: engine processing thread -> loop (latest wins, one wake-up scheduled at a time)
        self._up: tuple[np.ndarray, float] | None = None
        self._up_scheduled = False
        self._track: _CameraTrack | None = None
        # down: loop -> engine processing thread (one reference swap)
        self._latest: tuple[np.ndarray, float] | None = None
        # round-trip matching, loop thread only
        self._sent = _Bounded(MATCH_TABLE_SIZE)  # our pts -> capture time
        self._arrived = _Bounded(MATCH_TABLE_SIZE)  # received pts -> arrival time (echo not here yet)
        self._echoed = _Bounded(MATCH_TABLE_SIZE)  # out pts -> capture time (frame not here yet)
        self.round_trip = LatencyWindow(size=600)
        self.connected = False  # a session is up and the engine processes our frames (an echo came back)
        self.reason = "connecting..."
        self.auth_error: str | None = None
        self.frames_sent = 0
        self.frames_received = 0
        self.echo_unmatched = 0
        self.connections = 0
        self.connected_at: list[float] = []  # wall-clock times (time.time) each session began processing
        self.remote_stats: EngineStats | None = None  # GET /control/stats: the remote's own figures
        self.remote_stages: dict[str, Any] | None = None  # GET /control/stages: its switches, states and reasons
        #: called on the client's event-loop thread each time a session begins processing our frames (a first
        #: connection or a reconnection, perhaps to a restarted engine); must return at once
        self.on_processing: Callable[[], None] | None = None

    # ------------------------------------------------------------------------------------------ any thread
    @property
    def reconnects(self) -> int:
        return max(0, len(self.connected_at) - 1)

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="mirage-remote", daemon=True)
        self._thread.start()
        ready.wait(5.0)

    def stop(self, timeout: float = 5.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        stopping = self._stopping
        if stopping is not None:
            try:
                loop.call_soon_threadsafe(stopping.set)
            except RuntimeError:  # the loop closed meanwhile
                pass
        thread.join(timeout)
        self._thread = None

    def submit(self, image: np.ndarray, t_capture: float) -> None:
        """Offer a camera frame (never written afterwards). Engine processing thread; returns at once."""
        self._up = (image, t_capture)
        loop = self._loop
        if not self._up_scheduled and loop is not None and self._track is not None:
            self._up_scheduled = True
            try:
                loop.call_soon_threadsafe(self._wake_track)
            except RuntimeError:
                self._up_scheduled = False

    def latest(self, max_age_s: float = 1.0) -> np.ndarray | None:
        """The newest avatar frame if the engine processes our frames and it is fresh, else None (pass-through)."""
        if not self.connected:
            return None
        item = self._latest
        if item is None or time.perf_counter() - item[1] > max_age_s:
            return None
        return item[0]

    def stats(self) -> LinkStats:
        """The link's figures: the ``remote`` block of ``--stats-json`` (``.to_json()``) and the window's."""
        rt = self.round_trip.summary()
        return LinkStats(
            url=self.target.base,
            connected=self.connected,
            frames_received=self.frames_received,
            round_trip_p50_ms=rt["p50_ms"],
            round_trip_p95_ms=rt["p95_ms"],
            reconnects=self.reconnects,
            reason=self.reason,
            frames_sent=self.frames_sent,
            round_trip_samples=self.round_trip.count,
            echo_unmatched=self.echo_unmatched,
            connected_at=tuple(self.connected_at),
            remote=self.remote_stats,
        )

    # ------------------------------------------------------------------------------------------- loop thread
    def _wake_track(self) -> None:
        self._up_scheduled = False
        track = self._track
        if track is not None:
            track.fresh.set()

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        self._stopping = asyncio.Event()
        ready.set()
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._loop = None

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def _main(self) -> None:
        assert self._stopping is not None
        timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
        context = self.target.ssl_context()  # None for http
        connector = aiohttp.TCPConnector(ssl=context if context is not None else False)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
            poller = asyncio.ensure_future(self._poll_remote_stats(http))
            backoff = FIRST_BACKOFF_S
            try:
                while not self._stopping.is_set():
                    wait = backoff
                    try:
                        await self._session(http)
                        backoff = FIRST_BACKOFF_S
                        wait = FIRST_BACKOFF_S
                    except RemoteAuthError as exc:
                        self.auth_error = str(exc)
                        self.reason = f"the remote engine refused the token: {exc}"
                        wait = AUTH_BACKOFF_S
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:  # noqa: BLE001 -- any failure: pass-through, say why, try again
                        self.reason = f"remote engine unreachable ({_describe(exc)}); retrying"
                        logger.debug("Remote session ended: %s", exc, exc_info=True)
                        backoff = min(backoff * 2, MAX_BACKOFF_S)
                    if self._stopping.is_set():
                        break
                    try:
                        await asyncio.wait_for(self._stopping.wait(), wait)
                    except asyncio.TimeoutError:
                        pass
            finally:
                poller.cancel()
                await asyncio.gather(poller, return_exceptions=True)

    async def _post_offer(self, http: aiohttp.ClientSession, sdp: str) -> str:
        url = self.target.url("/webrtc/offer")
        async with http.post(url, json={"sdp": sdp, "type": "offer"}, headers=self._headers()) as resp:
            try:
                body = await resp.json(content_type=None)
            except (ValueError, aiohttp.ContentTypeError):
                body = {}
            message = body.get("error") if isinstance(body, dict) else None
            if resp.status == 401:
                raise RemoteAuthError(message or "HTTP 401")
            if resp.status != 200 or not isinstance(body, dict) or not isinstance(body.get("sdp"), str):
                raise ConnectionError(f"{url} answered HTTP {resp.status}: {message or 'no SDP answer'}")
            return body["sdp"]

    async def _session(self, http: aiohttp.ClientSession) -> None:
        """One connection, from the offer until it fails, closes or goes silent (then it raises), or stop."""
        assert self._stopping is not None
        pc = RTCPeerConnection(RTCConfiguration(iceServers=self.ice_servers))
        channel = pc.createDataChannel("mirage")
        track = _CameraTrack(self)
        pc.addTrack(track)
        ended = asyncio.Event()
        tasks: set[asyncio.Task[Any]] = set()
        started = time.perf_counter()
        self._latest = None
        self._sent.clear()
        self._arrived.clear()
        self._echoed.clear()

        @pc.on("track")
        def on_track(remote_track: Any) -> None:
            if remote_track.kind == "video":
                tasks.add(asyncio.ensure_future(self._pump(remote_track, ended)))

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                ended.set()

        @channel.on("message")
        def on_message(message: Any) -> None:
            self._on_message(message)

        try:
            self.reason = "connecting..."
            await pc.setLocalDescription(await pc.createOffer())
            answer = await self._post_offer(http, pc.localDescription.sdp)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            self.auth_error = None
            self._track = track
            track.fresh.set()  # send the newest frame at once
            self.connections += 1
            self.reason = "connected; waiting for the remote engine to process our frames"
            while not self._stopping.is_set():
                try:
                    await asyncio.wait_for(ended.wait(), 0.25)
                except asyncio.TimeoutError:
                    pass
                if ended.is_set():
                    raise ConnectionError(f"connection {pc.connectionState}")
                now = time.perf_counter()
                latest = self._latest
                if self.connected:
                    if latest is None or now - latest[1] > SILENCE_S:
                        raise ConnectionError(f"no video from the remote engine for {SILENCE_S:.1f} s")
                elif now - started > CONNECT_TIMEOUT_S:
                    if latest is None:
                        raise ConnectionError(f"no video from the remote engine within {CONNECT_TIMEOUT_S:.0f} s")
                    self.reason = ("connected, but the remote engine does not process our frames (is another "
                                   "client driving it?)")
        finally:
            self.connected = False
            self._track = None
            track.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            try:
                await asyncio.wait_for(pc.close(), 3.0)
            except Exception as exc:  # noqa: BLE001
                logger.debug("Closing the remote connection: %s", exc)

    async def _pump(self, remote_track: Any, ended: asyncio.Event) -> None:
        """Read every avatar frame as it arrives (aiortc queues them without bound) and keep the newest."""
        while True:
            try:
                frame = await remote_track.recv()
            except MediaStreamError:
                ended.set()
                return
            try:
                image = frame.to_ndarray(format="bgr24")
            except Exception as exc:  # noqa: BLE001 -- a frame the converter rejects: skip it
                logger.debug("Dropping a remote frame that cannot be converted: %s", exc)
                continue
            now = time.perf_counter()
            self._latest = (image, now)
            self.frames_received += 1
            t_capture = self._echoed.pop_near(frame.pts)
            if t_capture is not None:
                self.round_trip.add(now - t_capture)
            else:
                self._arrived.put(frame.pts, now)

    def _on_message(self, message: Any) -> None:
        try:
            data = json.loads(message)
        except (TypeError, ValueError):
            return
        if not isinstance(data, dict):
            return
        kind = data.get("type")
        if kind == "echo":
            in_pts = data.get("in_pts")
            t_capture = self._sent.pop_near(in_pts) if isinstance(in_pts, int) else None
            if t_capture is None:
                self.echo_unmatched += 1
                return
            if not self.connected:
                self.connected = True
                self.connected_at.append(time.time())
                self.reason = ""
                logger.info("Remote engine %s processes our frames", self.target.base)
                listener = self.on_processing
                if listener is not None:
                    try:
                        listener()
                    except Exception:
                        logger.exception("The remote session listener failed")
            out_pts = data.get("out_pts")
            arrived = self._arrived.pop_near(out_pts) if isinstance(out_pts, int) else None
            if arrived is not None:
                self.round_trip.add(arrived - t_capture)
            elif isinstance(out_pts, int):
                self._echoed.put(out_pts, t_capture)
        elif kind == "error":
            logger.debug("Remote engine says: %s", data.get("error"))

    async def _poll_remote_stats(self, http: aiohttp.ClientSession) -> None:
        """The remote's own per-stage figures and stage states, for the stats, the latency panel and the switches."""
        assert self._stopping is not None
        while not self._stopping.is_set():
            if self._track is not None:
                try:
                    async with http.get(self.target.url("/control/stats"), headers=self._headers()) as resp:
                        if resp.status == 200:
                            self.remote_stats = EngineStats.from_json(await resp.json())
                    async with http.get(self.target.url("/control/stages"), headers=self._headers()) as resp:
                        if resp.status == 200:
                            self.remote_stages = (await resp.json()).get("stages")
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 -- figures are extras; the session loop reports failures
                    logger.debug("Remote stats: %s", exc)
            await asyncio.sleep(REMOTE_STATS_INTERVAL_S)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return (f"its TLS certificate is not trusted: {exc.certificate_error}; trust it with SSL_CERT_FILE=cert.pem "
                "or pass --insecure")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {exc.os_error.strerror or exc.os_error}"
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
