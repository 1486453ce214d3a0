"""The Hugging Face hub client: where a pinned file is, what the hub says about it, and its bytes as a stream.

Built on huggingface_hub's public API (it honours ``HF_ENDPOINT``, ``HF_TOKEN``, proxies and ``HF_HUB_OFFLINE``):
the file's metadata comes from its ``resolve`` HEAD call (:func:`huggingface_hub.get_hf_file_metadata`) and the
bytes from a streamed GET through the hub client's HTTP session. The HTTP library is huggingface_hub's own
(httpx2 since huggingface_hub 2.0); its errors are translated here, and only here, into ours.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from mirage_desktop.models.errors import (
    DiskFullError,
    HubUnreachableError,
    ModelDownloadError,
    OfflineModeError,
    RemoteFileMissingError,
    TargetNotWritableError,
)
from mirage_desktop.models.registry import RegistryEntry


def hub_endpoint(endpoint: str | None) -> str:
    """The hub base URL: ``endpoint``, else ``HF_ENDPOINT``, else huggingface_hub's default."""
    if endpoint:
        return endpoint.rstrip("/")
    from huggingface_hub import constants

    # Read at call time, so a changed HF_ENDPOINT (tests, the window's settings) is honoured after import too.
    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


@dataclass
class RemoteFile:
    """Where the bytes of one file are (after the hub's redirects) and what the hub says they are."""

    url: str
    etag: str | None
    commit: str | None
    size: int | None
    headers: dict[str, str]


def translate_error(exc: BaseException, entry: RegistryEntry, endpoint: str) -> ModelDownloadError:
    """Turn huggingface_hub / httpx / OS errors into ours, each with the fix in its message."""
    import httpx2
    from huggingface_hub import errors as hf_errors

    if isinstance(exc, ModelDownloadError):
        return exc
    where = f"{entry.repo_id}@{entry.revision[:12]}:{entry.remote_path}"
    if isinstance(exc, hf_errors.OfflineModeIsEnabled):
        return OfflineModeError(
            "Downloads are disabled because HF_HUB_OFFLINE is set. Unset it (or set it to 0) "
            "and run the download again."
        )
    if isinstance(
        exc, (hf_errors.RemoteEntryNotFoundError, hf_errors.RevisionNotFoundError, hf_errors.RepositoryNotFoundError)
    ):
        return RemoteFileMissingError(
            f"The hub at {endpoint} has no file {where} ({type(exc).__name__}). The pinned source may have moved: "
            f"update Mirage Desktop, or place the file by hand at {entry.local_path} in the model directory."
        )
    if isinstance(exc, hf_errors.HfHubHTTPError):
        code = exc.response.status_code if exc.response is not None else None
        if code == 404:
            return RemoteFileMissingError(
                f"The hub at {endpoint} answered 404 for {where}. The pinned source may have moved: update "
                f"Mirage Desktop, or place the file by hand at {entry.local_path} in the model directory."
            )
        return HubUnreachableError(
            f"The hub at {endpoint} failed for {where} (HTTP {code}). It may be down or rate-limiting: "
            "try again in a few minutes; finished files are kept and partial ones resume."
        )
    if isinstance(
        exc,
        (
            httpx2.ConnectError,
            httpx2.TimeoutException,
            httpx2.NetworkError,
            httpx2.RemoteProtocolError,
            httpx2.ProxyError,
        ),
    ):
        return HubUnreachableError(
            f"Cannot reach the model hub at {endpoint} ({type(exc).__name__}: {exc}). Check the internet "
            "connection and proxy settings (and HF_ENDPOINT if you use a mirror), then run the download again; "
            "finished files are kept and partial ones resume."
        )
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return DiskFullError(
                f"The disk filled up while writing {entry.local_path}. Free some space (or choose "
                "another --models-dir) and run the download again; it resumes."
            )
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
            return TargetNotWritableError(
                f"Cannot write {entry.local_path}: {exc.strerror or exc}. Choose a writable folder with "
                "--models-dir DIR, or fix its permissions."
            )
    return ModelDownloadError(f"Downloading {where} failed: {type(exc).__name__}: {exc}")


def is_transient(err: ModelDownloadError) -> bool:
    return isinstance(err, HubUnreachableError)


def remote_metadata(entry: RegistryEntry, endpoint: str, timeout: float) -> RemoteFile:
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    url = hf_hub_url(entry.repo_id, entry.remote_path, revision=entry.revision, endpoint=endpoint)
    headers = build_hf_headers(library_name="mirage-desktop")
    meta = get_hf_file_metadata(url, timeout=timeout, headers=headers, endpoint=endpoint)
    if meta.commit_hash is None:
        raise HubUnreachableError(
            f"{endpoint} answered for {entry.remote_path} without an X-Repo-Commit header, so it is not a Hugging "
            "Face hub. Check HF_ENDPOINT and any proxy or captive portal in the way."
        )
    location = meta.location or url
    if urlparse(location).netloc != urlparse(url).netloc:
        headers.pop("authorization", None)  # signed CDN urls must not receive the token
    return RemoteFile(location, meta.etag, meta.commit_hash, meta.size, headers)


@contextmanager
def open_stream(remote: RemoteFile, headers: dict[str, str], timeout: float) -> Iterator[Any]:
    """A streamed GET of ``remote`` (no retries: the caller retries and resumes); raises on an HTTP error."""
    from huggingface_hub.utils import hf_raise_for_status, http_stream_backoff

    with http_stream_backoff("GET", remote.url, headers=headers, timeout=timeout, max_retries=0) as resp:
        hf_raise_for_status(resp)
        yield resp


def connection_cut(done: int, total: int) -> Exception:
    """The error for a body that ended early; :func:`translate_error` makes it a retryable unreachable hub."""
    import httpx2

    return httpx2.RemoteProtocolError(f"connection closed after {done} of {total} bytes")
