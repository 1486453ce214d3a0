"""Token-guarded JSON controls of the engine, for a remote client (``mirage --remote``) that has no other way in.

The window of a laptop driving this engine needs what its own controls do locally: the two model switches, the
avatar (the portrait file is uploaded), Recalibrate, the animation options, the models' status with their reasons,
and the per-stage figures. Every endpoint needs ``Authorization: Bearer <token>`` and answers JSON; errors are
``{"error", "status"}`` like the rest of the API.

- ``GET /control/stages`` -> ``{"stages": {name: {"enabled", "ready", "reason", "label", "state", "model_group"}}}``;
  ``PUT /control/stages`` with ``{"scrfd": true, "liveportrait": false}`` (any subset) switches them.
- ``POST /control/avatar``: the portrait file as the body (``Content-Type: image/png``, ``image/jpeg`` or
  ``image/webp``; at most :data:`MAX_AVATAR_BYTES`) -> ``{"avatar": name}``; 413 too large, 415 not an image,
  422 no face in it.
- ``POST /control/recalibrate`` -> ``{"recalibrated": true}``.
- ``GET /control/animation`` -> the Animation options (the fields of
  :class:`~mirage_desktop.animation_options.AnimationOptions`, the settings file's names) and the avatar stage's
  ``grace_s`` and ``fallback``; ``PUT /control/animation`` with any subset of them, or of the old names
  (``relative_pose``, ``expression_friendly``: :data:`~mirage_desktop.animation_options.OLD_NAMES`), answers the
  same; 400 names a bad one and what it takes.
- ``GET /control/models`` -> per stage ``{"enabled", "ready", "reason"}`` plus the stage's own numbers.
- ``GET /control/stats`` -> the engine's stats (the ``--stats-json`` format: per-stage P50/P95, end to end, rates).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web

from mirage_desktop.config import Settings
from mirage_desktop.engine.pipeline import Engine
from mirage_desktop.engine.stage import Stage, StageUnavailable
from mirage_desktop.animation_options import AnimationOptionError
from mirage_desktop.api.auth import json_error

logger = logging.getLogger(__name__)

#: Largest portrait accepted for upload: a phone photo fits; the avatar is scaled to the output size anyway.
MAX_AVATAR_BYTES = 15 * 2**20
#: Image kinds the avatar may be, by their first bytes (the Content-Type is the client's claim; these are checked).
IMAGE_SIGNATURES: dict[str, tuple[bytes, ...]] = {"png": (b"\x89PNG\r\n\x1a\n",), "jpg": (b"\xff\xd8\xff",),
                                                  "webp": (b"RIFF",)}

Authorize = Callable[[web.Request], Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_C = TypeVar("_C")


def image_kind(data: bytes) -> str | None:
    """``"png"``, ``"jpg"`` or ``"webp"`` from the file's first bytes; None for anything else."""
    for kind, signatures in IMAGE_SIGNATURES.items():
        if any(data.startswith(sig) for sig in signatures):
            if kind == "webp" and data[8:12] != b"WEBP":
                continue
            return kind
    return None


def add_control_routes(app: web.Application, engine: Engine, settings: Settings, authorize: Authorize) -> None:
    """Add the ``/control/...`` endpoints. ``authorize(request)`` raises (or returns a response) when the token is
    wrong, as the server's own check does."""
    controls = _Controls(engine, settings)

    def guarded(handler: Handler) -> Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            denied = authorize(request)
            if isinstance(denied, web.StreamResponse):
                return denied
            return await handler(request)

        return wrapped

    app.router.add_get("/control/stages", guarded(controls.get_stages))
    app.router.add_put("/control/stages", guarded(controls.put_stages))
    app.router.add_post("/control/avatar", guarded(controls.post_avatar))
    app.router.add_post("/control/recalibrate", guarded(controls.post_recalibrate))
    app.router.add_get("/control/animation", guarded(controls.get_animation))
    app.router.add_put("/control/animation", guarded(controls.put_animation))
    app.router.add_get("/control/models", guarded(controls.get_models))
    app.router.add_get("/control/stats", guarded(controls.get_stats))


