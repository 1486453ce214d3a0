"""The window on a remote engine: the session's remote calls cross the network, so they run on the worker pool and
their answers come back as banners; the status bar shows the round trip and a refused token shows once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mirage_desktop.config import Settings
from mirage_desktop.remote.link import RemoteLink
from mirage_desktop.remote.target import RemoteUrlError
from mirage_desktop.session import Session
from mirage_desktop.ui.workers import WorkerPool

Notify = Callable[[str, str], None]


def remote_from_settings(settings: Settings) -> tuple[RemoteLink | None, str]:
    """(link, "") when a remote engine is chosen, (None, "") for this computer, (None, why) for a bad URL."""
    try:
        return RemoteLink.from_settings(settings), ""
    except RemoteUrlError as exc:
        return None, f"Remote engine not used: {exc}"


class RemoteMode:
    """The window's forwards to a remote session (``session.remote`` is set)."""

    def __init__(self, session: Session, pool: WorkerPool, notify: Notify) -> None:
        assert session.remote is not None
        self.session = session
        self.link: RemoteLink = session.remote
        self._pool = pool
        self._notify = notify
        self._auth_shown: str | None = None

    def set_stage(self, name: str, enabled: bool, done: Callable[[], None]) -> None:
        self._pool.run(self.session.set_stage_enabled, name, enabled, on_result=lambda _: done(),
                       on_error=lambda exc: (self._notify("error", f"Remote engine: {exc}"), done()))

    def recalibrate(self) -> None:
        self._pool.run(self.session.recalibrate, on_result=lambda answer: self._notify(*answer),
                       on_error=lambda exc: self._notify("error", f"Recalibrate on the remote engine failed: {exc}"))

    def set_animation_options(self, changes: dict[str, Any]) -> None:
        """The window's animation options, as a dict, to ``PUT /control/animation`` (the remote checks them)."""
        self._pool.run(lambda: self.session.set_animation_options(**changes),
                       on_error=lambda exc: self._notify("error", f"Animation options on the remote engine: {exc}"))

    def status_text(self) -> str:
        return self.link.round_trip_text()

    def auth_message(self) -> str | None:
        """The banner text the first time the remote refuses the token (again after it was accepted meanwhile)."""
        error = self.link.auth_error
        if error is None:
            self._auth_shown = None
            return None
        if error == self._auth_shown:
            return None
        self._auth_shown = error
        return (f"The remote engine at {self.link.target.base} refused the token ({error}). Open Engine... and "
                "paste the token that engine printed when it started; the video passes through meanwhile.")
