"""The public download API: fetch a group of registry files, with retries, progress events and cancellation.

No Qt here: the window's dialog calls :func:`download` from a worker thread and shows the :class:`ProgressEvent` s.
One file's transfer is :mod:`.transfer`, the hub client :mod:`.hub`, what is already there :mod:`.status`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mirage_desktop.models.errors import DownloadCancelled, ModelDownloadError
from mirage_desktop.models.hub import hub_endpoint, is_transient, translate_error
from mirage_desktop.models.registry import REGISTRY, RegistryEntry, entries_for
from mirage_desktop.models.status import MISSING, FileStatus, status
from mirage_desktop.models.transfer import FileTransfer

logger = logging.getLogger(__name__)


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
    hub = hub_endpoint(endpoint)
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
                FileTransfer(entry, models_dir, hub, emit=emit, cancel=cancel, timeout=timeout).run()
            except BaseException as exc:
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                err = translate_error(exc, entry, hub)
                if err is not exc:
                    err.__cause__ = exc
                if is_transient(err) and attempt < retries and not cancel.is_set():
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
