"""Model files: the registry of what the app can download, the downloader, and the ``mirage-models`` CLI.

``registry`` (what exists), ``status`` (what is on disk), ``integrity`` (sha256 and its cache), ``hub`` (the
Hugging Face client), ``transfer`` (one file: resume, verify, move), ``download`` (the public API), ``errors``.

Qt-free: the window's download dialog calls :func:`download` from a worker thread.
"""

from mirage_desktop.models.download import DownloadReport, ProgressEvent, download
from mirage_desktop.models.errors import DownloadCancelled, ModelDownloadError
from mirage_desktop.models.status import FileStatus, missing_for, status, verify
from mirage_desktop.models.registry import (
    DEFAULT_SCRFD_FILE,
    REGISTRY,
    RegistryEntry,
    entries_for,
    liveportrait_paths,
    scrfd_path,
)

__all__ = [
    "DEFAULT_SCRFD_FILE",
    "REGISTRY",
    "DownloadCancelled",
    "DownloadReport",
    "FileStatus",
    "ModelDownloadError",
    "ProgressEvent",
    "RegistryEntry",
    "download",
    "entries_for",
    "liveportrait_paths",
    "missing_for",
    "scrfd_path",
    "status",
    "verify",
]
