"""The process's own memory: which allocator serves it, its resident size and heap figures, and handing free heap
back where glibc's malloc serves it.

Frames, encoder buffers and inference activations are allocated and freed on many threads. glibc keeps freed chunks
inside its arenas and gives back only the top of each heap, so over an hour of changing load (peers coming and
going, stages toggled, portraits swapped) the resident size creeps up with memory that nothing uses. On Linux the
app therefore restarts its own command once, at launch, on jemalloc where the system has it (Debian/Ubuntu:
``libjemalloc2``, which ``scripts/setup.sh`` and the Docker image install; :func:`restart_on_jemalloc`): its
size-classed extents fragment far less, and it hands freed pages back by itself, gradually, about 10 s after they
fall idle, so nothing has to sweep the heap (:meth:`HostMemory.trim` purges them at once, for a measurement that
wants the same state every time). ``MIRAGE_ALLOCATOR=system`` keeps glibc's malloc; the engine's memory
thread then calls ``malloc_trim(0)`` every half minute, off the frame path, to return every free page of every
arena.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import platform
import sys
import threading
import time
from typing import Any

from mirage_desktop.config import ConfigError, allocator_choice

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


#: malloc arenas, for either allocator: the many short-lived threads (encoders, peers) then share freed memory instead
#: of each arena keeping its own (glibc's default is 8 per core)
ARENAS = 2
#: glibc's mallopt parameter number for the arena count (malloc.h: M_ARENA_MAX)
_M_ARENA_MAX = -8
#: jemalloc's options for the restart (its ``MALLOC_CONF``, unless the user set one)
JEMALLOC_CONF = f"narenas:{ARENAS}"
#: the library's name, as the dynamic loader finds it (``ldconfig -p``)
JEMALLOC_SONAME = "libjemalloc.so.2"
#: jemalloc's control name that purges the idle pages of all arenas (MALLCTL_ARENAS_ALL is arena index 4096)
_PURGE_ALL = b"arena.4096.purge"
#: set by the restart for the restarted process: the values it replaced, so they are put back for child processes
_RESTARTED = "MIRAGE_ALLOCATOR_RESTARTED"


def jemalloc_library() -> str | None:
    """The system's jemalloc as LD_PRELOAD takes it, or None (not Linux, a frozen bundle, not installed)."""
    if not sys.platform.startswith("linux") or getattr(sys, "frozen", False):
        return None
    found = ctypes.util.find_library("jemalloc")
    return found if found == JEMALLOC_SONAME else None


def _mallctl() -> Any:
    """jemalloc's control function when jemalloc serves this process's malloc (only it has the symbol), else None."""
    try:
        mallctl = ctypes.CDLL(None).mallctl
    except (OSError, AttributeError):
        return None
    mallctl.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    mallctl.restype = ctypes.c_int
    return mallctl


def active_allocator() -> str:
    """"jemalloc" when it serves this process's malloc, "glibc" for glibc's own, else "system"."""
    return HostMemory().allocator


