"""The HTTP/WebRTC server: health, metrics, WebRTC peers (our page and WHEP players) on its own event loop.

``HttpServer`` runs aiohttp and aiortc on an asyncio loop in a background thread, so the desktop window and the
headless runner only call ``start()`` and ``stop()``. The engine feeds every peer through one output (see
:mod:`.tracks`); a peer that sends video or data-channel frames can drive the engine (see :mod:`.peer_source`).

Endpoints (token = ``Authorization: Bearer <token>``):

- ``GET /``: the page that connects from a browser.
- ``GET /health``: engine, stages, device, uptime. No token; reveals no secrets.
- ``GET /metrics``: Prometheus text. No token (numbers only).
- ``POST /webrtc/offer``: ``{"sdp", "type": "offer"}`` -> ``{"sdp", "type": "answer", "id"}``. Token.
- ``GET /webrtc/connections``, ``DELETE /webrtc/connections/{id}``. Token.
- ``/control/...``: stage switches, avatar upload, animation options, model status, stats (see :mod:`.control`).
- ``POST /whep`` (RFC 9725): SDP offer -> ``201 Created``, SDP answer, ``Location: /whep/{id}``;
  ``DELETE /whep/{id}`` hangs up. Token.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.stats import RTCOutboundRtpStreamStats

from mirage_desktop import __version__
from mirage_desktop.config import Settings
from mirage_desktop.engine.frame import Frame
from mirage_desktop.engine.pipeline import Engine
from mirage_desktop.engine.sources import Source
from mirage_desktop.webrtc import metrics_text
from mirage_desktop.webrtc.auth import check_request, json_error
from mirage_desktop.webrtc.control import add_control_routes
from mirage_desktop.webrtc.peer import BadRequest, Peer, check_sdp, decode_jpeg_base64, encode_jpeg_base64
from mirage_desktop.webrtc.peer_source import PeerSource, pump_track
from mirage_desktop.webrtc.tracks import EngineVideoTrack, FrameFanout

logger = logging.getLogger(__name__)

#: Largest accepted offer (JSON or SDP body). Real offers are a few kilobytes.
MAX_OFFER_BYTES = 64 * 1024
#: Largest accepted data-channel message: what aiortc advertises as its SCTP max-message-size.
MAX_MESSAGE_BYTES = 256 * 1024
#: Stop sending frame replies while this much is still queued on the data channel.
MAX_BUFFERED_BYTES = 4 * 2**20
#: A peer that has not connected after this long is dropped.
CONNECT_TIMEOUT_S = 20.0
#: A driving peer that sent no frame for this long gives the engine back to its previous source.
DRIVER_SILENCE_S = 5.0
#: How often peers' byte counters, bitrates and timeouts are checked.
MONITOR_INTERVAL_S = 1.0
#: How long ``start`` waits for the loop to listen, and ``stop`` for peers to hang up.
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0

STATIC_DIR = Path(__file__).resolve().parent / "static"


class HttpServer:
    """The HTTP API and WebRTC peers on a background asyncio loop.

    ``token`` fixes the token; without it the server reads ``settings.token`` on every request (made on first use
    with ``settings.ensure_token()``), so a token rotated in the window applies at once. ``port=0`` picks a free
    port; ``port`` holds the bound one after ``start``.
    """

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        host: str | None = None,
        port: int | None = None,
        token: str | None = None,
        *,
        max_peers: int | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.host = host if host is not None else settings.http_host
        self.port = int(port if port is not None else settings.http_port)
        self.max_peers = int(max_peers if max_peers is not None else settings.max_peers)
        if not 0 <= self.port <= 65535:
            raise ValueError(f"HTTP port {self.port} is out of range; use 1-65535 (or 0 for any free port).")
        if self.max_peers < 1:
            raise ValueError(f"max_peers {self.max_peers} must be at least 1.")
        self._fixed_token = token or None
        self.ssl_context: Any = None  # an ssl.SSLContext to serve HTTPS itself (--tls-cert/--tls-key); set before start
        self.ice_servers: list[Any] = []  # RTCIceServer (STUN/TURN, --ice-server) for engines behind NAT
        if self._fixed_token is None:
            settings.ensure_token()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._fanout: FrameFanout | None = None
        self._codec_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._peers: dict[str, Peer] = {}
        self._driver: Peer | None = None
        self._base_source: Source | None = None
        self._restoring: PeerSource | None = None  # the peer source a switch back to the base was asked for
        self._reply_listener_on = False
        self._started_mono = time.monotonic()
        self._start_error: BaseException | None = None
        self.bytes_sent_total = 0
        self.frames_sent_total = 0
        self.rejected_total = 0

    # ----------------------------------------------------------------------------------------------- public
    @property
    def token(self) -> str:
        return self._fixed_token or self.settings.ensure_token()

    @property
    def url(self) -> str:
        host = self.host or "127.0.0.1"
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"{'https' if self.ssl_context is not None else 'http'}://{host}:{self.port}/"

    @property
    def peers(self) -> int:
        """Connected or connecting peers."""
        return len(self._peers)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Listen and return; raises OSError when the address cannot be bound (port taken, bad address)."""
        if self.running:
            return
        ready = threading.Event()
        self._start_error = None
        self._thread = threading.Thread(target=self._run, args=(ready,), name="mirage-http", daemon=True)
        self._thread.start()
        if not ready.wait(START_TIMEOUT_S):
            raise OSError(f"The HTTP server did not start listening on {self.host}:{self.port} within "
                          f"{START_TIMEOUT_S:.0f} s.")
        if self._start_error is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
            error = self._start_error
            if isinstance(error, OSError):
                raise error
            raise OSError(f"The HTTP server could not start: {error}") from error
        logger.info("HTTP/WebRTC server listening on %s", self.url)

    def stop(self) -> None:
        """Hang up every peer, give the engine its previous source back, close the listener. Safe to call twice."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(STOP_TIMEOUT_S)
        except Exception:
            logger.exception("HTTP server shutdown was not clean")
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=STOP_TIMEOUT_S)
        if thread.is_alive():
            logger.warning("The HTTP server thread did not stop within %.0f s", STOP_TIMEOUT_S)
        self._thread = None

    def connections(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The same list as ``GET /webrtc/connections``, callable from any thread (the window uses it)."""
        return self._call(self._connections(), timeout)

    def hang_up(self, peer_id: str, timeout: float = 5.0) -> bool:
        """Close one peer from any thread; False when no peer has that id."""
        return self._call(self._close_peer(peer_id, "hung up from the app"), timeout)

    # ------------------------------------------------------------------------------------------ loop thread
    def _call(self, coro: Awaitable[Any], timeout: float) -> Any:
        loop = self._loop
        if loop is None or not self.running:
            close = getattr(coro, "close", None)
            if close is not None:
                close()
            raise RuntimeError("The HTTP server is not running; call start() first.")
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)  # type: ignore[arg-type]

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._startup())
        except BaseException as exc:  # noqa: BLE001 -- bind failures are reported to start()'s caller
            self._start_error = exc
            ready.set()
            loop.run_until_complete(self._cleanup_runner())
            loop.close()
            self._loop = None
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()
            self._loop = None

    async def _startup(self) -> None:
        loop = asyncio.get_running_loop()
        self._started_mono = time.monotonic()
        self._codec_pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="mirage-jpeg")
        self._fanout = FrameFanout(loop)
        app = self._make_app()
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context)
        await site.start()
        addresses = self._runner.addresses
        if addresses:
            self.port = int(addresses[0][1])
        self.engine.add_output(self._fanout)
        self._monitor = asyncio.ensure_future(self._monitor_loop())

    async def _cleanup_runner(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._codec_pool is not None:
            self._codec_pool.shutdown(wait=False, cancel_futures=True)
            self._codec_pool = None

    async def _shutdown(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            self._monitor = None
        await asyncio.gather(*(self._close_peer(pid, "server stopping") for pid in list(self._peers)),
                             return_exceptions=True)
        if self._fanout is not None:
            self.engine.remove_output(self._fanout)
        await self._cleanup_runner()

    # ------------------------------------------------------------------------------------------------- app
    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_OFFER_BYTES, middlewares=[self._error_middleware])
        app.router.add_get("/", self._index)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_post("/webrtc/offer", self._offer)
        app.router.add_get("/webrtc/connections", self._list_connections)
        app.router.add_delete("/webrtc/connections/{id}", self._delete_connection)
        app.router.add_post("/whep", self._whep_offer)
        app.router.add_route("OPTIONS", "/whep", self._whep_options)
        app.router.add_delete("/whep/{id}", self._whep_delete)
        app.router.add_route("PATCH", "/whep/{id}", self._whep_patch)
        app.router.add_route("OPTIONS", "/whep/{id}", self._whep_options)
        add_control_routes(app, self.engine, self.settings, self._authorize)
        return app

    @web.middleware
    async def _error_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Every error becomes JSON; nothing a client sends takes the server down."""
        try:
            response = await handler(request)
        except _Reply as reply:
            response = reply.response
        except BadRequest as exc:
            response = json_error(exc.status, str(exc))
        except web.HTTPRequestEntityTooLarge:
            response = json_error(413, f"Request body is larger than {MAX_OFFER_BYTES} bytes; send a smaller offer.")
        except web.HTTPException as exc:
            if exc.status == 404:
                message = f"No endpoint {request.method} {request.path}. See {self.url} for the page and API."
            elif exc.status == 405:
                message = f"Method {request.method} is not allowed on {request.path}."
            else:
                message = exc.reason or f"HTTP {exc.status}"
            response = json_error(exc.status, message, {k: v for k, v in exc.headers.items() if k == "Allow"})
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("Request %s %s failed", request.method, request.path)
            response = json_error(500, f"Internal error ({type(exc).__name__}); see the app's log.")
        if request.path.startswith("/whep"):
            _add_cors(response)
        return response

    def _authorize(self, request: web.Request) -> None:
        denied = check_request(request, self.token)
        if denied is not None:
            raise _Reply(denied)

    async def _index(self, request: web.Request) -> web.StreamResponse:
        page = STATIC_DIR / "index.html"
        return web.FileResponse(page, headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                                               "Referrer-Policy": "no-referrer"})

    async def _health(self, request: web.Request) -> web.Response:
        stats = self.engine.stats()
        stages = {name: {"enabled": bool(s.get("enabled")), "reason": s.get("reason", ""), "label": s.get("label")}
                  for name, s in stats["stages"].items()}
        running = self.engine.running
        failing = any(s["enabled"] and s["reason"] for s in stages.values())
        status = "stopped" if not running else "degraded" if failing else "ok"
        body = {
            "status": status,
            "version": __version__,
            "engine": {
                "running": running,
                "source": str(stats["source"]).split(":", 1)[0],  # the kind only: no file names
                "fps_out": stats["fps_out"],
                "frames_out": stats["frames_out"],
            },
            "stages": stages,
            "device": stats["device"],
            "uptime_s": stats["uptime_s"],
            "server_uptime_s": round(time.monotonic() - self._started_mono, 3),
            "peers": self.peers,
            "max_peers": self.max_peers,
        }
        return web.json_response(body)

    async def _metrics(self, request: web.Request) -> web.Response:
        text = metrics_text.render(
            self.engine.stats(), self.engine.metrics.stages, self.engine.metrics.end_to_end, self._webrtc_numbers()
        )
        return web.Response(text=text, headers={"Content-Type": metrics_text.CONTENT_TYPE})

    def _webrtc_numbers(self) -> dict[str, float]:
        return {"peers": self.peers, "max_peers": self.max_peers, "frames_sent": self.frames_sent_total,
                "bytes_sent": self.bytes_sent_total, "rejected": self.rejected_total}

    # ------------------------------------------------------------------------------------------------ offers
    async def _offer(self, request: web.Request) -> web.StreamResponse:
        self._authorize(request)
        body = await request.read()
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadRequest(f"Body is not JSON ({exc}); send {{\"sdp\": \"v=0...\", \"type\": \"offer\"}}.")
        if not isinstance(data, dict):
            raise BadRequest(f"Body must be a JSON object with \"sdp\" and \"type\", got {type(data).__name__}.")
        if data.get("type") != "offer":
            raise BadRequest(f"\"type\" must be \"offer\", got {data.get('type')!r}.")
        sdp = data.get("sdp")
        if not isinstance(sdp, str):
            raise BadRequest(f"\"sdp\" must be a string with the SDP offer, got {type(sdp).__name__}.")
        peer, answer = await self._answer(sdp, "webrtc", request.remote or "")
        return web.json_response({"sdp": answer, "type": "answer", "id": peer.id})

    async def _whep_offer(self, request: web.Request) -> web.StreamResponse:
        self._authorize(request)
        if request.content_type != "application/sdp":
            raise BadRequest(f"WHEP offers must be sent as Content-Type: application/sdp, got "
                             f"{request.content_type or 'none'!r}.", status=415)
        body = await request.read()
        try:
            sdp = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest(f"The SDP offer is not UTF-8 text ({exc}).")
        peer, answer = await self._answer(sdp, "whep", request.remote or "")
        location = f"/whep/{peer.id}"
        return web.Response(status=201, text=answer, content_type="application/sdp",
                            headers={"Location": location, "ETag": f'"{peer.id}"'})

    async def _whep_delete(self, request: web.Request) -> web.StreamResponse:
        return await self._delete_connection(request)

    async def _whep_patch(self, request: web.Request) -> web.StreamResponse:
        self._authorize(request)
        return json_error(405, "Trickle ICE is not supported: send the offer with all candidates gathered.",
                          {"Allow": "DELETE"})

    async def _whep_options(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=204, headers={"Accept-Post": "application/sdp"})

    async def _answer(self, sdp: str, kind: str, remote: str) -> tuple[Peer, str]:
        """Validate the offer, make the peer and its answer; BadRequest when the offer is unusable."""
        check_sdp(sdp)
        if len(self._peers) >= self.max_peers:
            self.rejected_total += 1
            raise _Reply(json_error(
                503, f"Too many peers: {len(self._peers)} of {self.max_peers} are connected. Hang one up "
                     "(DELETE /webrtc/connections/{id}) or raise max_peers in the settings.", {"Retry-After": "10"}))
        peer_id = secrets.token_hex(8)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=list(self.ice_servers)))  # none: host candidates only
        peer = Peer(id=peer_id, kind=kind, remote=remote, pc=pc,
                    started=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        self._peers[peer_id] = peer  # counted at once, so concurrent offers respect max_peers
        self._wire(peer)
        try:
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            except Exception as exc:
                raise BadRequest(f"Invalid SDP offer: {type(exc).__name__}: {exc}") from exc
            video = [t for t in pc.getTransceivers() if t.kind == "video"
                     and getattr(t, "_offerDirection", "sendrecv") in ("sendonly", "sendrecv")]
            if kind == "whep" and not video:
                raise BadRequest("The WHEP offer has no video section that can receive (a=recvonly or sendrecv).")
            if video:
                last = self.engine.last_frame
                size = ((last.image.shape[1], last.image.shape[0]) if last is not None
                        else (self.settings.output_width, self.settings.output_height))
                assert self._fanout is not None
                peer.track = EngineVideoTrack(self._fanout, size)
                peer.track.on_echo = lambda pts_in, pts_out, p=peer: self._send(
                    p, {"type": "echo", "in_pts": pts_in, "out_pts": pts_out})
                pc.addTrack(peer.track)
                if kind == "whep":
                    video[0].direction = "sendonly"  # a WHEP player only watches
            try:
                answer = await pc.createAnswer()
                await pc.setLocalDescription(answer)
            except Exception as exc:
                raise BadRequest(f"Cannot answer this offer: {type(exc).__name__}: {exc}") from exc
        except BaseException:
            await self._close_peer(peer_id, "offer failed")
            raise
        logger.info("WebRTC peer %s (%s) from %s", peer_id, kind, remote or "?")
        return peer, pc.localDescription.sdp

    def _wire(self, peer: Peer) -> None:
        pc = peer.pc

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            state = pc.connectionState
            logger.debug("Peer %s is %s", peer.id, state)
            if state in ("failed", "closed") and not peer.closing:
                await self._close_peer(peer.id, f"connection {state}")

        if peer.kind != "webrtc":
            return

        @pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "video":
                self._spawn(peer, pump_track(track, lambda image, pts: self._on_track_image(peer, image, pts),
                                             wanted=lambda: self._can_drive(peer)))

        @pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            peer.channel = channel

            @channel.on("message")
            def on_message(message: Any) -> None:
                self._on_message(peer, message)

    def _spawn(self, peer: Peer, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        peer.tasks.add(task)
        task.add_done_callback(peer.tasks.discard)

    # ------------------------------------------------------------------------------------------- connections
    async def _list_connections(self, request: web.Request) -> web.StreamResponse:
        self._authorize(request)
        return web.json_response({"connections": await self._connections(), "max_peers": self.max_peers})

    async def _connections(self) -> list[dict[str, Any]]:
        peers = list(self._peers.values())
        await asyncio.gather(*(self._refresh(p) for p in peers), return_exceptions=True)
        return [p.describe(p is self._driver) for p in peers]

    async def _delete_connection(self, request: web.Request) -> web.StreamResponse:
        self._authorize(request)
        peer_id = request.match_info["id"]
        if not await self._close_peer(peer_id, "hung up by DELETE"):
            return json_error(404, f"No connection with id {peer_id!r}; GET /webrtc/connections lists them.")
        return web.json_response({"id": peer_id, "closed": True})

    async def _close_peer(self, peer_id: str, reason: str) -> bool:
        peer = self._peers.get(peer_id)
        if peer is None or peer.closing:
            return False
        peer.closing = True
        await self._refresh(peer)
        self._peers.pop(peer_id, None)
        if peer is self._driver:
            self._release_driver()
        for task in list(peer.tasks):
            task.cancel()
        if peer.track is not None:
            peer.track.stop()
        try:
            await asyncio.wait_for(peer.pc.close(), STOP_TIMEOUT_S / 2)
        except Exception as exc:  # noqa: BLE001
            logger.debug("Closing peer %s: %s", peer_id, exc)
        logger.info("WebRTC peer %s closed: %s", peer_id, reason)
        return True

    async def _refresh(self, peer: Peer) -> None:
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

    async def _monitor_loop(self) -> None:
        """Drops peers that never connect, ends silent drivers, keeps counters and the engine's source right."""
        while True:
            await asyncio.sleep(MONITOR_INTERVAL_S)
            now = time.monotonic()
            for peer in list(self._peers.values()):
                if peer.closing:
                    continue
                if peer.pc.connectionState in ("new", "connecting") and now - peer.started_mono > CONNECT_TIMEOUT_S:
                    await self._close_peer(peer.id, f"not connected after {CONNECT_TIMEOUT_S:.0f} s")
                    continue
                await self._refresh(peer)
            driver = self._driver
            if driver is not None and driver.source is not None:
                if driver.source.closed:  # the user chose another source meanwhile: that choice wins
                    logger.info("The engine left peer %s's video; that peer no longer drives", driver.id)
                    driver.may_drive = False
                    self._release_driver()
                elif now - driver.source.last_push > DRIVER_SILENCE_S:
                    logger.info("Peer %s sent no frame for %.0f s; it no longer drives", driver.id, DRIVER_SILENCE_S)
                    self._release_driver()
            self._restore_source()

    # --------------------------------------------------------------------------------------------- driving
    # The engine switches sources on its capture thread some time after ``set_source``; asking twice for the same
    # switch could make it reopen (and then close) the source it already runs. So each switch is requested once:
    # to a peer when it starts driving, back to the base source once per peer source left behind.
    def _can_drive(self, peer: Peer) -> bool:
        return peer.may_drive and not peer.closing and (self._driver is None or self._driver is peer)

    def _claim(self, peer: Peer) -> None:
        """Make ``peer`` the driver, with a fresh source."""
        current = self.engine.source
        if not isinstance(current, PeerSource):
            self._base_source = current
        peer.source = PeerSource(peer.id, fps=self.settings.fps)
        self._driver = peer
        self._set_reply_listener(True)
        logger.info("WebRTC peer %s drives the engine", peer.id)

    def _release_driver(self) -> None:
        driver, self._driver = self._driver, None
        if driver is not None:
            driver.source = None  # the engine closes it when it switches away; a new claim starts a fresh one
        self._set_reply_listener(False)
        self._restore_source()

    def _restore_source(self) -> None:
        """Give the engine its pre-peer source back once no peer drives. Called again by the monitor, because a
        switch to a peer may still have been pending in the engine when the peer left."""
        current = self.engine.source
        driver_source = self._driver.source if self._driver is not None else None
        if (isinstance(current, PeerSource) and current is not driver_source and current is not self._restoring
                and self._base_source is not None):
            self._restoring = current
            self.engine.set_source(self._base_source)

    def _feed(self, peer: Peer, image: np.ndarray, reply_tag: Any) -> bool:
        """Hand a peer's frame to the engine; False when another peer drives (or this one may not)."""
        if not self._can_drive(peer):
            return False
        starting = self._driver is not peer
        if starting:
            self._claim(peer)
        source = peer.source
        assert source is not None
        source.push(image, reply_tag)  # before the switch, so the engine's first read finds a frame
        if starting and self.engine.source is not source:
            self.engine.set_source(source)
        return True

    def _on_track_image(self, peer: Peer, image: np.ndarray, pts: int) -> None:
        peer.frames_received += 1
        self._feed(peer, image, {"pts": pts} if peer.channel is not None else None)

    # ------------------------------------------------------------------------------------------ data channel
    def _send(self, peer: Peer, payload: dict[str, Any]) -> bool:
        channel = peer.channel
        if channel is None or channel.readyState != "open":
            return False
        text = json.dumps(payload, default=str)
        try:
            channel.send(text)
        except Exception as exc:  # noqa: BLE001 -- closed meanwhile, or larger than the peer accepts
            logger.debug("Data channel send to %s failed: %s", peer.id, exc)
            return False
        peer.bytes_dc += len(text.encode("utf-8"))
        return True

    def _send_error(self, peer: Peer, status: int, message: str) -> None:
        self._send(peer, {"type": "error", "status": status, "error": message})

    def _on_message(self, peer: Peer, message: Any) -> None:
        peer.messages_received += 1
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
                self._send(peer, {"type": "stats", "stats": self._stats_payload()})
            elif kind == "frame":
                encoded = data.get("image_jpeg_base64")
                if not isinstance(encoded, str) or not encoded:
                    raise BadRequest("A frame message needs \"image_jpeg_base64\": a base64 JPEG string.")
                self._queue_decode(peer, encoded, {"seq": data.get("seq")})
            else:
                raise BadRequest(f"Unknown message type {kind!r}; use \"frame\" or \"stats\".")
        except BadRequest as exc:
            self._send_error(peer, exc.status, str(exc))

    def _stats_payload(self) -> dict[str, Any]:
        stats = self.engine.stats()
        stats["webrtc"] = self._webrtc_numbers()
        return stats

    def _queue_decode(self, peer: Peer, encoded: str, tag: dict[str, Any]) -> None:
        """One decode in flight per peer; a newer frame replaces a waiting one (latest wins)."""
        if peer.decoding:
            peer.pending_decode = (encoded, tag)
            return
        peer.decoding = True
        self._spawn(peer, self._decode_loop(peer, encoded, tag))

    async def _decode_loop(self, peer: Peer, encoded: str, tag: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    image = await loop.run_in_executor(self._codec_pool, decode_jpeg_base64, encoded)
                except BadRequest as exc:
                    self._send_error(peer, exc.status, str(exc))
                else:
                    peer.frames_received += 1
                    if not self._feed(peer, image, tag):
                        self._send_error(peer, 409, "Another peer drives the engine now; try again when it is done.")
                if peer.pending_decode is None:
                    break
                (encoded, tag), peer.pending_decode = peer.pending_decode, None
        finally:
            peer.decoding = False

    def _set_reply_listener(self, on: bool) -> None:
        if self._fanout is None or on == self._reply_listener_on:
            return
        self._reply_listener_on = on
        if on:
            self._fanout.add_listener(self._on_engine_frame)
        else:
            self._fanout.remove_listener(self._on_engine_frame)

    def _on_engine_frame(self, frame: Frame) -> None:
        """A processed frame: if the driving peer sent its camera frame over the data channel, send it back."""
        peer = self._driver
        if peer is None or peer.source is None or peer.channel is None:
            return
        matched, tag = peer.source.take_reply_tag(frame)
        if not matched or peer.channel.readyState != "open" or peer.channel.bufferedAmount > MAX_BUFFERED_BYTES:
            return
        if "pts" in tag:  # a video-track frame: the avatar goes back on the track; say which pts it leaves with
            if peer.track is not None:
                peer.track.mark(frame.image, tag["pts"])
            return
        if peer.encoding:
            peer.pending_reply = (frame, tag)
            return
        peer.encoding = True
        self._spawn(peer, self._reply_loop(peer, frame, tag))

    async def _reply_loop(self, peer: Peer, frame: Frame, tag: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                encoded = await loop.run_in_executor(self._codec_pool, encode_jpeg_base64, frame.image)
                if encoded is None:
                    self._send_error(peer, 500, f"Processed frame {frame.index} does not fit in one message even "
                                                "as a low-quality JPEG; send smaller frames.")
                else:
                    h, w = frame.image.shape[:2]
                    reply = {"type": "frame", "image_jpeg_base64": encoded, "width": w, "height": h,
                             "index": frame.index}
                    if tag.get("seq") is not None:
                        reply["seq"] = tag["seq"]
                    self._send(peer, reply)
                if peer.pending_reply is None:
                    break
                (frame, tag), peer.pending_reply = peer.pending_reply, None
        finally:
            peer.encoding = False


class _Reply(Exception):
    """Carries a ready response (401, 503) out of a helper."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def _add_cors(response: web.StreamResponse) -> None:
    """WHEP players in web pages on other origins; the token still guards every call."""
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Allow-Methods"] = "POST, DELETE, PATCH, OPTIONS"
    response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type, If-Match"
    response.headers["Access-Control-Expose-Headers"] = "Location, ETag, Accept-Post"
