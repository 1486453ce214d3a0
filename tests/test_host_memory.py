"""The engine's host memory figures and trim, against what the kernel says (/proc/self/status) and known sizes."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mirage_desktop.engine.host_memory import HostMemory, jemalloc_library, rss_bytes

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


#: the scripts below run in a fresh interpreter (in the suite's process other tests' threads allocate and free
#: meanwhile); they read the kernel's RSS and call the C heap directly
_HEAP = r"""
def vmrss_mb():
    with open("/proc/self/status") as f:
        return int(next(x for x in f if x.startswith("VmRSS:")).split()[1]) / 1024

libc = ctypes.CDLL(None)
libc.malloc.argtypes, libc.malloc.restype = [ctypes.c_size_t], ctypes.c_void_p
libc.free.argtypes, libc.free.restype = [ctypes.c_void_p], None
"""
_FRAGMENT = r"""
import ctypes, json
from mirage_desktop.engine.host_memory import HostMemory
""" + _HEAP + r"""
host = HostMemory()
out = {"can_trim": host.can_trim, "before": host.snapshot()}
chunk = 64 * 1024  # below glibc's mmap threshold: these live inside the arena
out["vmrss_start"] = vmrss_mb()
blocks = [libc.malloc(chunk) for _ in range(4000)]  # 250 MB
for b in blocks:
    ctypes.memset(b, 1, chunk)  # touch: resident
out["grown"] = host.snapshot()
out["vmrss_grown"] = vmrss_mb()
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
    kernel_grew = out["vmrss_grown"] - out["vmrss_start"]
    assert abs(out["grown"]["heap_resident_mb"] - out["before"]["heap_resident_mb"] - kernel_grew) < 16
    assert out["vmrss_after_trim"] < out["vmrss_before_trim"] - 100  # the kernel agrees: pages went back
    assert out["released"] >= 100 * 2**20
    assert out["after"]["trims"] == 1 and out["after"]["trimmed_mb"] >= 100


#: scripts/setup.sh installs libjemalloc2 where apt-get exists (CI included); elsewhere the app runs on glibc
with_jemalloc = pytest.mark.skipif(jemalloc_library() is None, reason="no libjemalloc.so.2 on this system")


@with_jemalloc
def test_trim_on_jemalloc_purges_fragmented_memory_at_once() -> None:
    """jemalloc would hand the holes back over ~10 s by itself; the trim (the soak's census) does it now."""
    env = {**os.environ, "LD_PRELOAD": "libjemalloc.so.2", "MALLOC_CONF": "dirty_decay_ms:-1,muzzy_decay_ms:-1"}
    r = subprocess.run([sys.executable, "-c", _FRAGMENT], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["can_trim"] and out["after"]["allocator"] == "jemalloc"
    assert out["grown"]["heap_in_use_mb"] - out["before"]["heap_in_use_mb"] >= 240  # jemalloc's stats.allocated
    assert out["fragmented"]["heap_free_mb"] - out["grown"]["heap_free_mb"] >= 120  # idle, still resident
    assert out["vmrss_after_trim"] < out["vmrss_before_trim"] - 100  # the kernel agrees: pages went back
    # stats.resident follows the kernel both ways: up by the touched blocks, down by the purged ones
    kernel_grew = out["vmrss_grown"] - out["vmrss_start"]
    assert abs(out["grown"]["heap_resident_mb"] - out["before"]["heap_resident_mb"] - kernel_grew) < 16
    kernel_fell = out["vmrss_before_trim"] - out["vmrss_after_trim"]
    assert abs(out["fragmented"]["heap_resident_mb"] - out["after"]["heap_resident_mb"] - kernel_fell) < 16
    assert out["released"] >= 100 * 2**20 and out["after"]["trims"] == 1


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/self/status")


@pytest.mark.skipif(not Path("/proc/self/statm").is_file(), reason="needs Linux /proc")
def test_rss_file_counts_touched_pages_of_a_mapped_file(tmp_path: Path) -> None:
    """The kernel's own RssFile + RssShmem (/proc/self/status) is the oracle; a 64 MB mapped file read page by page
    adds its 64 MB there."""
    import mmap

    def kernel_mb() -> float:
        return (_status_kb("RssFile") + _status_kb("RssShmem")) / 1024

    first = HostMemory().snapshot()["rss_file_mb"]
    assert abs(first - kernel_mb()) < 2
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"\1" * (64 << 20))
    with blob.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        touched = sum(mapped[i] for i in range(0, len(mapped), mmap.PAGESIZE))
        grown = HostMemory().snapshot()["rss_file_mb"]
        assert touched == (64 << 20) // mmap.PAGESIZE
        assert abs(grown - kernel_mb()) < 2
        assert grown - first >= 60


