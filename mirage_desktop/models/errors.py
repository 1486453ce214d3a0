"""What can go wrong fetching a model file, one class per cause, each message naming the fix.

``fatal`` says whether the same cause would fail every remaining file too, so the download stops instead of
trying them one by one.
"""

from __future__ import annotations


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
