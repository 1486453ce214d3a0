"""The two ways a request ends early: a client mistake (:class:`BadRequest`) or a ready answer (:class:`Refusal`)."""

from __future__ import annotations

from aiohttp import web


class BadRequest(Exception):
    """A client sent something malformed; ``status`` and the message go back as the JSON error."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Refusal(Exception):
    """Carries a ready response (401, 503) out of a helper to the error middleware."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response
