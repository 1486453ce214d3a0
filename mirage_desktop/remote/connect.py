"""From command-line flags to a running remote engine client: checks first, so mistakes are one clear line.

Used by ``mirage --headless --remote URL`` (and the window's ``--remote``): the URL and transport checks of
:mod:`.target`, one token-guarded call (a wrong token ends the run with exit code 2; an engine that does not answer
yet is fine: the video passes through until it does), the ``--enable``/``--avatar`` choices applied on the remote,
and the :class:`~.link.RemoteLink` the session runs on (its engine has the remote stage in place of the model
stages).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from mirage_desktop.remote.control import RemoteControlError
from mirage_desktop.remote.link import RemoteLink
from mirage_desktop.remote.target import RemoteUrlError, check_remote_url, parse_ice_server

logger = logging.getLogger(__name__)


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
) -> RemoteLink:
    """Check everything that can be checked now and return the link (its video client not started yet)."""
    try:
        target = check_remote_url(url, insecure)
        ice = [parse_ice_server(text) for text in ice_servers]
    except RemoteUrlError as exc:
        raise RemoteSetupError(str(exc)) from exc
    if not token:
        raise RemoteSetupError(f"--remote {target.base} needs that engine's token: pass --token (it is printed when "
                               "the engine starts, or set with MIRAGE_TOKEN there).")
    link = RemoteLink(target, token, ice)
    control = link.control
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
        return link
    try:
        if enable is not None:
            current = control.stages()
            control.set_stages(**{name: name in enable for name in current})
        if avatar is not None:
            control.upload_avatar(avatar)
    except RemoteControlError as exc:
        raise RemoteSetupError(f"{'--avatar' if avatar is not None else '--enable'} on the remote engine: "
                               f"{exc}") from exc
    return link
