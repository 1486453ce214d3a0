import pytest

from mirage_desktop.engine.metrics import LATENCY_BUCKETS, LatencyWindow, RateMeter


def test_percentiles_match_numpy_on_known_data() -> None:
    win = LatencyWindow(size=1000)
    for ms in range(1, 101):  # 1..100 ms
        win.add(ms / 1000.0)
    p50, p95, p99 = win.percentiles_ms()
    assert p50 == pytest.approx(50.5)
    assert p95 == pytest.approx(95.05)
    assert p99 == pytest.approx(99.01)


def test_window_keeps_only_the_newest_samples() -> None:
    win = LatencyWindow(size=10)
    for _ in range(100):
        win.add(1.0)
    for _ in range(10):
        win.add(0.002)
    assert win.percentiles_ms()[2] == pytest.approx(2.0)
    assert win.count == 110


def test_empty_window_reports_none() -> None:
    assert LatencyWindow().percentiles_ms() is None
    assert LatencyWindow().summary() == {"p50_ms": None, "p95_ms": None, "p99_ms": None}


def test_histogram_buckets_count_each_sample_once() -> None:
    win = LatencyWindow()
    samples = [0.0004, 0.001, 0.0011, 0.03, 0.5, 9.0]
    for s in samples:
        win.add(s)
    assert sum(win.bucket_counts) == len(samples)
    assert win.bucket_counts[0] == 1  # <= 0.5 ms
    assert win.bucket_counts[1] == 1  # 1 ms lands in the le=0.001 bucket
    assert win.bucket_counts[-1] == 1  # 9 s is above every bound
    assert win.total == pytest.approx(sum(samples))
    assert list(LATENCY_BUCKETS) == sorted(LATENCY_BUCKETS)


def test_rate_meter_measures_a_steady_rate() -> None:
    meter = RateMeter(horizon=2.0)
    for i in range(61):
        meter.tick(100.0 + i / 30.0)
    assert meter.rate(now=102.0) == pytest.approx(30.0, rel=0.02)
    assert meter.rate(now=200.0) == 0.0  # nothing recent
