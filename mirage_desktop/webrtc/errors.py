"""What the WebRTC side refuses, for the HTTP API to answer as its JSON error (this side knows nothing of HTTP)."""

from __future__ import annotations


class BadRequest(Exception):
    """An offer or message the peers' side refuses: malformed (400) or no room for another peer (503).

    ``status``, the message and ``headers`` (such as ``Retry-After``) go back as the JSON error.
    """

    def __init__(self, message: str, status: int = 400, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers
