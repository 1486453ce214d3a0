"""The remote engine the settings choose (Engine: Remote... in the window, ``MIRAGE_REMOTE_URL``): it answers
``/health``, it accepts the token, and how long a request takes there and back. Without a network at all the check
says so and is skipped; a short timeout keeps the doctor quick when the engine is down."""

from __future__ import annotations

import json
import socket
import statistics
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from mirage_desktop.doctor.check import FAIL, OK, REMOTE, SKIP, Check
from mirage_desktop.remote.control import RemoteControl, RemoteControlError
from mirage_desktop.remote.target import RemoteTarget, RemoteUrlError, check_remote_url, is_loopback

TIMEOUT_S = 3.0
ROUND_TRIPS = 3
#: TEST-NET-1 (RFC 5737): routed nowhere, so a UDP "connect" to it only asks the kernel for a default route
ROUTE_PROBE = ("192.0.2.1", 9)
SETTING_FIX = "in the window: Engine... > Remote (or the remote_url / remote_token settings, MIRAGE_REMOTE_URL / " \
              "MIRAGE_REMOTE_TOKEN)"


def has_network() -> bool:
    """True when this computer has a route off itself; sends nothing (a UDP socket's connect only picks a route)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(ROUTE_PROBE)
        return True
    except OSError:
        return False


def get_health(target: RemoteTarget, timeout: float) -> dict[str, Any]:
    """``GET /health`` (no token); the remote's JSON."""
    with urllib.request.urlopen(target.url("/health"), timeout=timeout, context=target.ssl_context()) as resp:
        data = json.loads(resp.read().decode("utf-8") or "{}")
    return data if isinstance(data, dict) else {}


def remote_check(url: str, token: str, timeout: float = TIMEOUT_S,
                 network: Callable[[], bool] = has_network) -> Check:
    """Reachable, token accepted, round trip; ``network`` says whether there is a network to try at all."""
    try:
        target = check_remote_url(url)
    except RemoteUrlError as exc:
        return Check(REMOTE, FAIL, f"The remote engine URL cannot be used: {exc}", f"correct the URL {SETTING_FIX}")
    if not token:
        return Check(REMOTE, FAIL, f"No token for the remote engine at {target.base}",
                     f"enter the token the engine printed at its start (or its MIRAGE_TOKEN) {SETTING_FIX}")
    times: list[float] = []
    try:
        for _ in range(ROUND_TRIPS):
            start = time.perf_counter()
            health = get_health(target, timeout)
            times.append(time.perf_counter() - start)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        if not is_loopback(target.host) and not network():
            return Check(REMOTE, SKIP, f"No network here: the remote engine at {target.base} cannot be checked now")
        return Check(REMOTE, FAIL, f"The remote engine at {target.base} does not answer /health ({reason})",
                     "start it there (mirage --headless --http-port 8765 ..., or the Docker image), check the host, "
                     f"port and firewall, or correct the URL {SETTING_FIX}")
    try:
        RemoteControl(target, token, timeout).stages()
    except RemoteControlError as exc:
        if exc.status == 401:
            fix = f"enter the token the engine printed at its start (or its MIRAGE_TOKEN) {SETTING_FIX}"
        elif exc.status == 404:
            fix = "run the same Mirage version on both computers"
        else:
            fix = f"check the engine's log there; correct the URL {SETTING_FIX} if it is not a Mirage engine"
        return Check(REMOTE, FAIL, f"{target.base} answers, but: {exc}", fix)
    about = ", ".join(f"{key} {health[key]}" for key in ("version", "status", "device") if key in health)
    return Check(REMOTE, OK, f"{target.base} answers ({about}), accepts the token; round trip "
                             f"{statistics.median(times) * 1000:.0f} ms")
