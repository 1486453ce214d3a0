"""``/metrics``: the engine's and the server's numbers as Prometheus text, through prometheus_client.

A custom collector reads the numbers at scrape time (nothing is kept twice). Names follow the Prometheus
conventions: ``mirage_`` prefix, base units (seconds, bytes), counters end in ``_total``. Latencies are histograms
with the engine's own buckets (fine below one frame interval) plus P50/P95/P99 gauges over the recent window,
because a histogram's quantiles are only as good as its buckets.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from mirage_desktop.engine.metrics import LatencyWindow
from mirage_desktop.engine.pipeline import Engine

#: The text format scrapers have read for years (and what /metrics always answered).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

QUANTILES = (("0.5", "p50_ms"), ("0.95", "p95_ms"), ("0.99", "p99_ms"))

GPU_FIELDS = (
    ("torch_allocated", "torch_allocated_mb"),
    ("torch_reserved", "torch_reserved_mb"),
    ("device_used", "device_used_mb"),
    ("device_total", "device_total_mb"),
)


def bucket_bound(bound: float) -> str:
    """The ``le`` label of a bucket, spelled as /metrics always did: ``0.0005``, ``1``, ``+Inf``."""
    if math.isinf(bound):
        return "+Inf"
    return str(int(bound)) if float(bound).is_integer() else repr(float(bound))


def histogram_buckets(window: LatencyWindow) -> tuple[list[tuple[str, float]], float]:
    """Cumulative ``(le, count)`` pairs and the sum, from one snapshot of the window's counts (the engine thread
    keeps counting meanwhile); the ``+Inf`` bucket, hence ``_count``, is their total by construction."""
    counts = list(window.bucket_counts)
    total = window.total
    running = 0
    buckets = []
    for bound, n in zip((*window.buckets, math.inf), counts):
        running += n
        buckets.append((bucket_bound(bound), float(running)))
    return buckets, total


def _seconds(ms: Any) -> float:
    return float(ms) / 1000.0 if ms is not None else math.nan


class EngineCollector(Collector):
    """The engine's stats and latency windows and the server's peer numbers, read on every scrape."""

    def __init__(self, engine: Engine, webrtc: Callable[[], Mapping[str, float]]) -> None:
        self.engine = engine
        self.webrtc = webrtc

    def collect(self) -> Iterator[Metric]:
        stats = self.engine.stats()
        stage_windows = self.engine.metrics.stages
        stages = stats.stages

        stage_latency = HistogramMetricFamily("mirage_stage_latency_seconds", "Time one stage took per frame.",
                                              labels=["stage"])
        for name in stages:
            window = stage_windows.get(name)
            if window is not None:
                buckets, total = histogram_buckets(window)
                stage_latency.add_metric([name], buckets, total)
        yield stage_latency
        end_to_end = HistogramMetricFamily("mirage_end_to_end_latency_seconds", "Capture to output time per frame.")
        buckets, total = histogram_buckets(self.engine.metrics.end_to_end)
        end_to_end.add_metric([], buckets, total)
        yield end_to_end

        stage_q = GaugeMetricFamily(
            "mirage_stage_latency_quantile_seconds",
            "P50/P95/P99 of a stage's latency over the recent window (NaN before the first frame).",
            labels=["stage", "quantile"])
        for name, entry in stages.items():
            for q, key in QUANTILES:
                stage_q.add_metric([name, q], _seconds(getattr(entry.latency, key)))
        yield stage_q
        e2e_q = GaugeMetricFamily(
            "mirage_end_to_end_latency_quantile_seconds",
            "P50/P95/P99 of capture to output time over the recent window (NaN before the first frame).",
            labels=["quantile"])
        for q, key in QUANTILES:
            e2e_q.add_metric([q], _seconds(getattr(stats.end_to_end, key)))
        yield e2e_q

        enabled = GaugeMetricFamily("mirage_stage_enabled", "1 when the stage is switched on.", labels=["stage"])
        for name, entry in stages.items():
            enabled.add_metric([name], 1.0 if entry.enabled else 0.0)
        yield enabled

        fps = GaugeMetricFamily("mirage_frames_per_second", "Frame rate over the last two seconds.",
                                labels=["direction"])
        fps.add_metric(["input"], float(stats.fps_in))
        fps.add_metric(["output"], float(stats.fps_out))
        yield fps
        yield _counter("mirage_frames_input_total", "Frames read from the source.", stats.frames_in)
        yield _counter("mirage_frames_output_total", "Frames handed to the outputs.", stats.frames_out)
        yield _counter("mirage_frames_dropped_total",
                       "Frames replaced in a latest-frame slot before anyone took them.", stats.dropped)
        yield GaugeMetricFamily("mirage_uptime_seconds", "Seconds since the engine started.",
                                value=float(stats.uptime_s))

        gpu = stats.gpu_memory
        memory = GaugeMetricFamily(
            "mirage_gpu_memory_bytes",
            "GPU memory: torch's own counters and the whole device from NVML (absent without a GPU).", labels=["kind"])
        for kind, key in GPU_FIELDS:
            mb = getattr(gpu, key)
            if mb is not None:
                memory.add_metric([kind], float(mb) * 2**20)
        yield memory

        web = dict(self.webrtc())
        yield GaugeMetricFamily("mirage_webrtc_peers", "Connected or connecting WebRTC peers.",
                                value=float(web.get("peers", 0)))
        yield GaugeMetricFamily("mirage_webrtc_peers_max", "The most peers the server accepts.",
                                value=float(web.get("max_peers", 0)))
        yield _counter("mirage_webrtc_frames_sent_total", "Video frames handed to peers' encoders.",
                       web.get("frames_sent", 0))
        yield _counter("mirage_webrtc_bytes_sent_total", "Bytes sent to peers (RTP and data channel).",
                       web.get("bytes_sent", 0))
        yield _counter("mirage_webrtc_peers_rejected_total", "Offers refused because the server was full.",
                       web.get("rejected", 0))
        yield from audio_metrics(stats.outputs.get("microphone"))


def audio_metrics(audio: Mapping[str, Any] | None) -> Iterator[Metric]:
    """The Mirage Microphone's figures (absent while it is off): the delay it aims at and plays with, and its
    dropouts."""
    if not audio:
        return
    yield GaugeMetricFamily("mirage_audio_running", "1 while the Mirage Microphone plays the microphone.",
                            value=1.0 if audio.get("status") == "running" else 0.0)
    yield GaugeMetricFamily("mirage_audio_delay_target_seconds",
                            "The delay the voice should have: the video's plus the offset.",
                            value=_seconds(audio.get("delay_target_ms")))
    yield GaugeMetricFamily("mirage_audio_delay_actual_seconds", "The delay the voice has now (NaN while silent).",
                            value=_seconds(audio.get("delay_actual_ms")))
    yield _counter("mirage_audio_underruns_total", "Audio blocks played as silence because they came late.",
                   audio.get("underruns", 0))
    yield _counter("mirage_audio_overruns_total", "Audio overwritten or lost before it was played.",
                   audio.get("overruns", 0))
    yield _counter("mirage_audio_dropped_blocks_total", "Microphone blocks that reached no virtual microphone.",
                   audio.get("dropped_blocks", 0))


def _counter(name: str, help_text: str, value: Any) -> CounterMetricFamily:
    return CounterMetricFamily(name, help_text, value=float(value or 0))


class MetricsPage:
    """The /metrics body: one private registry (never the process-global one) holding the collector."""

    content_type = CONTENT_TYPE

    def __init__(self, collector: Collector) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)

    def render(self) -> bytes:
        return generate_latest(self.registry)
