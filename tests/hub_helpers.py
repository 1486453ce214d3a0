"""A tiny stand-in for the Hugging Face hub's ``resolve`` endpoint, on 127.0.0.1, for the downloader tests.

It answers HEAD and GET on ``/{repo_id}/resolve/{revision}/{path}`` the way the hub does for an LFS file served
without a CDN redirect: ``ETag`` (the sha256, quoted), ``X-Repo-Commit``, ``Content-Length``, ``Accept-Ranges`` and
``206 Partial Content`` for ``Range: bytes=N-``. Unknown files get 404 with ``X-Error-Code: EntryNotFound``.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

import pytest

from mirage_desktop.models.registry import RegistryEntry

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubFile:
    body: bytes
    etag: str | None = None  # defaults to sha256(body); set it to lie about the content
    cut_after: int | None = None  # one-shot: send this many bytes of a GET, then drop the connection
    gets: list[str | None] = field(default_factory=list)  # Range header of every GET received


class FakeHub:
    def __init__(self) -> None:
        self.files: dict[str, HubFile] = {}  # "repo/resolve/rev/path" -> file
        self.heads = 0
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _lookup(self) -> HubFile | None:
                return hub.files.get(self.path.lstrip("/"))

            def _missing(self) -> None:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("X-Error-Message", "Entry not found")
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _headers(self, f: HubFile, status: int, length: int, start: int) -> None:
                self.send_response(status)
                self.send_header("ETag", f'"{f.etag or hashlib.sha256(f.body).hexdigest()}"')
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(length))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(f.body) - 1}/{len(f.body)}")
                self.end_headers()

            def do_HEAD(self) -> None:
                hub.heads += 1
                f = self._lookup()
                if f is None:
                    return self._missing()
                self._headers(f, 200, len(f.body), 0)

            def do_GET(self) -> None:
                f = self._lookup()
                if f is None:
                    return self._missing()
                rng = self.headers.get("Range")
                f.gets.append(rng)
                start = 0
                m = re.fullmatch(r"bytes=(\d+)-", rng or "")
                if m:
                    start = int(m.group(1))
                    self._headers(f, 206, len(f.body) - start, start)
                else:
                    self._headers(f, 200, len(f.body), 0)
                data = f.body[start:]
                if f.cut_after is not None:
                    data, f.cut_after = data[: f.cut_after], None
                    self.wfile.write(data)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                for i in range(0, len(data), 64 * 1024):
                    self.wfile.write(data[i : i + 64 * 1024])

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, entry: RegistryEntry, body: bytes, **kwargs: object) -> HubFile:
        f = HubFile(body, **kwargs)  # type: ignore[arg-type]
        self.files[f"{entry.repo_id}/resolve/{entry.revision}/{entry.remote_path}"] = f
        return f

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def make_entry(
    local_path: str,
    body: bytes | None,
    *,
    feature: str = "liveportrait",
    remote: str | None = None,
    repo: str = "test-org/test-models",
) -> RegistryEntry:
    """A registry entry pinned to ``body`` (or unverified when ``body`` is None)."""
    return RegistryEntry(
        feature=feature,
        repo_id=repo,
        revision=COMMIT,
        remote_path=remote or local_path,
        local_path=local_path,
        size=None if body is None else len(body),
        sha256=None if body is None else hashlib.sha256(body).hexdigest(),
        licence="Test licence",
        licence_url="https://example.invalid/licence",
    )


def payload(n: int, seed: int) -> bytes:
    """Deterministic, non-repeating test bytes."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:n])


def serving(hub: FakeHub) -> Iterator[FakeHub]:
    with hub:
        yield hub


def hub_serving(monkeypatch: pytest.MonkeyPatch, *files: tuple[RegistryEntry, bytes]) -> Iterator[FakeHub]:
    """A running hub with ``files`` (entry, body), which huggingface_hub reaches through ``HF_ENDPOINT`` (online):
    the body of the tests' ``hub`` fixtures."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    fake = FakeHub()
    for entry, body in files:
        fake.add(entry, body)
    for h in serving(fake):
        monkeypatch.setenv("HF_ENDPOINT", h.endpoint)
        yield h
