"""Fetches registry files from the Hugging Face hub into the model directory, and says what is there.

Built on huggingface_hub (it honours ``HF_ENDPOINT``, ``HF_TOKEN``, proxies and ``HF_HUB_OFFLINE``): the file's
metadata comes from its ``resolve`` HEAD call and the bytes from a streamed GET through the hub client's session.
We keep control of the partial file so that:

* an interrupted or cancelled download leaves ``<models_dir>/.downloads/<path>.part`` and resumes with a Range
  request next time (hf_hub_download deletes its partial files on failure);
* the sha256 is checked by us before an atomic ``os.replace`` into place, so a bad file never replaces a good one
  (hf_hub_download only checks the size);
* cancellation (a ``threading.Event``) is noticed between 1 MiB chunks, not every 10 MiB.

No Qt here: the window's dialog calls :func:`download` from a worker thread and shows the :class:`ProgressEvent` s.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from mirage_desktop.models.registry import REGISTRY, RegistryEntry, entries_for

logger = logging.getLogger(__name__)

#: Folder (inside the model directory) for partial downloads; same filesystem, so the final rename is atomic.
STAGING_DIR = ".downloads"
#: Digests already computed, keyed by path, size and mtime, so that ``status`` does not re-hash 500 MB each call.
HASH_CACHE_FILE = ".mirage-models-hashes.json"

_CHUNK = 1024 * 1024
_PROGRESS_EVERY = 512 * 1024

PRESENT, MISSING, CORRUPT, PARTIAL = "present", "missing", "corrupt", "partial"


# ----------------------------------------------------------------------------------------------------------- errors
class ModelDownloadError(Exception):
    """A download failed; the message says what happened and what to do."""

    #: When True, the remaining files are not tried either (same cause would fail them all).
    fatal = False


class HubUnreachableError(ModelDownloadError):
    fatal = True


class OfflineModeError(ModelDownloadError):
    fatal = True


class RemoteFileMissingError(ModelDownloadError):
    pass


class IntegrityError(ModelDownloadError):
    """Size or sha256 of the downloaded bytes is not the pinned one."""


class TargetNotWritableError(ModelDownloadError):
    fatal = True


class DiskFullError(ModelDownloadError):
    fatal = True


class DownloadCancelled(ModelDownloadError):
    fatal = True


# ------------------------------------------------------------------------------------------------------ data types
@dataclass(frozen=True)
class ProgressEvent:
    """What the progress bars show. ``phase``: start, download, verify, done, skip, retry, failed.

    ``bytes_done``/``bytes_total`` are for the current file (total ``None`` if the server does not say);
    ``overall_done``/``overall_total`` for the whole request (files already present are not counted).
    """

    entry: RegistryEntry
    phase: str
    bytes_done: int
    bytes_total: int | None
    file_index: int
    file_count: int
    overall_done: int = 0
    overall_total: int | None = None
    message: str = ""


@dataclass(frozen=True)
class FileStatus:
    entry: RegistryEntry
    state: str  # present / missing / corrupt / partial
    path: Path
    size_on_disk: int | None = None
    partial_bytes: int = 0
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.state == PRESENT

    @property
    def verified(self) -> bool:
        return self.entry.verified

    @property
    def bytes_to_download(self) -> int | None:
        """Bytes still to fetch (``None`` when the registry does not know the size)."""
        if self.ok:
            return 0
        if self.entry.size is None:
            return None
        return max(self.entry.size - self.partial_bytes, 0)


@dataclass
class DownloadReport:
    downloaded: list[RegistryEntry] = field(default_factory=list)
    skipped: list[RegistryEntry] = field(default_factory=list)  # already present and good
    failed: list[tuple[RegistryEntry, ModelDownloadError]] = field(default_factory=list)
    not_attempted: list[RegistryEntry] = field(default_factory=list)
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and not self.not_attempted and not self.cancelled


ProgressCallback = Callable[[ProgressEvent], None]


# ------------------------------------------------------------------------------------------------------- hashing
def sha256_file(path: Path, cancel: threading.Event | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * _CHUNK):
            if cancel is not None and cancel.is_set():
                raise DownloadCancelled(f"Cancelled while checking {path}")
            h.update(chunk)
    return h.hexdigest()


class _HashCache:
    """``{local_path: [size, mtime_ns, sha256]}`` stored in the model directory; unreadable or stale = ignored."""

    def __init__(self, models_dir: Path) -> None:
        self.path = Path(models_dir) / HASH_CACHE_FILE
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self.data: dict[str, list] = data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            self.data = {}
        self.dirty = False

    def get(self, key: str, st: os.stat_result) -> str | None:
        row = self.data.get(key)
        if isinstance(row, list) and len(row) == 3 and row[0] == st.st_size and row[1] == st.st_mtime_ns:
            return str(row[2])
        return None

    def put(self, key: str, st: os.stat_result, digest: str) -> None:
        self.data[key] = [st.st_size, st.st_mtime_ns, digest]
        self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        try:
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:  # a read-only model dir still works, it just re-hashes next time
            logger.debug("Could not save the hash cache %s: %s", self.path, exc)


# -------------------------------------------------------------------------------------------------------- status
def _partial_path(entry: RegistryEntry, models_dir: Path) -> Path:
    target = entry.target(Path(models_dir) / STAGING_DIR)
    return target.with_name(target.name + ".part")


def _file_status(entry: RegistryEntry, models_dir: Path, cache: _HashCache | None) -> FileStatus:
    path = entry.target(models_dir)
    part = _partial_path(entry, models_dir)
    partial_bytes = part.stat().st_size if part.is_file() else 0
    if not path.is_file():
        if path.exists():
            return FileStatus(entry, CORRUPT, path, None, partial_bytes, "not a regular file")
        if partial_bytes:
            return FileStatus(entry, PARTIAL, path, None, partial_bytes, f"{partial_bytes} bytes downloaded")
        return FileStatus(entry, MISSING, path)
    st = path.stat()
    if entry.size is not None and st.st_size != entry.size:
        return FileStatus(entry, CORRUPT, path, st.st_size, partial_bytes, f"size {st.st_size} != {entry.size}")
    if entry.sha256 is None:
        return FileStatus(entry, PRESENT, path, st.st_size, 0, "unverified: no pinned sha256")
    digest = cache.get(entry.local_path, st) if cache is not None else None
    if digest is None:
        digest = sha256_file(path)
        if cache is not None:
            cache.put(entry.local_path, st, digest)
    if digest != entry.sha256:
        return FileStatus(entry, CORRUPT, path, st.st_size, partial_bytes, f"sha256 {digest[:12]}… != pinned")
    return FileStatus(entry, PRESENT, path, st.st_size)


def status(models_dir: Path, registry: Sequence[RegistryEntry] = REGISTRY, *, rehash: bool = False) -> list[FileStatus]:
    """State of every registry file. Digests are cached by (size, mtime); ``rehash=True`` ignores the cache."""
    models_dir = Path(models_dir)
    cache = _HashCache(models_dir)
    if rehash:
        cache.data = {}
    out = [_file_status(e, models_dir, cache) for e in registry]
    cache.save()
    return out


def verify(models_dir: Path, registry: Sequence[RegistryEntry] = REGISTRY) -> list[FileStatus]:
    """Re-hash every file that is there (the cache is rebuilt)."""
    return status(models_dir, registry, rehash=True)


def missing_for(feature: str, models_dir: Path, registry: Sequence[RegistryEntry] = REGISTRY) -> list[RegistryEntry]:
    """Files a feature still needs (missing, partial or corrupt). Empty list = the stage can be enabled."""
    wanted = entries_for(feature, registry)
    return [s.entry for s in status(models_dir, wanted) if not s.ok]


def total_to_download(statuses: Sequence[FileStatus]) -> tuple[int, int]:
    """(known bytes still to fetch, number of files of unknown size still to fetch)."""
    known, unknown = 0, 0
    for s in statuses:
        n = s.bytes_to_download
        if n is None:
            unknown += 1
        else:
            known += n
    return known, unknown


def format_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


# ------------------------------------------------------------------------------------------------------ download
def _hub_endpoint(endpoint: str | None) -> str:
    if endpoint:
        return endpoint.rstrip("/")
    from huggingface_hub import constants

    # Read at call time, so a changed HF_ENDPOINT (tests, the window's settings) is honoured after import too.
    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def _writable_dir(path: Path) -> None:
    """Create ``path`` and prove a file can be written there (root ignores permission bits, not read-only mounts)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(
                f"No space left on the device holding {path}. Free some space or choose another "
                "folder with --models-dir DIR."
            ) from exc
        why = exc.strerror or str(exc)
        if isinstance(exc, (FileExistsError, NotADirectoryError)):
            why = f"{why} (a file is in the way of the folder)"
        raise TargetNotWritableError(
            f"Cannot write model files to {path}: {why}. Choose a writable folder with --models-dir DIR "
            "(or MIRAGE_MODELS_DIR / the settings' models_dir), or fix its permissions."
        ) from exc


