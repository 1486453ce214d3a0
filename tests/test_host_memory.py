"""The engine's host memory figures and trim, against what the kernel says (/proc/self/status) and known sizes."""

from __future__ import annotations

import ctypes
import platform
import sys
import time

import pytest

from mirage_desktop.engine.host_memory import HostMemory, rss_bytes

glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                           reason="malloc_trim and mallinfo2 are glibc's")


def vmrss_kernel_mb() -> float:
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_rss_matches_the_kernels_own_figure() -> None:
    ours = rss_bytes()
    assert ours is not None
    assert abs(ours / 2**20 - vmrss_kernel_mb()) < 8.0


@glibc
def test_heap_figures_follow_a_known_allocation_and_trim_gives_fragmented_memory_back() -> None:
    libc = ctypes.CDLL(None)
    libc.malloc.argtypes, libc.malloc.restype = [ctypes.c_size_t], ctypes.c_void_p
    libc.free.argtypes, libc.free.restype = [ctypes.c_void_p], None
    host = HostMemory()
    assert host.can_trim
    before = host.snapshot()
    chunk = 64 * 1024  # below glibc's mmap threshold: these live inside the arena
    blocks = [libc.malloc(chunk) for _ in range(4000)]  # 250 MB
    for b in blocks:
        ctypes.memset(b, 1, chunk)  # touch: resident
    grown = host.snapshot()
    assert grown["heap_in_use_mb"] - before["heap_in_use_mb"] >= 240
    for b in blocks[0::2]:  # every other block: free, but the heap cannot shrink from its top
        libc.free(b)
    fragmented = host.snapshot()
    assert fragmented["heap_free_mb"] - before["heap_free_mb"] >= 120
    rss_before_trim = vmrss_kernel_mb()
    released = host.trim()
    assert vmrss_kernel_mb() < rss_before_trim - 100  # the kernel agrees: pages went back
    assert released >= 100 * 2**20
    after = host.snapshot()
    assert after["trims"] == 1 and after["trimmed_mb"] >= 100
    for b in blocks[1::2]:
        libc.free(b)


@glibc
def test_trim_thread_starts_and_stops() -> None:
    host = HostMemory()
    host.start(every_s=0.05)
    deadline = time.monotonic() + 5
    while host.trims == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    host.stop()
    assert host.trims >= 1
    n = host.trims
    time.sleep(0.2)
    assert host.trims == n  # stopped: no more trims
