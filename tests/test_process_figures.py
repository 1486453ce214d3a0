"""The process's own figures (RSS, threads, handles) against what the test itself made and what the kernel says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mirage_desktop.engine.process_figures import ProcessFigures

#: run in a fresh interpreter: in the suite's process other tests' threads start, stop and open files meanwhile
_KNOWN = r"""
import json, os, sys, tempfile, threading, time
import numpy as np
from mirage_desktop.engine.process_figures import ProcessFigures

figures = ProcessFigures()
out = {"before": figures.snapshot()}
stop = threading.Event()
threads = [threading.Thread(target=stop.wait) for _ in range(5)]
for t in threads:
    t.start()
folder = tempfile.mkdtemp()
files = [open(os.path.join(folder, f"f{i}"), "wb") for i in range(7)]
block = np.ones(256 << 20, dtype=np.uint8)  # every page written: 256 MB resident
out["grown"] = figures.snapshot()
del block
stop.set()
for t in threads:
    t.join()
for f in files:
    f.close()
# join() returns once Python is done with a thread; the OS thread ends a moment later
deadline = time.monotonic() + 30
while figures.snapshot()["threads"] > out["before"]["threads"] and time.monotonic() < deadline:
    time.sleep(0.01)
out["after"] = figures.snapshot()
print(json.dumps(out))
"""


def test_figures_follow_threads_files_and_memory_the_process_made() -> None:
    r = subprocess.run([sys.executable, "-c", _KNOWN], capture_output=True, text=True, timeout=120, check=True)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    before, grown, after = out["before"], out["grown"], out["after"]
    assert set(before) == {"rss_mb", "rss_file_mb", "threads", "handles"}
    assert grown["threads"] - before["threads"] == 5 and after["threads"] == before["threads"]
    assert grown["handles"] - before["handles"] == 7 and after["handles"] == before["handles"]
    assert grown["rss_mb"] - before["rss_mb"] >= 250  # 256 MiB, all touched
    assert grown["rss_mb"] - after["rss_mb"] >= 250  # an allocation that large is the system's own mapping: gone


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/self/status")


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="the kernel's own figures are Linux's /proc")
def test_rss_matches_the_kernels_own_figure() -> None:
    ours = ProcessFigures().snapshot()["rss_mb"]
    assert ours is not None and abs(ours - _status_kb("VmRSS") / 1024) < 8.0


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="only Linux reports the file-backed part")
def test_rss_file_counts_touched_pages_of_a_mapped_file(tmp_path: Path) -> None:
    """The kernel's own RssFile + RssShmem (/proc/self/status) is the oracle; a 64 MB mapped file read page by page
    adds its 64 MB there."""
    import mmap

    def kernel_mb() -> float:
        return (_status_kb("RssFile") + _status_kb("RssShmem")) / 1024

    first = ProcessFigures().snapshot()["rss_file_mb"]
    assert first is not None and abs(first - kernel_mb()) < 2
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"\1" * (64 << 20))
    with blob.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        touched = sum(mapped[i] for i in range(0, len(mapped), mmap.PAGESIZE))
        grown = ProcessFigures().snapshot()["rss_file_mb"]
        assert touched == (64 << 20) // mmap.PAGESIZE
        assert grown is not None and abs(grown - kernel_mb()) < 2
        assert grown - first >= 60
