"""The engine's host memory figures and trim, against what the kernel says (/proc/self/status) and known sizes."""

from __future__ import annotations

import json
import platform
import subprocess
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


#: run in a fresh interpreter: in the suite's process other tests' threads allocate and free meanwhile
_FRAGMENT = r"""
import ctypes, json
from mirage_desktop.engine.host_memory import HostMemory

def vmrss_mb():
    with open("/proc/self/status") as f:
        return int(next(x for x in f if x.startswith("VmRSS:")).split()[1]) / 1024

libc = ctypes.CDLL(None)
libc.malloc.argtypes, libc.malloc.restype = [ctypes.c_size_t], ctypes.c_void_p
libc.free.argtypes, libc.free.restype = [ctypes.c_void_p], None
host = HostMemory()
out = {"can_trim": host.can_trim, "before": host.snapshot()}
chunk = 64 * 1024  # below glibc's mmap threshold: these live inside the arena
blocks = [libc.malloc(chunk) for _ in range(4000)]  # 250 MB
for b in blocks:
    ctypes.memset(b, 1, chunk)  # touch: resident
out["grown"] = host.snapshot()
for b in blocks[0::2]:  # every other block: free, but the heap cannot shrink from its top
    libc.free(b)
out["fragmented"] = host.snapshot()
out["vmrss_before_trim"] = vmrss_mb()
out["released"] = host.trim()
out["vmrss_after_trim"] = vmrss_mb()
out["after"] = host.snapshot()
for b in blocks[1::2]:
    libc.free(b)
print(json.dumps(out))
"""


@glibc
def test_heap_figures_follow_a_known_allocation_and_trim_gives_fragmented_memory_back() -> None:
    r = subprocess.run([sys.executable, "-c", _FRAGMENT], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["can_trim"]
    assert out["grown"]["heap_in_use_mb"] - out["before"]["heap_in_use_mb"] >= 240
    assert out["fragmented"]["heap_free_mb"] - out["grown"]["heap_free_mb"] >= 120
    assert out["vmrss_after_trim"] < out["vmrss_before_trim"] - 100  # the kernel agrees: pages went back
    assert out["released"] >= 100 * 2**20
    assert out["after"]["trims"] == 1 and out["after"]["trimmed_mb"] >= 100


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
