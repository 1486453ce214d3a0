"""The remote engine's controls (``/control/...`` of :mod:`mirage_desktop.api.control`) from this computer.

Plain blocking HTTP (urllib): the headless runner calls it once before starting, the window from a worker thread.
Every failure is a :class:`RemoteControlError` whose message is one line for the user; ``status`` 401 means the
token is wrong.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from mirage_desktop.remote.target import RemoteTarget
from mirage_desktop.api.control import MAX_AVATAR_BYTES, image_kind

TIMEOUT_S = 10.0
CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}


class RemoteControlError(RuntimeError):
    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class RemoteControl:
    """Calls on one remote engine with its token."""

    def __init__(self, target: RemoteTarget, token: str, timeout: float = TIMEOUT_S) -> None:
        self.target = target
        self.token = token
        self.timeout = timeout

    def _call(self, method: str, path: str, body: bytes | None = None,
              content_type: str = "application/json") -> dict[str, Any]:
        request = urllib.request.Request(self.target.url(path), data=body, method=method,
                                         headers={"Authorization": f"Bearer {self.token}"})
        if body is not None:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self.target.ssl_context()) as resp:
                return json.loads(resp.read().decode("utf-8") or "{}")
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read().decode("utf-8")).get("error") or exc.reason
            except (ValueError, AttributeError):
                message = exc.reason
            if exc.code == 401:
                message = f"the remote engine at {self.target.base} refused the token: {message}"
            raise RemoteControlError(str(message), exc.code) from exc
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, Exception) and "CERTIFICATE_VERIFY_FAILED" in str(reason):
                raise RemoteControlError(f"the TLS certificate of {self.target.host} is not trusted ({reason}); "
                                         "trust it with SSL_CERT_FILE=cert.pem or pass --insecure") from exc
            raise RemoteControlError(f"cannot reach the remote engine at {self.target.base}: "
                                     f"{getattr(reason, 'strerror', None) or reason}") from exc
        except (OSError, ValueError) as exc:
            raise RemoteControlError(f"the remote engine at {self.target.base} failed: {exc}") from exc

    def _json(self, method: str, path: str, data: dict[str, Any]) -> dict[str, Any]:
        return self._call(method, path, json.dumps(data).encode("utf-8"))

    # ----------------------------------------------------------------------------------------------- calls
    def stages(self) -> dict[str, Any]:
        """``{name: {"enabled", "ready", "reason", "label"}}``; also the cheapest check of URL and token."""
        return self._call("GET", "/control/stages")["stages"]

    def set_stages(self, **enabled: bool) -> dict[str, Any]:
        return self._json("PUT", "/control/stages", enabled)["stages"]

    def models(self) -> dict[str, Any]:
        return self._call("GET", "/control/models")

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/control/stats")

    def recalibrate(self) -> None:
        self._call("POST", "/control/recalibrate", b"")

    def animation(self) -> dict[str, Any]:
        return self._call("GET", "/control/animation")

    def set_animation(self, **options: Any) -> dict[str, Any]:
        return self._json("PUT", "/control/animation", options)

    def upload_avatar(self, path: Path) -> dict[str, Any]:
        """Send the portrait; checked here first (size, image type) so a mistake is named before any upload."""
        path = Path(path)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise RemoteControlError(f"cannot read {path}: {exc.strerror or exc}") from exc
        if size > MAX_AVATAR_BYTES:
            raise RemoteControlError(f"{path.name} is {size} bytes; the remote engine takes portraits up to "
                                     f"{MAX_AVATAR_BYTES // 2**20} MiB. Choose a smaller file.", 413)
        data = path.read_bytes()
        kind = image_kind(data)
        if kind is None:
            raise RemoteControlError(f"{path.name} is not a PNG, JPEG or WebP image; choose a portrait photo.", 415)
        return self._call("POST", "/control/avatar", data, CONTENT_TYPES[kind])
