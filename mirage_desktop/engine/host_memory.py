"""The process's own memory: resident size, glibc's heap in use and free, and handing free heap pages back.

Frames, encoder buffers and CPU inference activations are allocated and freed on many threads. glibc keeps freed
chunks inside its arenas and gives back only the top of each heap, so over an hour of changing load (peers coming
and going, stages toggled, portraits swapped) the resident size creeps up with memory that nothing uses.
``malloc_trim(0)`` returns every free page of every arena to the kernel; the engine's memory thread calls it every
half minute, off the frame path. Off glibc Linux there is nothing to trim and only the resident size is reported.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
import threading
import time
from typing import Any

TRIM_EVERY_S = 30.0
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class _MallInfo2(ctypes.Structure):
    """glibc >= 2.33 ``struct mallinfo2`` (size_t fields, so it does not wrap at 2 GB like ``mallinfo``)."""

    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _glibc() -> Any:
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    except (OSError, AttributeError):
        return None
    try:
        libc.mallinfo2.argtypes, libc.mallinfo2.restype = [], _MallInfo2
        libc.has_mallinfo2 = True
    except AttributeError:  # glibc < 2.33: trimming still works, the heap figures are n/a
        libc.has_mallinfo2 = False
    return libc


def rss_bytes() -> int | None:
    """Resident set size of this process (Linux /proc), or None where it cannot be read."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


class HostMemory:
    """RSS and glibc heap figures for ``stats()["host_memory"]``, and the periodic trim."""

    def __init__(self) -> None:
        self._libc = _glibc()
        self.trims = 0
        self.trimmed_bytes = 0  # RSS given back by all trims so far
        self.last_trim_ms = 0.0  # how long the last trim held the arenas
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def can_trim(self) -> bool:
        return self._libc is not None

    def trim(self) -> int:
        """Give free heap pages back to the kernel; returns the RSS released (bytes, 0 where nothing to trim)."""
        if self._libc is None:
            return 0
        before = rss_bytes() or 0
        t0 = time.perf_counter()
        self._libc.malloc_trim(0)
        self.last_trim_ms = (time.perf_counter() - t0) * 1000
        released = max(0, before - (rss_bytes() or before))
        self.trims += 1
        self.trimmed_bytes += released
        return released

    def snapshot(self) -> dict[str, Any]:
        rss = rss_bytes()
        out: dict[str, Any] = {"rss_mb": None if rss is None else round(rss / 2**20, 1),
                               "heap_in_use_mb": None, "heap_free_mb": None,
                               "trims": self.trims, "trimmed_mb": round(self.trimmed_bytes / 2**20, 1),
                               "last_trim_ms": round(self.last_trim_ms, 2)}
        if self._libc is not None and self._libc.has_mallinfo2:
            info = self._libc.mallinfo2()
            # in use: small and large chunks handed out plus mmapped blocks; free: what the arenas keep
            out["heap_in_use_mb"] = round((info.uordblks + info.hblkhd) / 2**20, 1)
            out["heap_free_mb"] = round(info.fordblks / 2**20, 1)
        return out

    # ------------------------------------------------------------------------------------------------ thread
    def start(self, every_s: float = TRIM_EVERY_S) -> None:
        """Trim every ``every_s`` seconds on a daemon thread until :meth:`stop` (a no-op where nothing trims)."""
        if self._libc is None or (self._thread is not None and self._thread.is_alive()):
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(every_s,), name="mirage-memory", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def _run(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            self.trim()
