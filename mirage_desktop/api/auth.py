"""Bearer-token auth for the HTTP API, as WHIP/WHEP do it: ``Authorization: Bearer <token>``, compared in
constant time; a missing or wrong token gets 401 with a JSON error and a ``WWW-Authenticate`` challenge."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable

from aiohttp import web

logger = logging.getLogger(__name__)

TOKEN_HINT = "The token is shown in the Mirage window, or set it for headless runs with --token or MIRAGE_TOKEN."


class Refusal(Exception):
    """Carries a ready response (the 401 of :func:`check_request`) out of a helper to the error middleware."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """Every error the API returns: ``{"error": message, "status": status}``."""
    return web.json_response({"error": message, "status": status}, status=status, headers=headers)


def bearer_token(request: web.Request) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header, or None when there is no such header."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def token_matches(given: str, expected: str) -> bool:
    """Constant-time comparison; an empty expected token never matches (the server refuses to run open)."""
    if not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def check_request(request: web.Request, expected: str) -> web.Response | None:
    """None when the request carries the right token, else the 401 response to send."""
    challenge = {"WWW-Authenticate": 'Bearer realm="mirage"'}
    given = bearer_token(request)
    if given is None:
        return json_error(401, f"Missing token: send the header 'Authorization: Bearer <token>'. {TOKEN_HINT}",
                          challenge)
    if not token_matches(given, expected):
        logger.info("Rejected a request to %s from %s: wrong token", request.path, request.remote)
        return json_error(401, f"Wrong token. {TOKEN_HINT}", {**challenge, "WWW-Authenticate":
                          'Bearer realm="mirage", error="invalid_token"'})
    return None


def require_token(token_getter: Callable[[], str]) -> Callable[[web.Request], web.Response | None]:
    """A checker bound to the current token (read on every request, so a rotated token applies at once)."""

    def check(request: web.Request) -> web.Response | None:
        return check_request(request, token_getter())

    return check
