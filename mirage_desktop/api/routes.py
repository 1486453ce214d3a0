"""The HTTP API's handlers: the page, health, metrics, the two offer endpoints and the connection list.

Endpoints (token = ``Authorization: Bearer <token>``):

- ``GET /``: the page that connects from a browser.
- ``GET /health``: engine, stages, device, the backends really running, uptime, and ``setup_warnings`` (a GPU that is
  there but unused, with ``mirage doctor``'s fix). No token; reveals no secrets.
- ``GET /metrics``: Prometheus text. No token (numbers only).
- ``POST /webrtc/offer``: ``{"sdp", "type": "offer"}`` -> ``{"sdp", "type": "answer", "id"}``. Token.
- ``GET /webrtc/connections``, ``DELETE /webrtc/connections/{id}``. Token.
- ``/control/...``: stage switches, avatar upload, animation options, model status, stats (see :mod:`.control`).
  Token.
- ``POST /whep`` (RFC 9725): SDP offer -> ``201 Created``, SDP answer, ``Location: /whep/{id}``;
  ``DELETE /whep/{id}`` hangs up. Token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from mirage_desktop import __version__
from mirage_desktop.config import Settings
from mirage_desktop.engine.pipeline import Engine
from mirage_desktop.api.auth import Refusal, check_request, json_error
from mirage_desktop.api.control import add_control_routes
from mirage_desktop.webrtc.errors import BadRequest
from mirage_desktop.api.metrics import MetricsPage
from mirage_desktop.webrtc.offers import Offers
from mirage_desktop.webrtc.registry import PeerRegistry

logger = logging.getLogger(__name__)

#: Largest accepted offer (JSON or SDP body). Real offers are a few kilobytes.
MAX_OFFER_BYTES = 64 * 1024

STATIC_DIR = Path(__file__).resolve().parent / "static"


class Routes:
    """The aiohttp application over the server's parts; ``token`` and ``url`` are read on every request."""

    def __init__(self, *, engine: Engine, settings: Settings, registry: PeerRegistry, offers: Offers, metrics: MetricsPage,
                 token: Callable[[], str], url: Callable[[], str], started_mono: float,
                 setup_warnings: Callable[[], list[dict[str, str]]] = list) -> None:
        self.engine = engine
        self.settings = settings
        self.registry = registry
        self.offers = offers
        self.metrics = metrics
        self._token = token
        self._url = url
        self.started_mono = started_mono
        self.setup_warnings = setup_warnings

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_OFFER_BYTES, middlewares=[self._error_middleware])
        app.router.add_get("/", self.index)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics_text)
        app.router.add_post("/webrtc/offer", self.offer)
        app.router.add_get("/webrtc/connections", self.list_connections)
        app.router.add_delete("/webrtc/connections/{id}", self.delete_connection)
        app.router.add_post("/whep", self.whep_offer)
        app.router.add_route("OPTIONS", "/whep", self.whep_options)
        app.router.add_delete("/whep/{id}", self.delete_connection)
        app.router.add_route("PATCH", "/whep/{id}", self.whep_patch)
        app.router.add_route("OPTIONS", "/whep/{id}", self.whep_options)
        add_control_routes(app, self.engine, self.settings, self._authorize)
        return app

    @web.middleware
    async def _error_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Every error becomes JSON; nothing a client sends takes the server down."""
        try:
            response = await handler(request)
        except Refusal as refusal:
            response = refusal.response
        except BadRequest as exc:
            response = json_error(exc.status, str(exc), exc.headers)
        except web.HTTPRequestEntityTooLarge:
            response = json_error(413, f"Request body is larger than {MAX_OFFER_BYTES} bytes; send a smaller offer.")
        except web.HTTPException as exc:
            if exc.status == 404:
                message = f"No endpoint {request.method} {request.path}. See {self._url()} for the page and API."
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
            add_cors(response)
        return response

    def _authorize(self, request: web.Request) -> None:
        denied = check_request(request, self._token())
        if denied is not None:
            raise Refusal(denied)

    # ----------------------------------------------------------------------------------------------- open
    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC_DIR / "index.html", headers={
            "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})

    async def health(self, request: web.Request) -> web.Response:
        stats = self.engine.stats()
        stages = {name: {"enabled": s.enabled, "reason": s.reason, "label": s.label}
                  for name, s in stats.stages.items()}
        running = self.engine.running
        # a stage still loading says so in its reason but is not failing; a missing model or errors are
        failing = any(stage.enabled and stage.status().state in ("failed", "unavailable")
                      for stage in self.engine.stages)
        status = "stopped" if not running else "degraded" if failing else "ok"
        body = {
            "status": status,
            "version": __version__,
            "engine": {
                "running": running,
                "source": stats.source.split(":", 1)[0],  # the kind only: no file names
                "fps_out": stats.fps_out,
                "frames_out": stats.frames_out,
            },
            "stages": stages,
            "device": stats.device,
            "backends": stats.backends,  # per stage: the provider / per-network backend really running
            "uptime_s": stats.uptime_s,
            "server_uptime_s": round(time.monotonic() - self.started_mono, 3),
            "peers": len(self.registry),
            "max_peers": self.registry.max_peers,
            "setup_warnings": self.setup_warnings(),  # a GPU there but unused: the doctor's check with its fix
        }
        audio = stats.outputs.get("microphone")
        if audio:  # the Mirage Microphone, while it is on
            body["audio"] = {k: audio.get(k) for k in ("status", "delay_target_ms", "delay_actual_ms", "underruns",
                                                      "overruns", "dropped_blocks")}
        return web.json_response(body)

    async def metrics_text(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": self.metrics.content_type})

    # ------------------------------------------------------------------------------------------- offers
    async def offer(self, request: web.Request) -> web.StreamResponse:
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
        peer, answer = await self.offers.answer(sdp, "webrtc", request.remote or "")
        return web.json_response({"sdp": answer, "type": "answer", "id": peer.id})

    async def whep_offer(self, request: web.Request) -> web.StreamResponse:
        self._authorize(request)
        if request.content_type != "application/sdp":
            raise BadRequest(f"WHEP offers must be sent as Content-Type: application/sdp, got "
                             f"{request.content_type or 'none'!r}.", status=415)
        body = await request.read()
        try:
            sdp = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest(f"The SDP offer is not UTF-8 text ({exc}).")
        peer, answer = await self.offers.answer(sdp, "whep", request.remote or "")
        return web.Response(status=201, text=answer, content_type="application/sdp",
                            headers={"Location": f"/whep/{peer.id}", "ETag": f'"{peer.id}"'})

    async def whep_patch(self, request: web.Request) -> web.StreamResponse:
        self._authorize(request)
        return json_error(405, "Trickle ICE is not supported: send the offer with all candidates gathered.",
                          {"Allow": "DELETE"})

    async def whep_options(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=204, headers={"Accept-Post": "application/sdp"})

    # -------------------------------------------------------------------------------------- connections
    async def list_connections(self, request: web.Request) -> web.StreamResponse:
        self._authorize(request)
        return web.json_response({"connections": await self.registry.connections(),
                                  "max_peers": self.registry.max_peers})

    async def delete_connection(self, request: web.Request) -> web.StreamResponse:
        self._authorize(request)
        peer_id = request.match_info["id"]
        if not await self.registry.close(peer_id, "hung up by DELETE"):
            return json_error(404, f"No connection with id {peer_id!r}; GET /webrtc/connections lists them.")
        return web.json_response({"id": peer_id, "closed": True})


def add_cors(response: web.StreamResponse) -> None:
    """WHEP players in web pages on other origins; the token still guards every call."""
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Allow-Methods"] = "POST, DELETE, PATCH, OPTIONS"
    response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type, If-Match"
    response.headers["Access-Control-Expose-Headers"] = "Location, ETag, Accept-Post"
