"""Fetching one file: resume the partial, stream the rest, verify it, move it into place.

We keep control of the partial file (rather than calling hf_hub_download) so that:

* an interrupted or cancelled download leaves ``<models_dir>/.downloads/<path>.part`` and resumes with a Range
  request next time (hf_hub_download deletes its partial files on failure);
* the sha256 is checked by us before an atomic ``os.replace`` into place, so a bad file never replaces a good one
  (hf_hub_download only checks the size);
* cancellation (a ``threading.Event``) is noticed between received chunks.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from mirage_desktop.models.errors import DiskFullError, DownloadCancelled, IntegrityError, TargetNotWritableError
from mirage_desktop.models.hub import RemoteFile, connection_cut, open_stream, remote_metadata
from mirage_desktop.models.integrity import HashCache, sha256_file
from mirage_desktop.models.registry import RegistryEntry
from mirage_desktop.models.status import format_bytes, partial_path
from mirage_desktop.os_support import fsync_directory

logger = logging.getLogger(__name__)

_PROGRESS_EVERY = 512 * 1024


def ensure_writable_dir(path: Path) -> None:
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


def disk_free(path: Path) -> int:
    return shutil.disk_usage(path).free


def check_space(path: Path, needed: int) -> None:
    free = disk_free(path)
    if needed > free:
        raise DiskFullError(
            f"Not enough disk space in {path}: {format_bytes(needed)} needed, {format_bytes(free)} free. "
            "Free some space or choose another folder with --models-dir DIR."
        )


class FileTransfer:
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
        self.part = partial_path(entry, models_dir)
        self.meta = self.part.with_name(self.part.name + ".json")

    def _check_remote(self, remote: RemoteFile) -> None:
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

    def _resume_offset(self, remote: RemoteFile) -> int:
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
        remote = remote_metadata(self.entry, self.endpoint, self.timeout)
        self._check_remote(remote)
        total = remote.size if remote.size is not None else self.entry.size
        ensure_writable_dir(self.part.parent)
        ensure_writable_dir(self.target.parent)
        offset = self._resume_offset(remote)
        if total is not None:
            check_space(self.part.parent, total - offset)
        self.meta.write_text(
            json.dumps({"etag": remote.etag, "commit": remote.commit, "size": total}), encoding="utf-8"
        )
        self._stream(remote, offset, total)
        self._verify_and_move(total)

    def _stream(self, remote: RemoteFile, offset: int, total: int | None) -> None:
        if total is not None and offset >= total:
            return
        headers = dict(remote.headers)
        if offset:
            headers["Range"] = f"bytes={offset}-"
            logger.info("Resuming %s at byte %d", self.entry.local_path, offset)
        self.emit(self.entry, "download", offset, total)
        with open_stream(remote, headers, self.timeout) as resp:
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
            raise connection_cut(done, total)

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
        fsync_directory(self.target.parent)  # the rename itself (POSIX; Windows needs nothing)
        cache = HashCache(self.models_dir)
        cache.put(e.local_path, self.target.stat(), digest)
        cache.save()

    def _discard(self) -> None:
        self.part.unlink(missing_ok=True)
        self.meta.unlink(missing_ok=True)
