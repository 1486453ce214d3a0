"""One remote engine's connection: the video link (:class:`RemoteClient`) and its JSON controls
(:class:`RemoteControl`), with one token.

:class:`~mirage_desktop.control.remote_engine.RemoteEngine` runs the session on it: the local engine has the single
:class:`~mirage_desktop.remote.stage.RemoteStage`, and everything the user switches goes to the remote's
``/control`` endpoints.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiortc import RTCIceServer

from mirage_desktop.config import Settings
from mirage_desktop.remote.client import RemoteClient
from mirage_desktop.remote.control import RemoteControl
from mirage_desktop.remote.target import RemoteTarget, check_remote_url


class RemoteLink:
    """The video client and the controls of one remote engine, with one token."""

    def __init__(self, target: RemoteTarget, token: str, ice_servers: Sequence[RTCIceServer] = ()) -> None:
        self.target = target
        self.client = RemoteClient(target, token, ice_servers)
        self.control = RemoteControl(target, token)

    @classmethod
    def from_settings(cls, settings: Settings) -> RemoteLink | None:
        """The remote engine the settings choose (the window's Engine choice), None for this computer;
        :class:`~mirage_desktop.remote.target.RemoteUrlError` for a URL that cannot be used."""
        if not settings.remote_url:
            return None
        return cls(check_remote_url(settings.remote_url), settings.remote_token)

    @property
    def auth_error(self) -> str | None:
        """Why the remote refused the token, while it does; None otherwise."""
        return self.client.auth_error

    def stop(self) -> None:
        self.client.stop()
