"""The HTTP/WebRTC server: health, metrics, WebRTC peers (our page and WHEP players) on its own event loop.

``HttpServer`` is the one public class: the desktop window and the headless runner only call ``start()`` and
``stop()``. Its parts, each in its module: the loop thread (:mod:`.loop`), the endpoints (:mod:`.routes`, which
lists them), ``/metrics`` (:mod:`.metrics`) and the ``/control`` endpoints of a remote client (:mod:`.control`); the
WebRTC side in :mod:`mirage_desktop.webrtc`: the peers (:mod:`~mirage_desktop.webrtc.registry`,
:mod:`~mirage_desktop.webrtc.peer`, :mod:`~mirage_desktop.webrtc.offers`), which peer drives the engine
(:mod:`~mirage_desktop.webrtc.driver`), the data-channel protocol (:mod:`~mirage_desktop.webrtc.datachannel`) and
the avatar video fanned out to every peer (:mod:`~mirage_desktop.webrtc.tracks`). ``ssl_context`` (HTTPS,
:mod:`.tls`) and ``ice_servers`` (STUN/TURN) are set before ``start``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web
from aiortc import RTCIceServer

from mirage_desktop.config import Settings
from mirage_desktop.engine.pipeline import Engine
from mirage_desktop.webrtc.driver import Driving
from mirage_desktop.api.loop import LoopNotReady, LoopThread
from mirage_desktop.api.metrics import EngineCollector, MetricsPage
from mirage_desktop.webrtc.offers import Offers
from mirage_desktop.webrtc.registry import PeerRegistry
from mirage_desktop.api.routes import Routes
from mirage_desktop.webrtc.tracks import FrameFanout, SharedVideo

logger = logging.getLogger(__name__)

#: How long ``start`` waits for the loop to listen, and ``stop`` for peers to hang up.
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


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
        ssl_context: ssl.SSLContext | None = None,
        ice_servers: Sequence[RTCIceServer] = (),
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
        self.ssl_context = ssl_context  # serve HTTPS itself (--tls-cert/--tls-key); set before start
        self.ice_servers: list[RTCIceServer] = list(ice_servers)  # STUN/TURN (--ice-server) behind NAT
        #: /health's ``setup_warnings``: the doctor's checks of an unused GPU, as JSON (the session sets it)
        self.setup_warnings: Callable[[], list[dict[str, str]]] = list
        if self._fixed_token is None:
            settings.ensure_token()
        self._loop = LoopThread("mirage-http")
        self._runner: web.AppRunner | None = None
        self._fanout: FrameFanout | None = None
        self._codec_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._registry: PeerRegistry | None = None

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
        return len(self._registry) if self._registry is not None else 0

    @property
    def bytes_sent_total(self) -> int:
        return self._registry.bytes_sent_total if self._registry is not None else 0

    @property
    def frames_sent_total(self) -> int:
        return self._registry.frames_sent_total if self._registry is not None else 0

    @property
    def rejected_total(self) -> int:
        return self._registry.rejected_total if self._registry is not None else 0

    @property
    def running(self) -> bool:
        return self._loop.running

    def start(self) -> None:
        """Listen and return; raises OSError when the address cannot be bound (port taken, bad address)."""
        if self.running:
            return
        try:
            self._loop.start(self._startup, self._cleanup, START_TIMEOUT_S)
        except LoopNotReady:
            raise OSError(f"The HTTP server did not start listening on {self.host}:{self.port} within "
                          f"{START_TIMEOUT_S:.0f} s.") from None
        except OSError:
            raise
        except Exception as error:
            raise OSError(f"The HTTP server could not start: {error}") from error
        logger.info("HTTP/WebRTC server listening on %s", self.url)

    def stop(self) -> None:
        """Hang up every peer, give the engine its previous source back, close the listener. Safe to call twice."""
        self._loop.stop(self._shutdown, STOP_TIMEOUT_S)

    def connections(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The same list as ``GET /webrtc/connections``, callable from any thread (the window uses it)."""
        return self._loop.call(self._connections(), timeout)

    def hang_up(self, peer_id: str, timeout: float = 5.0) -> bool:
        """Close one peer from any thread; False when no peer has that id."""
        return self._loop.call(self._hang_up(peer_id), timeout)

    # ------------------------------------------------------------------------------------------ loop thread
    async def _connections(self) -> list[dict[str, Any]]:
        return await self._registry.connections() if self._registry is not None else []

    async def _hang_up(self, peer_id: str) -> bool:
        return self._registry is not None and await self._registry.close(peer_id, "hung up from the app")

    async def _startup(self) -> None:
        loop = asyncio.get_running_loop()
        self._codec_pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="mirage-jpeg")
        self._fanout = FrameFanout(loop)
        driving = Driving(self.engine, self.settings, self._fanout)
        registry = self._registry = PeerRegistry(self.max_peers, driving, self.ice_servers)

        def stats() -> dict[str, Any]:
            return {**self.engine.stats().to_json(), "webrtc": registry.numbers()}

        offers = Offers(self.engine, self.settings, registry, driving, SharedVideo(self._fanout), self._codec_pool,
                        stats)
        metrics = MetricsPage(EngineCollector(self.engine, registry.numbers))
        routes = Routes(engine=self.engine, settings=self.settings, registry=registry, offers=offers, metrics=metrics,
                        token=lambda: self.token, url=lambda: self.url, started_mono=time.monotonic(),
                        setup_warnings=lambda: self.setup_warnings())
        self._runner = web.AppRunner(routes.app(), access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context)
        await site.start()
        addresses = self._runner.addresses
        if addresses:
            self.port = int(addresses[0][1])
        self.engine.add_output(self._fanout)
        self._monitor = asyncio.ensure_future(registry.monitor())

    async def _cleanup(self) -> None:
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
        if self._registry is not None:
            await self._registry.close_all("server stopping")
        if self._fanout is not None:
            self.engine.remove_output(self._fanout)
        await self._cleanup()