class _Problem(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _answer(
    handler: Callable[[_C, web.Request], Awaitable[web.StreamResponse]],
) -> Callable[[_C, web.Request], Awaitable[web.StreamResponse]]:
    """A handler method whose :class:`_Problem` becomes its JSON error."""

    async def wrapped(self: _C, request: web.Request) -> web.StreamResponse:
        try:
            return await handler(self, request)
        except _Problem as exc:
            return json_error(exc.status, str(exc))

    return wrapped


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError as exc:
        raise _Problem(400, f"Body is not JSON ({exc}); send a JSON object.") from exc
    if not isinstance(data, dict):
        raise _Problem(400, f"Body must be a JSON object, got {type(data).__name__}.")
    return data


class _Controls:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings

    def _avatar_stage(self) -> Any:
        try:
            return self.engine.stage("liveportrait")
        except KeyError as exc:
            raise _Problem(409, "This engine has no LivePortrait stage; start it with the model stages.") from exc

    @staticmethod
    def _describe(stage: Stage) -> dict[str, Any]:
        status = stage.status()
        return {"enabled": stage.enabled, "ready": stage.ready, "reason": stage.reason, "label": stage.label,
                "state": status.state, "model_group": status.model_group}

    # ---------------------------------------------------------------------------------------------- stages
    @_answer
    async def get_stages(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"stages": {s.name: self._describe(s) for s in self.engine.stages}})

    @_answer
    async def put_stages(self, request: web.Request) -> web.StreamResponse:
        data = await _json_object(request)
        known = {s.name for s in self.engine.stages}
        unknown = sorted(set(data) - known)
        if unknown:
            raise _Problem(400, f"Unknown stage {', '.join(map(repr, unknown))}; known: {', '.join(sorted(known))}.")
        bad = sorted(name for name, value in data.items() if not isinstance(value, bool))
        if bad:
            raise _Problem(400, f"Stage switches must be true or false; {', '.join(bad)} is not.")
        for name, value in data.items():
            self.engine.set_stage_enabled(name, value)
        return await self.get_stages(request)

    @_answer
    async def get_models(self, request: web.Request) -> web.StreamResponse:
        models: dict[str, Any] = {}
        for stage in self.engine.stages:
            entry = self._describe(stage)
            try:
                entry.update(stage.stats())
            except Exception:  # noqa: BLE001 -- a stage's numbers are extras
                logger.exception("Stage %s stats failed", stage.name)
            models[stage.name] = entry
        return web.json_response({"models": models, "device": self.engine.device})

    @_answer
    async def get_stats(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.engine.stats().to_json())

    # ---------------------------------------------------------------------------------------------- avatar
    @_answer
    async def post_recalibrate(self, request: web.Request) -> web.StreamResponse:
        self._avatar_stage().recalibrate()
        return web.json_response({"recalibrated": True})

    @staticmethod
    def _animation(stage: Any) -> web.StreamResponse:
        return web.json_response({**stage.options.to_json(), **dataclasses.asdict(stage.lost_face)})

    @_answer
    async def get_animation(self, request: web.Request) -> web.StreamResponse:
        return self._animation(self._avatar_stage())

    @_answer
    async def put_animation(self, request: web.Request) -> web.StreamResponse:
        """Any subset of the options (or their old names); the stage checks them all before it changes any."""
        stage = self._avatar_stage()
        data = await _json_object(request)
        try:
            stage.set_options(**data)
        except AnimationOptionError as exc:
            raise _Problem(400, str(exc)) from exc
        return self._animation(stage)

    @_answer
    async def post_avatar(self, request: web.Request) -> web.StreamResponse:
        stage = self._avatar_stage()
        declared = request.content_length
        if declared is not None and declared > MAX_AVATAR_BYTES:
            raise _Problem(413, f"The portrait is {declared} bytes; the limit is {MAX_AVATAR_BYTES} "
                                f"({MAX_AVATAR_BYTES // 2**20} MiB). Send a smaller PNG or JPEG.")
        data = await _read_limited(request, MAX_AVATAR_BYTES)
        kind = image_kind(data)
        if kind is None:
            raise _Problem(415, "The upload is not a PNG, JPEG or WebP image (checked by its first bytes); send the "
                                "portrait file itself as the body.")
        digest = hashlib.sha256(data).hexdigest()[:16]
        folder = self.settings.avatar_dir
        path = folder / f"uploaded-{digest}.{kind}"
        loop = asyncio.get_running_loop()

        def store_and_use() -> None:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            stage.set_avatar(path)

        from mirage_desktop.stages.avatar.stage import AvatarError

        try:
            await loop.run_in_executor(None, store_and_use)
        except AvatarError as exc:
            path.unlink(missing_ok=True)
            raise _Problem(422, str(exc)) from exc
        except StageUnavailable as exc:
            path.unlink(missing_ok=True)
            raise _Problem(409, f"The avatar cannot be checked on this engine: {exc}") from exc
        except OSError as exc:
            raise _Problem(500, f"Cannot store the portrait in {folder}: {exc.strerror or exc}.") from exc
        return web.json_response({"avatar": path.name, "bytes": len(data), "kind": kind})


async def _read_limited(request: web.Request, limit: int) -> bytes:
    """The body, refusing more than ``limit`` bytes even when no Content-Length was sent (chunked uploads)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(256 * 1024):
        size += len(chunk)
        if size > limit:
            raise _Problem(413, f"The portrait is larger than {limit} bytes ({limit // 2**20} MiB); send a "
                                "smaller PNG or JPEG.")
        chunks.append(chunk)
    if not chunks:
        raise _Problem(400, "The upload is empty; send the portrait file as the body.")
    return b"".join(chunks)
