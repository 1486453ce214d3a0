"""HTTPS for the server itself (``--tls-cert``/``--tls-key``), for an engine reached over the internet without a
reverse proxy: the token and the WebRTC offer must not cross a network in clear text."""

from __future__ import annotations

import ssl
from pathlib import Path


class TlsError(ValueError):
    """The certificate or key cannot be used; the message names the file and the fix."""


def server_ssl_context(cert: Path, key: Path | None = None) -> ssl.SSLContext:
    """A TLS 1.2+ server context from a PEM certificate (chain) and its private key (or one PEM holding both)."""
    for label, path in (("certificate", cert), ("key", key)):
        if path is not None and not Path(path).is_file():
            raise TlsError(f"TLS {label} {path} does not exist; pass the PEM file (e.g. from Let's Encrypt or "
                           "`openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem`).")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key) if key is not None else None)
    except (ssl.SSLError, OSError) as exc:
        raise TlsError(f"Cannot use TLS certificate {cert} with key {key or cert}: {exc}. Check that the key "
                       "matches the certificate and both are PEM files.") from exc
    return context
