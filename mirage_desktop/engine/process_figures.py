"""The app process's own figures for ``stats()["host_memory"]``: resident size, threads and open handles.

They come from psutil, which reads them the same way on every OS (Windows has no /proc). Read when a snapshot is
taken (about twice a second), never per frame. What fills the heap and how it is handed back is the allocator's
business, not the app's: these are the figures a user or a monitor can check against the task manager.
"""

from __future__ import annotations

import psutil

#: ``rss_file_mb`` is None where the OS does not report the file-backed part (only Linux does)
ProcessSnapshot = dict[str, float | int | None]


class ProcessFigures:
    """RSS (and its file-backed part where the OS reports it), threads, and open descriptors or handles."""

    def __init__(self) -> None:
        self._process = psutil.Process()

    def snapshot(self) -> ProcessSnapshot:
        """``rss_mb``; ``rss_file_mb``: library code and mapped files as they are first touched, which grow RSS
        without being a leak; ``threads``; ``handles``: open file descriptors (POSIX) or handles (Windows), which a
        leaked socket or file grows. All None where the OS refuses to tell (never raises)."""
        try:
            with self._process.oneshot():
                memory = self._process.memory_info()
                threads = self._process.num_threads()
                handles = self._process.num_handles() if psutil.WINDOWS else self._process.num_fds()
        except (psutil.Error, OSError):
            return {"rss_mb": None, "rss_file_mb": None, "threads": None, "handles": None}
        shared = getattr(memory, "shared", None)  # Linux: resident pages backed by a file (or shared memory)
        return {"rss_mb": round(memory.rss / 2**20, 1),
                "rss_file_mb": None if shared is None else round(shared / 2**20, 1),
                "threads": threads, "handles": handles}
