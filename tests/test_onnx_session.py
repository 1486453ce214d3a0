"""SerialSession: runs on one ONNX Runtime session take turns, so its arena stays at one run's peak."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mirage_desktop.vision.onnx_session import SerialSession, open_session

pytest.importorskip("onnxruntime")


class _Recorder:
    """An inner session whose run sleeps and records when it ran (the boundary the wrapper guards)."""

    def __init__(self) -> None:
        self.spans: list[tuple[float, float]] = []
        self._spans_lock = threading.Lock()

    def run(self, output_names: list[str] | None, feeds: dict[str, object]) -> list[object]:
        start = time.perf_counter()
        time.sleep(0.02)
        end = time.perf_counter()
        with self._spans_lock:
            self.spans.append((start, end))
        return [feeds]


def _hammer(session: object, threads: int = 3, runs: int = 4) -> None:
    workers = [threading.Thread(target=lambda: [session.run(None, {}) for _ in range(runs)])  # type: ignore[attr-defined]
               for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def _overlaps(spans: list[tuple[float, float]]) -> int:
    spans = sorted(spans)
    return sum(1 for (_, end), (start, _) in zip(spans, spans[1:]) if start < end)


def test_runs_from_several_threads_never_overlap() -> None:
    bare = _Recorder()
    _hammer(bare)
    assert _overlaps(bare.spans) > 0  # without the wrapper the threads do run at once: the check below can fail
    inner = _Recorder()
    _hammer(SerialSession(inner))  # type: ignore[arg-type]
    assert len(inner.spans) == 12
    assert _overlaps(inner.spans) == 0


def test_serial_session_gives_the_bare_sessions_outputs(shared_dir: Path) -> None:
    import onnxruntime as ort

    from mirage_desktop.vision.onnx_session import session_options

    path = shared_dir / "models" / "scrfd_500m_bnkps.onnx"
    bare = ort.InferenceSession(str(path), session_options(1), providers=["CPUExecutionProvider"])
    wrapped = open_session(str(path), 1, ["CPUExecutionProvider"])
    assert [i.name for i in wrapped.get_inputs()] == [i.name for i in bare.get_inputs()]
    assert [o.name for o in wrapped.get_outputs()] == [o.name for o in bare.get_outputs()]
    assert wrapped.get_providers() == ["CPUExecutionProvider"]
    x = np.random.default_rng(0).random((1, 3, 640, 640), dtype=np.float32)
    name = bare.get_inputs()[0].name
    for want, got in zip(bare.run(None, {name: x}), wrapped.run(None, {name: x})):
        np.testing.assert_array_equal(got, want)


#: shared by the fresh-interpreter scripts below: the real SCRFD model, one input, and the resident size after
#: glibc's free heap pages went back (where glibc's malloc serves the process), so only what ORT keeps counts
_PRELUDE = """
import ctypes, sys, threading, numpy as np, onnxruntime as ort, psutil
import mirage_desktop.vision.onnx_session as osess
path, kind = sys.argv[1], sys.argv[2]
x = np.random.default_rng(0).random((1, 3, 640, 640), dtype=np.float32)
try:
    trim = ctypes.CDLL("libc.so.6").malloc_trim
except (OSError, AttributeError):
    trim = lambda pad: 0
def rss_bytes():
    trim(0)
    return psutil.Process().memory_info().rss
"""
_GROWTH = _PRELUDE + """
if kind == "serial":
    s = osess.open_session(path, 1, ["CPUExecutionProvider"])
else:
    s = ort.InferenceSession(path, osess.session_options(1), providers=["CPUExecutionProvider"])
name = s.get_inputs()[0].name
for _ in range(3):
    s.run(None, {name: x})
before = rss_bytes()
workers = [threading.Thread(target=lambda: [s.run(None, {name: x}) for _ in range(8)]) for _ in range(3)]
for w in workers: w.start()
for w in workers: w.join()
print(rss_bytes() - before)
"""


def _growth_mb(path: Path, kind: str, script: str = _GROWTH) -> float:
    out = subprocess.run([sys.executable, "-c", script, str(path), kind], capture_output=True, text=True,
                         timeout=300, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1e6


def test_overlapping_callers_do_not_grow_the_arena(shared_dir: Path) -> None:
    """The kernel's resident size is the oracle: three threads running one SCRFD session at once leave ORT's CPU
    arena at three runs' peak (measured +40-52 MB); taking turns leaves it at one run's (+5-13 MB)."""
    path = shared_dir / "models" / "scrfd_500m_bnkps.onnx"
    bare = _growth_mb(path, "bare")
    if bare < 30:
        pytest.skip(f"this onnxruntime keeps no overlap peak (+{bare:.0f} MB for bare runs): nothing to guard")
    serial = _growth_mb(path, "serial")
    assert serial < 25, f"taking turns still grew the resident size by {serial:.0f} MB (bare runs: {bare:.0f} MB)"


_TWO_SESSIONS = _PRELUDE + """
if kind == "own":
    osess.share_cpu_arena = lambda: False  # each session its own arena, ORT's default
first, second = (osess.open_session(path, 1, ["CPUExecutionProvider"]) for _ in range(2))
name = first.get_inputs()[0].name
for _ in range(3):
    first.run(None, {name: x})
before = rss_bytes()
for _ in range(3):
    second.run(None, {name: x})
print(rss_bytes() - before)
"""


def test_sessions_share_one_cpu_arena(shared_dir: Path) -> None:
    """The kernel's resident size is the oracle: a second SCRFD session's runs grow an arena of their own by
    default; with the process's one arena they reuse what the first session's runs left free."""
    path = shared_dir / "models" / "scrfd_500m_bnkps.onnx"
    own = _growth_mb(path, "own", _TWO_SESSIONS)  # measured +27 MB on scrfd_500m; shared, 0
    if own < 15:
        pytest.skip(f"a second session's arena grew only {own:.0f} MB here: nothing to compare")
    shared = _growth_mb(path, "shared", _TWO_SESSIONS)
    assert shared < own / 2, f"the second session still grew the resident size by {shared:.0f} MB (own: {own:.0f})"