def limit_glibc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas: frames allocated and freed on many threads (engine, encoders, peers) otherwise
    fragment one arena per thread and RSS grows with every peer that comes and goes. Call before threads start; a
    no-op where glibc's malloc does not serve the process (jemalloc, other libcs) and when ``MALLOC_ARENA_MAX`` is
    set (glibc applied it already)."""
    libc = _glibc()
    if libc is None or _mallctl() is not None or "MALLOC_ARENA_MAX" in os.environ:
        return False
    libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(libc.mallopt(_M_ARENA_MAX, arenas))


def restart_on_jemalloc() -> None:
    """Run this process's own command again (same PID, same arguments) with jemalloc preloaded; call it first thing
    in an entry point, before any thread starts. Does nothing with ``MIRAGE_ALLOCATOR=system``, where jemalloc is
    not installed, or in the restarted process, which takes the preload back out of its environment so child
    processes start plain. If the preload fails (the loader ignores it), the restarted process runs on glibc."""
    replaced = os.environ.pop(_RESTARTED, None)
    if replaced is not None:
        for name, value in json.loads(replaced).items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        return
    try:
        if allocator_choice() != "jemalloc":
            return
    except ConfigError as exc:
        print(f"mirage: {exc} The system allocator is used.", file=sys.stderr)
        return
    lib = jemalloc_library()
    if lib is None or _mallctl() is not None:  # not installed, or already serving (preloaded by the user)
        return
    env = dict(os.environ)
    env[_RESTARTED] = json.dumps({name: os.environ.get(name) for name in ("LD_PRELOAD", "MALLOC_CONF")})
    env["LD_PRELOAD"] = os.pathsep.join(filter(None, (lib, os.environ.get("LD_PRELOAD"))))
    env.setdefault("MALLOC_CONF", JEMALLOC_CONF)
    try:
        os.execve(sys.executable, sys.orig_argv, env)
    except OSError as exc:  # cannot happen for a running interpreter; then simply stay on glibc
        print(f"mirage: could not restart on jemalloc ({exc}); the system allocator is used.", file=sys.stderr)


def _jemalloc_stat(mallctl: Any, name: bytes) -> int:
    value, size = ctypes.c_size_t(0), ctypes.c_size_t(ctypes.sizeof(ctypes.c_size_t))
    if mallctl(name, ctypes.byref(value), ctypes.byref(size), None, ctypes.c_size_t(0)) != 0:
        return 0
    return int(value.value)


def rss_bytes() -> int | None:
    """Resident set size of this process (Linux /proc), or None where it cannot be read."""
    return resident_bytes()[0]


def resident_bytes() -> tuple[int | None, int | None]:
    """(resident size, its file-backed and shared part) from one read of /proc/self/statm, (None, None) where it
    cannot be read. The second is library code and mapped files as they are first touched, which no allocator
    counts."""
    try:
        with open("/proc/self/statm", "rb") as f:
            fields = f.read().split()
        return int(fields[1]) * _PAGE, int(fields[2]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None, None


class HostMemory:
    """RSS, the allocator and its heap figures for ``stats()["host_memory"]``, the trim on demand, and the periodic
    trim (glibc only: jemalloc hands idle pages back by itself)."""

    def __init__(self) -> None:
        self._mallctl = _mallctl()
        self._libc = _glibc() if self._mallctl is None else None
        self.allocator = "jemalloc" if self._mallctl is not None else "glibc" if self._libc is not None else "system"
        self.trims = 0
        self.trimmed_bytes = 0  # RSS given back by all trims so far
        self.last_trim_ms = 0.0  # how long the last trim held the arenas
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def can_trim(self) -> bool:
        return self._libc is not None or self._mallctl is not None

    def trim(self) -> int:
        """Give free heap pages back to the kernel now; returns the RSS released (bytes, 0 where nothing trims).
        glibc: ``malloc_trim(0)``. jemalloc: purge every arena's idle pages at once instead of over the next ~10 s,
        so a measurement (the soak's census) sees the same state every time."""
        if not self.can_trim:
            return 0
        before = rss_bytes() or 0
        t0 = time.perf_counter()
        if self._mallctl is not None:
            self._mallctl(_PURGE_ALL, None, None, None, ctypes.c_size_t(0))
        else:
            self._libc.malloc_trim(0)
        self.last_trim_ms = (time.perf_counter() - t0) * 1000
        released = max(0, before - (rss_bytes() or before))
        self.trims += 1
        self.trimmed_bytes += released
        return released

    def snapshot(self) -> dict[str, Any]:
        rss, rss_file = resident_bytes()
        # python_blocks: objects in Python's own allocator, which maps its arenas itself, outside the C heap's
        # figures: a Python-level leak grows it while heap_in_use stays flat
        out: dict[str, Any] = {"rss_mb": None if rss is None else round(rss / 2**20, 1),
                               "rss_file_mb": None if rss_file is None else round(rss_file / 2**20, 1),
                               "allocator": self.allocator,
                               "heap_in_use_mb": None, "heap_free_mb": None, "heap_resident_mb": None,
                               "python_blocks": sys.getallocatedblocks(),
                               "trims": self.trims, "trimmed_mb": round(self.trimmed_bytes / 2**20, 1),
                               "last_trim_ms": round(self.last_trim_ms, 2)}
        if self._mallctl is not None:
            epoch = ctypes.c_uint64(1)  # writing the epoch refreshes jemalloc's statistics
            self._mallctl(b"epoch", None, None, ctypes.byref(epoch), ctypes.c_size_t(ctypes.sizeof(epoch)))
            allocated = _jemalloc_stat(self._mallctl, b"stats.allocated")
            # in use: bytes handed out; free: resident pages outside active ones (idle pages not yet handed back,
            # metadata); resident: all of the heap's resident pages, so RSS - rss_file - heap_resident is what the
            # heap does not hold (Python's arenas, thread stacks, other mmaps) less what it counts but nothing touched
            resident = _jemalloc_stat(self._mallctl, b"stats.resident")
            out["heap_in_use_mb"] = round(allocated / 2**20, 1)
            out["heap_free_mb"] = round(max(0, resident - _jemalloc_stat(self._mallctl, b"stats.active")) / 2**20, 1)
            out["heap_resident_mb"] = round(resident / 2**20, 1)
        if self._libc is not None and self._libc.has_mallinfo2:
            info = self._libc.mallinfo2()
            # in use: small and large chunks handed out plus mmapped blocks; free: what the arenas keep
            out["heap_in_use_mb"] = round((info.uordblks + info.hblkhd) / 2**20, 1)
            out["heap_free_mb"] = round(info.fordblks / 2**20, 1)
            # resident: an upper bound (pages a trim handed back still count)
            out["heap_resident_mb"] = round((info.arena + info.hblkhd) / 2**20, 1)
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
