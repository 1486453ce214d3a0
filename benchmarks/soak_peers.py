"""The soak's peers: aiortc viewers that join and leave in cycles (the app's quiet RSS noted after each cycle), and
a driving peer that sends frames over the data channel, then falls silent."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

from soak_launch import TOKEN, Run
from soak_report import STALL_S

QUIET_HOLD_S = 90.0  # the longest wait for the asynchronous stage's frame in flight before a cycle's RSS
DRIVER_SILENCE_S = 6.0  # the server's driver silence timeout (5 s), after which the base source is back


class Viewer:
    """An aiortc peer on 127.0.0.1: a viewer (receives the avatar video) or the driver (data channel too)."""

    def __init__(self, viewer: bool) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection

        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.id = ""
        self.frames = 0
        self.replies = 0
        self.max_gap = 0.0
        self.last_t: float | None = None
        self.channel_open = asyncio.Event()
        self.pc.addTransceiver("video", direction="recvonly")
        self.channel = None if viewer else self.pc.createDataChannel("mirage")
        if self.channel is not None:
            self.channel.on("open", self.channel_open.set)
            self.channel.on("message", self._on_message)
        self.pc.on("track", self._on_track)
        self._pump: asyncio.Task[None] | None = None

    def _on_message(self, message: Any) -> None:
        if '"type": "frame"' in message[:40]:
            self.replies += 1

    def _on_track(self, track: Any) -> None:
        async def pump() -> None:
            from aiortc.mediastreams import MediaStreamError

            try:
                while True:
                    await track.recv()
                    now = time.monotonic()
                    if self.last_t is not None:
                        self.max_gap = max(self.max_gap, now - self.last_t)
                    self.last_t = now
                    self.frames += 1
            except (MediaStreamError, asyncio.CancelledError):
                pass

        self._pump = asyncio.ensure_future(pump())

    async def join(self, http: Any, url: str) -> None:
        from aiortc import RTCSessionDescription

        await self.pc.setLocalDescription(await self.pc.createOffer())
        resp = await http.post(url + "webrtc/offer", json={"sdp": self.pc.localDescription.sdp, "type": "offer"},
                               headers={"Authorization": f"Bearer {TOKEN}"})
        if resp.status != 200:
            await self.pc.close()
            raise RuntimeError(f"offer refused: {resp.status} {await resp.text()}")
        body = await resp.json()
        self.id = body["id"]
        await self.pc.setRemoteDescription(RTCSessionDescription(body["sdp"], "answer"))

    async def leave(self, http: Any, url: str) -> None:
        self.last_t = None  # the gap while hanging up is not a stall
        try:
            await http.delete(url + f"webrtc/connections/{self.id}", headers={"Authorization": f"Bearer {TOKEN}"})
        finally:
            if self._pump is not None:
                self._pump.cancel()
            await self.pc.close()


async def connect(http: Any, url: str, viewer: bool) -> Viewer:
    client = Viewer(viewer)
    await client.join(http, url)
    return client


async def viewers(run: Run) -> None:
    """Cycles of ``--peers`` viewers joining, watching ``--stay`` seconds, leaving; then the app's quiet RSS."""
    import aiohttp

    app, results = run.app, run.results
    await run.warmed.wait()
    async with aiohttp.ClientSession() as http:
        while True:
            clients = await asyncio.gather(*(connect(http, app.url, viewer=True) for _ in range(run.args.peers)),
                                           return_exceptions=True)
            ok = [c for c in clients if isinstance(c, Viewer)]
            for c in clients:
                if not isinstance(c, Viewer):
                    print(f"viewer failed to connect: {c!r}", flush=True)
            await asyncio.sleep(run.args.stay)
            for c in ok:
                if c.max_gap >= STALL_S:
                    results.stall(f"viewer {c.id}: {c.max_gap:.1f} s between frames", app)
                results.viewer_frames += c.frames
            await asyncio.gather(*(c.leave(http, app.url) for c in ok), return_exceptions=True)
            await asyncio.sleep(3.0)
            await note_cycle_rss(run, len(ok))


async def note_cycle_rss(run: Run, joined: int) -> None:
    """The app's RSS after a cycle, all peers gone: quiet (stage held between frames, heap trimmed) when the app
    managed that, else the last raw sample (counted in cycle_rss_mb, not in the judged slope)."""
    app, results = run.app, run.results
    tag = f"quiet#{len(results.cycle_rss) + 1}"
    app.command("quiet", name=tag, hold_s=QUIET_HOLD_S)
    sample = None
    if await app.until(lambda: app.event(tag) is not None, QUIET_HOLD_S + 10) is not None:
        sample = app.event(tag)
    quiet = sample is not None and sample.get("event") == "quiet" and sample.get("held")
    if not quiet and not results.rss_mb:
        return
    rss = float(sample["rss_mb"]) if quiet and sample is not None else results.rss_mb[-1]
    results.cycle_rss.append(rss)
    if quiet and sample is not None:
        results.quiet_rss.append((round(results.elapsed(), 1), rss))
        results.threads_at_end = sample["threads"]
    print(f"t={results.elapsed():.0f}s cycle {len(results.cycle_rss)}: {joined} viewers, RSS {rss:.0f} MB"
          f"{' (quiet)' if quiet else ''}, threads {results.threads[-1] if results.threads else '?'}, "
          f"handles {results.handles[-1] if results.handles else '?'}", flush=True)


async def driver(run: Run) -> None:
    """A peer that drives the engine over the data channel for ``--stay`` seconds, then falls silent (the server
    gives the engine back after 5 s), again and again. Holds the source lock while it drives."""
    import aiohttp
    import cv2

    from mirage_desktop.engine.sources import DemoSource

    args, app = run.args, run.app
    demo = DemoSource(args.width, args.height, args.fps, paced=False)
    demo.open()
    async with aiohttp.ClientSession() as http:
        while True:
            async with run.source_lock:
                try:
                    client = await connect(http, app.url, viewer=False)
                    await asyncio.wait_for(client.channel_open.wait(), 20)
                    assert client.channel is not None
                    t_end = time.monotonic() + args.stay
                    seq = 0
                    while time.monotonic() < t_end:
                        _, jpg = cv2.imencode(".jpg", demo.read(), [cv2.IMWRITE_JPEG_QUALITY, 80])
                        client.channel.send(json.dumps({"type": "frame", "seq": seq,
                                                        "image_jpeg_base64": base64.b64encode(jpg).decode()}))
                        seq += 1
                        await asyncio.sleep(0.2)
                    run.results.driver_replies += client.replies
                    await client.leave(http, app.url)
                except Exception as exc:  # noqa: BLE001 -- counted in the log; the soak goes on
                    print(f"driver round failed: {exc!r}", flush=True)
                await asyncio.sleep(DRIVER_SILENCE_S)
            await asyncio.sleep(args.stay / 2)
