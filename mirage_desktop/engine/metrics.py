"""Latency, rate and memory metrics, cheap enough to leave on for every frame.

Recording a sample is two array writes and a counter bump on the thread that owns the window (single writer, no
lock); readers on other threads take a snapshot, which may miss the newest sample but never sees garbage.
"""

from __future__ import annotations

import bisect
import logging
import time
from typing import Any

import numpy as np

from mirage_desktop.engine.process_figures import ProcessFigures

logger = logging.getLogger(__name__)

#: Histogram bucket upper bounds in seconds: fine below one 30 fps frame interval, coarse above.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.020, 0.025, 0.033,
    0.050, 0.075, 0.100, 0.150, 0.200, 0.300, 0.500, 1.0, 2.5, 5.0,
)


class LatencyWindow:
    """The last ``size`` latencies (seconds) in a ring buffer, plus cumulative histogram counts."""

    def __init__(self, size: int = 600, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self._ring = np.zeros(size, dtype=np.float64)
        self._size = size
        self._n = 0  # total samples ever recorded
        self.buckets = buckets
        self.bucket_counts = [0] * (len(buckets) + 1)  # last one is +Inf
        self.total = 0.0

    def add(self, seconds: float) -> None:
        self._ring[self._n % self._size] = seconds
        self.bucket_counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.total += seconds
        self._n += 1

    @property
    def count(self) -> int:
        return self._n

    def latest(self) -> float | None:
        """The newest sample (seconds), or None before the first."""
        n = self._n
        return float(self._ring[(n - 1) % self._size]) if n else None

    def values(self) -> np.ndarray:
        """A copy of the samples currently in the window (oldest order not guaranteed)."""
        n = min(self._n, self._size)
        return self._ring[:n].copy()

    def percentiles_ms(self, qs: tuple[float, ...] = (50.0, 95.0, 99.0)) -> list[float] | None:
        """Percentiles in milliseconds (linear interpolation), or None before the first sample."""
        vals = self.values()
        if vals.size == 0:
            return None
        return [float(v) * 1000.0 for v in np.percentile(vals, qs)]

    def summary(self) -> dict[str, float | None]:
        p = self.percentiles_ms()
        if p is None:
            return {"p50_ms": None, "p95_ms": None, "p99_ms": None}
        return {"p50_ms": round(p[0], 3), "p95_ms": round(p[1], 3), "p99_ms": round(p[2], 3)}

    def reset(self) -> None:
        self._n = 0
        self.total = 0.0
        self.bucket_counts = [0] * (len(self.buckets) + 1)


class RateMeter:
    """Events per second over the last ``horizon`` seconds, from a ring of timestamps."""

    def __init__(self, size: int = 256, horizon: float = 2.0) -> None:
        self._t = np.zeros(size, dtype=np.float64)
        self._size = size
        self._n = 0
        self.horizon = horizon

    def tick(self, now: float | None = None) -> None:
        self._t[self._n % self._size] = time.perf_counter() if now is None else now
        self._n += 1

    def rate(self, now: float | None = None) -> float:
        n = min(self._n, self._size)
        if n < 2:
            return 0.0
        now = time.perf_counter() if now is None else now
        ts = self._t[:n]
        recent = ts[ts >= now - self.horizon]
        if recent.size < 2:
            return 0.0
        span = now - float(recent.min())
        return float((recent.size - 1) / span) if span > 0 else 0.0


class GpuMemory:
    """GPU memory from torch (what our tensors hold) and NVML (the whole device, onnxruntime included).

    Queried only when a snapshot is taken (about twice a second), never per frame.
    """

    def __init__(self) -> None:
        self._nvml_handle: Any = None
        self._nvml_tried = False

    def _nvml(self) -> Any:
        if not self._nvml_tried:
            self._nvml_tried = True
            try:
                import pynvml

                pynvml.nvmlInit()
                self._nvml_handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            except Exception:  # no NVIDIA driver: "n/a" is the honest answer
                self._nvml_handle = None
        return self._nvml_handle

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "torch_allocated_mb": None,
            "torch_reserved_mb": None,
            "device_used_mb": None,
            "device_total_mb": None,
            "available": False,
        }
        import sys

        torch = sys.modules.get("torch")  # never import torch just to say "n/a"
        if torch is not None:
            try:
                if torch.cuda.is_available() and torch.cuda.is_initialized():
                    out["torch_allocated_mb"] = round(torch.cuda.memory_allocated() / 2**20, 1)
                    out["torch_reserved_mb"] = round(torch.cuda.memory_reserved() / 2**20, 1)
                    out["available"] = True
            except Exception:
                pass
        handle = self._nvml()
        if handle is not None:
            try:
                import pynvml

                info = pynvml.nvmlDeviceGetMemoryInfo(handle)
                out["device_used_mb"] = round(info.used / 2**20, 1)
                out["device_total_mb"] = round(info.total / 2**20, 1)
                out["available"] = True
            except Exception:
                pass
        return out


class EngineMetrics:
    """All the engine's numbers: per-stage and end-to-end latency, frame counters, rates, GPU memory and the
    process's own figures (RSS, threads, handles); the dropped frames are counted by the slots, see
    :attr:`Engine.dropped`."""

    def __init__(self, window: int = 600) -> None:
        self._window = window
        self.stages: dict[str, LatencyWindow] = {}
        self.end_to_end = LatencyWindow(window)
        self.frames_in = 0
        self.frames_out = 0
        self.fps_in = RateMeter()
        self.fps_out = RateMeter()
        self.gpu = GpuMemory()
        self.host = ProcessFigures()
        self.started = time.perf_counter()

    def stage(self, name: str) -> LatencyWindow:
        win = self.stages.get(name)
        if win is None:
            win = self.stages[name] = LatencyWindow(self._window)
        return win

    def reset(self) -> None:
        for win in self.stages.values():
            win.reset()
        self.end_to_end.reset()
        self.frames_in = self.frames_out = 0
        self.fps_in = RateMeter()
        self.fps_out = RateMeter()
        self.started = time.perf_counter()
