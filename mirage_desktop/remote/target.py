"""Where the remote engine is and how to talk to it safely: URL checks, TLS verification, ICE servers.

The token is a password to the remote GPU: it must never cross a network in clear text. ``http://`` is therefore
accepted only for a loopback host (this computer, or an SSH tunnel to the engine) unless the user says
``--insecure``; ``https://`` certificates are verified with the system's trust store (``SSL_CERT_FILE`` adds a
self-signed one) unless ``--insecure``.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from aiortc import RTCIceServer


class RemoteUrlError(ValueError):
    """The remote URL or an ICE server cannot be used; the message names the fix."""


@dataclass(frozen=True)
class RemoteTarget:
    """A checked remote engine address. ``base`` has no trailing slash (``https://gpu.example:8765``)."""

    base: str
    host: str
    secure: bool
    insecure: bool = False

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def ssl_context(self) -> ssl.SSLContext | None:
        """None for http; a verifying context for https, or a non-verifying one with ``--insecure``."""
        if not self.secure:
            return None
        context = ssl.create_default_context()  # honours SSL_CERT_FILE / SSL_CERT_DIR
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1): traffic that never leaves this computer."""
    if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_remote_url(url: str, insecure: bool = False) -> RemoteTarget:
    """Parse and check ``--remote URL``; refuses clear-text http to a host off this computer unless ``insecure``."""
    text = url.strip()
    if "://" not in text:
        raise RemoteUrlError(f"--remote {url!r} needs a scheme: https://HOST:PORT (or http://127.0.0.1:PORT for an "
                             "engine on this computer or an SSH tunnel).")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise RemoteUrlError(f"--remote {url!r}: use an http:// or https:// URL, not {parts.scheme}://.")
    host = parts.hostname or ""
    if not host:
        raise RemoteUrlError(f"--remote {url!r} has no host name.")
    if parts.username or parts.password:
        raise RemoteUrlError("Put the token in --token (or the window's Token field), not in the URL.")
    if parts.query or parts.fragment:
        raise RemoteUrlError(f"--remote {url!r}: give the engine's address only, without ?query or #fragment.")
    secure = parts.scheme == "https"
    if not secure and not insecure and not is_loopback(host):
        raise RemoteUrlError(
            f"Refusing to send the token in clear text to {host} over http://. Serve the engine over HTTPS "
            "(mirage --headless --tls-cert/--tls-key, or a reverse proxy) and use https://, tunnel it "
            "(ssh -L 8765:127.0.0.1:8765 ...; then http://127.0.0.1:8765), or pass --insecure if you accept that.")
    try:
        port = parts.port
    except ValueError as exc:
        raise RemoteUrlError(f"--remote {url!r}: {exc}.") from exc
    shown = f"[{host}]" if ":" in host else host
    base = f"{parts.scheme}://{shown}" + (f":{port}" if port is not None else "") + parts.path.rstrip("/")
    return RemoteTarget(base=base, host=host, secure=secure, insecure=insecure)


def parse_ice_server(text: str) -> RTCIceServer:
    """``stun:HOST[:PORT]`` or ``turn[s]:USER:PASSWORD@HOST[:PORT][?transport=udp|tcp]`` -> an RTCIceServer."""
    value = text.strip()
    scheme, sep, rest = value.partition(":")
    if not sep or scheme not in ("stun", "stuns", "turn", "turns") or not rest:
        raise RemoteUrlError(f"--ice-server {text!r}: use stun:HOST:PORT or turn:USER:PASSWORD@HOST:PORT.")
    rest = rest.removeprefix("//")
    if scheme.startswith("turn"):
        credentials, at, address = rest.rpartition("@")
        if not at:
            raise RemoteUrlError(f"--ice-server {text!r}: a TURN server needs USER:PASSWORD@ before the host.")
        user, colon, password = credentials.partition(":")
        if not user or not colon:
            raise RemoteUrlError(f"--ice-server {text!r}: write the TURN credentials as USER:PASSWORD@HOST.")
        return RTCIceServer(urls=f"{scheme}:{address}", username=unquote(user), credential=unquote(password))
    if "@" in rest:
        raise RemoteUrlError(f"--ice-server {text!r}: STUN servers take no credentials.")
    return RTCIceServer(urls=f"{scheme}:{rest}")
