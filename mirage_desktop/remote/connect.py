"""From command-line flags to a running remote engine client: checks first, so mistakes are one clear line.

Used by ``mirage --headless --remote URL`` (and the window's ``--remote``): the URL and transport checks of
:mod:`.target`, one token-guarded call (a wrong token ends the run with exit code 2; an engine that does not answer
yet is fine: the video passes through until it does), the ``--enable``/``--avatar`` choices applied on the remote,
and the local engine with the remote stage in place of the model stages.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from mirage_desktop.engine.pipeline import Engine
from mirage_desktop.engine.sources import Source
from mirage_desktop.remote.client import RemoteClient
from mirage_desktop.remote.control import RemoteControl, RemoteControlError
from mirage_desktop.remote.stage import RemoteStage
from mirage_desktop.remote.target import RemoteUrlError, check_remote_url, parse_ice_server

logger = logging.getLogger(__name__)

#: The round-trip window also appears among the engine's latency windows, so /metrics of the client exports it as
#: ``mirage_stage_latency_seconds{stage="remote_round_trip"}`` (histogram and quantiles) with no code of its own.
ROUND_TRIP_METRIC = "remote_round_trip"


class RemoteSetupError(Exception):
    """A mistake that ends the run (exit code 2): bad URL, clear-text token, refused token, bad --avatar."""


def connect_remote(
    url: str,
    token: str,
    *,
    insecure: bool = False,
    ice_servers: Iterable[str] = (),
    enable: set[str] | None = None,
    avatar: Path | None = None,
    warn: Callable[[str], None] = logger.warning,
) -> RemoteClient:
    """Check everything that can be checked now and return the (not yet started) client."""
    try:
        target = check_remote_url(url, insecure)
        ice = [parse_ice_server(text) for text in ice_servers]
    except RemoteUrlError as exc:
        raise RemoteSetupError(str(exc)) from exc
    if not token:
        raise RemoteSetupError(f"--remote {target.base} needs that engine's token: pass --token (it is printed when "
                               "the engine starts, or set with MIRAGE_TOKEN there).")
    control = RemoteControl(target, token)
    try:
        control.stages()
    except RemoteControlError as exc:
        if exc.status == 401:
            raise RemoteSetupError(str(exc)) from exc
        if exc.status == 404:
            raise RemoteSetupError(f"{target.base} answers, but is not a Mirage engine of this version "
                                   f"(no /control/stages): {exc}") from exc
        warn(f"{exc}; the video passes through until it answers")
        if enable is not None or avatar is not None:
            warn("--enable/--avatar could not be applied on the remote engine")
        return RemoteClient(target, token, ice)
    try:
        if enable is not None:
            current = control.stages()
            control.set_stages(**{name: name in enable for name in current})
        if avatar is not None:
            control.upload_avatar(avatar)
    except RemoteControlError as exc:
        raise RemoteSetupError(f"{'--avatar' if avatar is not None else '--enable'} on the remote engine: "
                               f"{exc}") from exc
    return RemoteClient(target, token, ice)


def build_remote_engine(
    client: RemoteClient,
    source: Source,
    fallback_source: Callable[[], Source],
    *,
    every_frame: bool = False,
    max_frames: int | None = None,
) -> Engine:
    """The local engine of a remote run: capture and outputs here, one stage that is the remote engine."""
    engine = Engine(source, [RemoteStage(client)], every_frame=every_frame, max_frames=max_frames,
                    device="remote", fallback_source=fallback_source)
    engine.metrics.stages[ROUND_TRIP_METRIC] = client.round_trip
    return engine
