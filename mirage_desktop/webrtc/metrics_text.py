"""Prometheus text exposition (format 0.0.4) of the engine's numbers, written by hand.

Names follow the Prometheus conventions: ``mirage_`` prefix, base units (seconds, bytes), counters end in
``_total``. Latencies are histograms with the engine's own buckets (fine below one frame interval) plus
P50/P95/P99 gauges over the recent window, because a histogram's quantiles are only as good as its buckets.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from mirage_desktop.engine.metrics import LatencyWindow

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

QUANTILES = (("0.5", "p50_ms"), ("0.95", "p95_ms"), ("0.99", "p99_ms"))

GPU_FIELDS = (
    ("torch_allocated", "torch_allocated_mb"),
    ("torch_reserved", "torch_reserved_mb"),
    ("device_used", "device_used_mb"),
    ("device_total", "device_total_mb"),
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items()) + "}"


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


class Exposition:
    """Collects metric families; each gets one HELP and TYPE line, then its samples."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._declared: set[str] = set()

    def declare(self, name: str, kind: str, help_text: str) -> None:
        if name not in self._declared:
            self._declared.add(name)
            self._lines.append(f"# HELP {name} {help_text}")
            self._lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        self._lines.append(f"{name}{_labels(labels or {})} {_number(value)}")

    def histogram(self, name: str, window: LatencyWindow, labels: Mapping[str, str] | None = None) -> None:
        """Cumulative buckets from the window's counts; ``_count`` equals the +Inf bucket by construction."""
        labels = dict(labels or {})
        counts = list(window.bucket_counts)  # a snapshot: the engine thread keeps counting meanwhile
        running = 0
        for bound, n in zip((*window.buckets, math.inf), counts):
            running += n
            self.sample(f"{name}_bucket", running, {**labels, "le": _number(bound)})
        self.sample(f"{name}_sum", window.total, labels)
        self.sample(f"{name}_count", running, labels)

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


def _seconds(ms: Any) -> float:
    return float(ms) / 1000.0 if ms is not None else math.nan


def render(
    stats: Mapping[str, Any],
    stage_windows: Mapping[str, LatencyWindow],
    end_to_end: LatencyWindow,
    webrtc: Mapping[str, float] | None = None,
) -> str:
    """The /metrics page from ``engine.stats()``, the engine's latency windows and the server's peer numbers."""
    out = Exposition()
    stages: Mapping[str, Any] = stats.get("stages", {})

    out.declare("mirage_stage_latency_seconds", "histogram", "Time one stage took per frame.")
    for name in stages:
        window = stage_windows.get(name)
        if window is not None:
            out.histogram("mirage_stage_latency_seconds", window, {"stage": name})
    out.declare("mirage_end_to_end_latency_seconds", "histogram", "Capture to output time per frame.")
    out.histogram("mirage_end_to_end_latency_seconds", end_to_end)

    out.declare("mirage_stage_latency_quantile_seconds", "gauge",
                "P50/P95/P99 of a stage's latency over the recent window (NaN before the first frame).")
    for name, entry in stages.items():
        for q, key in QUANTILES:
            out.sample("mirage_stage_latency_quantile_seconds", _seconds(entry.get(key)),
                       {"stage": name, "quantile": q})
    out.declare("mirage_end_to_end_latency_quantile_seconds", "gauge",
                "P50/P95/P99 of capture to output time over the recent window (NaN before the first frame).")
    e2e = stats.get("end_to_end", {})
    for q, key in QUANTILES:
        out.sample("mirage_end_to_end_latency_quantile_seconds", _seconds(e2e.get(key)), {"quantile": q})

    out.declare("mirage_stage_enabled", "gauge", "1 when the stage is switched on.")
    for name, entry in stages.items():
        out.sample("mirage_stage_enabled", 1.0 if entry.get("enabled") else 0.0, {"stage": name})

    out.declare("mirage_frames_per_second", "gauge", "Frame rate over the last two seconds.")
    out.sample("mirage_frames_per_second", float(stats.get("fps_in", 0.0)), {"direction": "input"})
    out.sample("mirage_frames_per_second", float(stats.get("fps_out", 0.0)), {"direction": "output"})
    _counter(out, "mirage_frames_input_total", "Frames read from the source.", stats.get("frames_in", 0))
    _counter(out, "mirage_frames_output_total", "Frames handed to the outputs.", stats.get("frames_out", 0))
    _counter(out, "mirage_frames_dropped_total",
             "Frames replaced in a latest-frame slot before anyone took them.", stats.get("dropped", 0))
    out.declare("mirage_uptime_seconds", "gauge", "Seconds since the engine started.")
    out.sample("mirage_uptime_seconds", float(stats.get("uptime_s", 0.0)))

    gpu: Mapping[str, Any] = stats.get("gpu_memory", {})
    out.declare("mirage_gpu_memory_bytes", "gauge",
                "GPU memory: torch's own counters and the whole device from NVML (absent without a GPU).")
    for kind, key in GPU_FIELDS:
        mb = gpu.get(key)
        if mb is not None:
            out.sample("mirage_gpu_memory_bytes", float(mb) * 2**20, {"kind": kind})

    web = dict(webrtc or {})
    out.declare("mirage_webrtc_peers", "gauge", "Connected or connecting WebRTC peers.")
    out.sample("mirage_webrtc_peers", float(web.get("peers", 0)))
    out.declare("mirage_webrtc_peers_max", "gauge", "The most peers the server accepts.")
    out.sample("mirage_webrtc_peers_max", float(web.get("max_peers", 0)))
    _counter(out, "mirage_webrtc_frames_sent_total", "Video frames handed to peers' encoders.",
             web.get("frames_sent", 0))
    _counter(out, "mirage_webrtc_bytes_sent_total", "Bytes sent to peers (RTP and data channel).",
             web.get("bytes_sent", 0))
    _counter(out, "mirage_webrtc_peers_rejected_total", "Offers refused because the server was full.",
             web.get("rejected", 0))
    return out.text()


def _counter(out: Exposition, name: str, help_text: str, value: Any) -> None:
    out.declare(name, "counter", help_text)
    out.sample(name, float(value or 0))


def metric_names(text: str) -> Iterable[str]:
    """The sample names in an exposition (for tests and the window's diagnostics)."""
    for line in text.splitlines():
        if line and not line.startswith("#"):
            yield line.split("{", 1)[0].split(" ", 1)[0]