def test_python_blocks_follow_a_known_number_of_live_objects() -> None:
    """Counted against objects this test makes: 200 000 bare objects are 200 000 blocks of Python's allocator."""
    before = HostMemory().snapshot()["python_blocks"]
    made = [object() for _ in range(200_000)]
    grown = HostMemory().snapshot()["python_blocks"]
    del made
    after = HostMemory().snapshot()["python_blocks"]
    assert 200_000 <= grown - before < 210_000
    assert grown - after >= 199_000  # and they are gone again


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


#: a fresh interpreter that starts as ``mirage`` does, then fragments its heap as _FRAGMENT does (250 MB of 64 KB
#: blocks, every other one freed) and, with no trim, keeps allocating small blocks for up to 20 s while it reads the
#: kernel's RSS: glibc never gives the holes back by itself, jemalloc does once they have been idle a while
_CHURN = r"""
import ctypes, json, os, time
print(json.dumps({"pid": os.getpid()}), flush=True)  # before the restart, and again after it
from mirage_desktop.engine.host_memory import HostMemory, restart_on_jemalloc
restart_on_jemalloc()
""" + _HEAP + r"""
chunk = 64 * 1024
blocks = [libc.malloc(chunk) for _ in range(4000)]
for b in blocks:
    ctypes.memset(b, 1, chunk)
for b in blocks[0::2]:
    libc.free(b)
fragmented = vmrss_mb()
lowest, t0 = fragmented, time.monotonic()
while time.monotonic() - t0 < 20 and lowest > fragmented - 100:
    for _ in range(200):  # the allocator's own bookkeeping runs on allocations: what a running app always does
        libc.free(libc.malloc(128 * 1024))
    time.sleep(0.05)
    lowest = min(lowest, vmrss_mb())
with open("/proc/self/maps") as f:
    mapped = "libjemalloc" in f.read()
keys = ("LD_PRELOAD", "MALLOC_CONF", "MIRAGE_ALLOCATOR_RESTARTED")
print(json.dumps({"pid": os.getpid(), "mapped": mapped, "allocator": HostMemory().snapshot()["allocator"],
                  "env": {k: os.environ.get(k) for k in keys}, "given_back_mb": fragmented - lowest,
                  "after_s": time.monotonic() - t0}))
"""


def run_churn(**env: str) -> tuple[list[int], dict]:
    full = {k: v for k, v in os.environ.items() if k not in ("MIRAGE_ALLOCATOR", "LD_PRELOAD", "MALLOC_CONF")}
    full.update(env)
    r = subprocess.run([sys.executable, "-c", _CHURN], capture_output=True, text=True, timeout=180, env=full)
    assert r.returncode == 0, r.stderr
    *starts, last = [json.loads(x) for x in r.stdout.strip().splitlines()]
    return [x["pid"] for x in starts] + [last["pid"]], last


@with_jemalloc
def test_the_restart_runs_the_same_process_on_jemalloc_which_gives_fragmented_memory_back_by_itself() -> None:
    pids, out = run_churn(LD_PRELOAD="libm.so.6")
    assert len(pids) == 3 and len(set(pids)) == 1  # started twice (restarted once), in place (a supervisor's PID stays valid)
    assert out["mapped"] and out["allocator"] == "jemalloc"  # the kernel's map of the process has the library
    # the environment is back as it was, so child processes start plain: a preload of the user's kept
    assert out["env"] == {"LD_PRELOAD": "libm.so.6", "MALLOC_CONF": None, "MIRAGE_ALLOCATOR_RESTARTED": None}
    assert out["given_back_mb"] >= 100  # the freed holes went back to the kernel with no trim


@with_jemalloc
def test_system_allocator_is_the_rollback_and_keeps_fragmented_memory_until_trimmed() -> None:
    pids, out = run_churn(MIRAGE_ALLOCATOR="system")
    assert len(pids) == 2 and not out["mapped"]  # started once
    assert out["allocator"] == ("glibc" if platform.libc_ver()[0] == "glibc" else "system")
    assert out["given_back_mb"] < 30 and out["after_s"] >= 20  # glibc keeps the holes: what the trim thread is for


@with_jemalloc
def test_a_bad_allocator_choice_names_the_choices_and_runs_on_the_system_one() -> None:
    full = {**os.environ, "MIRAGE_ALLOCATOR": "tcmalloc"}
    code = "from mirage_desktop.engine.host_memory import *; restart_on_jemalloc(); print(active_allocator())"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=full)
    assert r.returncode == 0
    assert "MIRAGE_ALLOCATOR" in r.stderr and "jemalloc, system" in r.stderr
    assert r.stdout.strip() in ("glibc", "system")