def _disk_free(path: Path) -> int:
    return shutil.disk_usage(path).free


def _check_space(path: Path, needed: int) -> None:
    free = _disk_free(path)
    if needed > free:
        raise DiskFullError(
            f"Not enough disk space in {path}: {format_bytes(needed)} needed, {format_bytes(free)} free. "
            "Free some space or choose another folder with --models-dir DIR."
        )


@dataclass
class _Remote:
    url: str
    etag: str | None
    commit: str | None
    size: int | None
    headers: dict[str, str]


def _translate(exc: BaseException, entry: RegistryEntry, endpoint: str) -> ModelDownloadError:
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


def _transient(err: ModelDownloadError) -> bool:
    return isinstance(err, HubUnreachableError)


def _remote_metadata(entry: RegistryEntry, endpoint: str, timeout: float) -> _Remote:
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
    return _Remote(location, meta.etag, meta.commit_hash, meta.size, headers)


class _Fetch:
    """One file: resume the partial, stream the rest, verify, rename into place."""

    def __init__(
        self,
        entry: RegistryEntry,
        models_dir: Path,
        endpoint: str,
        *,
        emit: Callable[..., None],
        cancel: threading.Event,
        timeout: float,
    ) -> None:
        self.entry = entry
        self.models_dir = models_dir
        self.endpoint = endpoint
        self.emit = emit
        self.cancel = cancel
        self.timeout = timeout
        self.target = entry.target(models_dir)
        self.part = _partial_path(entry, models_dir)
        self.meta = self.part.with_name(self.part.name + ".json")

    def _check_remote(self, remote: _Remote) -> None:
        e = self.entry
        if e.sha256 is not None and remote.etag and len(remote.etag) == 64 and remote.etag != e.sha256:
            raise IntegrityError(
                f"The hub's copy of {e.remote_path} has sha256 {remote.etag}, not the pinned {e.sha256}; nothing "
                f"was downloaded and {e.local_path} was left unchanged. Update Mirage Desktop, or report it."
            )
        if e.size is not None and remote.size is not None and remote.size != e.size:
            raise IntegrityError(
                f"The hub's copy of {e.remote_path} is {remote.size} bytes, not the pinned {e.size}; nothing was "
                f"downloaded and {e.local_path} was left unchanged."
            )
        if remote.commit and len(e.revision) == 40 and remote.commit != e.revision:
            logger.warning("%s: hub resolved commit %s, pinned %s", e.remote_path, remote.commit, e.revision)

    def _resume_offset(self, remote: _Remote) -> int:
        """Bytes of a matching partial file, or 0 after discarding a stale one."""
        if not self.part.is_file():
            return 0
        try:
            saved = json.loads(self.meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            saved = {}
        have = self.part.stat().st_size
        expected = remote.size if remote.size is not None else self.entry.size
        if saved.get("etag") != remote.etag or (expected is not None and have > expected):
            logger.info("Discarding stale partial download %s", self.part)
            self.part.unlink(missing_ok=True)
            return 0
        return have

    def run(self) -> None:
        remote = _remote_metadata(self.entry, self.endpoint, self.timeout)
        self._check_remote(remote)
        total = remote.size if remote.size is not None else self.entry.size
        _writable_dir(self.part.parent)
        _writable_dir(self.target.parent)
        offset = self._resume_offset(remote)
        if total is not None:
            _check_space(self.part.parent, total - offset)
        self.meta.write_text(
            json.dumps({"etag": remote.etag, "commit": remote.commit, "size": total}), encoding="utf-8"
        )
        self._stream(remote, offset, total)
        self._verify_and_move(total)

    def _stream(self, remote: _Remote, offset: int, total: int | None) -> None:
        from huggingface_hub.utils import hf_raise_for_status, http_stream_backoff

        if total is not None and offset >= total:
            return
        headers = dict(remote.headers)
        if offset:
            headers["Range"] = f"bytes={offset}-"
            logger.info("Resuming %s at byte %d", self.entry.local_path, offset)
        self.emit(self.entry, "download", offset, total)
        with http_stream_backoff("GET", remote.url, headers=headers, timeout=self.timeout, max_retries=0) as resp:
            hf_raise_for_status(resp)
            mode = "ab"
            if offset and resp.status_code != 206:  # server ignored Range: start over
                offset, mode = 0, "wb"
            done = offset
            last = done
            with open(self.part, mode) as f:
                for chunk in resp.iter_bytes():  # as received: a cut keeps every byte that arrived
                    if self.cancel.is_set():
                        raise DownloadCancelled(
                            f"Download of {self.entry.local_path} cancelled; {done} bytes are kept and the next "
                            "download resumes from there."
                        )
                    f.write(chunk)
                    done += len(chunk)
                    if done - last >= _PROGRESS_EVERY:
                        last = done
                        self.emit(self.entry, "download", done, total)
            self.emit(self.entry, "download", done, total)
        if total is not None and done != total:
            import httpx2

            raise httpx2.RemoteProtocolError(f"connection closed after {done} of {total} bytes")

    def _verify_and_move(self, total: int | None) -> None:
        e = self.entry
        size = self.part.stat().st_size
        self.emit(e, "verify", size, total)
        if e.size is not None and size != e.size:
            self._discard()
            raise IntegrityError(
                f"Downloaded {e.remote_path} is {size} bytes, not the pinned {e.size}; it was "
                f"discarded and {e.local_path} was left unchanged. Run the download again."
            )
        digest = sha256_file(self.part, self.cancel)
        if e.sha256 is not None and digest != e.sha256:
            self._discard()
            raise IntegrityError(
                f"Downloaded {e.remote_path} has sha256 {digest}, expected {e.sha256}; it was discarded and "
                f"{e.local_path} was left unchanged. Run the download again; if it keeps failing, the server's "
                "copy differs from the pinned one."
            )
        if e.sha256 is None:
            logger.warning("%s has no pinned digest; downloaded file has sha256 %s", e.local_path, digest)
        with open(self.part, "rb") as f:
            os.fsync(f.fileno())
        os.replace(self.part, self.target)
        self.meta.unlink(missing_ok=True)
        try:
            dir_fd = os.open(self.target.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError:
            pass
        cache = _HashCache(self.models_dir)
        cache.put(e.local_path, self.target.stat(), digest)
        cache.save()

    def _discard(self) -> None:
        self.part.unlink(missing_ok=True)
        self.meta.unlink(missing_ok=True)


def download(
    group: str,
    models_dir: Path,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    *,
    registry: Sequence[RegistryEntry] = REGISTRY,
    endpoint: str | None = None,
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 30.0,
) -> DownloadReport:
    """Download the files of ``group`` (``scrfd``, ``liveportrait`` or ``all``) that are not already good.

    Transient failures (network, hub 5xx) are retried ``retries`` times, waiting ``backoff``·2^n seconds, resuming
    where the bytes stopped. Per-file failures are collected in the report; a cause that would fail every file (no
    network, target not writable, disk full, cancelled) stops the run. Safe to call from a worker thread.
    """
    models_dir = Path(models_dir)
    cancel = cancel or threading.Event()
    hub = _hub_endpoint(endpoint)
    report = DownloadReport()
    wanted = entries_for(group, registry)
    try:
        current = (
            status(models_dir, wanted)
            if models_dir.is_dir()
            else [FileStatus(e, MISSING, e.target(models_dir)) for e in wanted]
        )
    except OSError:
        current = [FileStatus(e, MISSING, e.target(models_dir)) for e in wanted]
    todo = [s for s in current if not s.ok]
    report.skipped = [s.entry for s in current if s.ok]
    sizes = [s.bytes_to_download for s in todo]
    overall_total = None if any(n is None for n in sizes) else sum(n or 0 for n in sizes)
    done_before = 0  # bytes of files finished in this run
    index = {id(s.entry): i for i, s in enumerate(todo)}

    def emit(entry: RegistryEntry, phase: str, done: int, total: int | None, message: str = "") -> None:
        if progress is None:
            return
        event = ProgressEvent(
            entry, phase, done, total, index.get(id(entry), 0), len(todo), done_before + done, overall_total, message
        )
        try:
            progress(event)
        except Exception:  # a broken UI callback must not corrupt the download
            logger.exception("Progress callback failed")

    for entry in report.skipped:
        emit(entry, "skip", 0, entry.size)
    for pos, st in enumerate(todo):
        entry = st.entry
        if cancel.is_set():
            report.cancelled = True
            report.not_attempted.extend(s.entry for s in todo[pos:])
            break
        emit(entry, "start", st.partial_bytes, entry.size)
        attempt = 0
        while True:
            try:
                _Fetch(entry, models_dir, hub, emit=emit, cancel=cancel, timeout=timeout).run()
            except BaseException as exc:
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                err = _translate(exc, entry, hub)
                if err is not exc:
                    err.__cause__ = exc
                if _transient(err) and attempt < retries and not cancel.is_set():
                    delay = backoff * (2**attempt)
                    attempt += 1
                    logger.warning("%s (attempt %d of %d, retrying in %.1f s)", err, attempt, retries + 1, delay)
                    emit(entry, "retry", 0, entry.size, str(err))
                    if cancel.wait(delay):
                        err = DownloadCancelled(f"Download of {entry.local_path} cancelled; partial data is kept.")
                    else:
                        continue
                emit(entry, "failed", 0, entry.size, str(err))
                if isinstance(err, DownloadCancelled):
                    report.cancelled = True
                else:
                    report.failed.append((entry, err))
                if err.fatal:
                    report.not_attempted.extend(s.entry for s in todo[pos + 1 :])
                break
            else:
                report.downloaded.append(entry)
                size = entry.target(models_dir).stat().st_size
                emit(entry, "done", size, size)
                done_before += size
                break
        if report.cancelled or (report.failed and report.failed[-1][1].fatal):
            break
    return report


def iter_licences(entries: Sequence[RegistryEntry]) -> Iterator[tuple[str, str, list[RegistryEntry]]]:
    """(licence, url, entries) groups, in registry order, for showing before a download."""
    seen: dict[str, list[RegistryEntry]] = {}
    urls: dict[str, str] = {}
    for e in entries:
        seen.setdefault(e.licence, []).append(e)
        urls[e.licence] = e.licence_url
    for licence, group in seen.items():
        yield licence, urls[licence], group
