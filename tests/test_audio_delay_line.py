"""The delay line against known signals: the oracle is the input itself and the delay asked for.

A ramp input (sample i holds i / SCALE) makes every output sample say which input position it was read from, even
between samples (linear interpolation of a ramp is exact), so the delay of every output sample is known. The
capture and playback callbacks are simulated in the order a sound card would call them: a capture block when its
last sample is in (plus the input latency), a playback block its output latency before it is heard.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from mirage_desktop.audio.delay_line import DEAD_BAND_S, MAX_SLEW, SILENCE, DelayLine

RATE = 48000
SCALE = 1 << 22  # ramp values stay well inside float32's exact range for these lengths


def run(line: DelayLine, signal: np.ndarray, target: Callable[[float], float], *, seconds: float,
        in_block: int = 480, out_block: int = 480, in_latency: float = 0.005, out_latency: float = 0.03,
        in_clock: float = 1.0, jitter: float = 0.0, seed: int = 0, stall: tuple[float, float] | None = None
        ) -> tuple[np.ndarray, np.ndarray]:
    """Play ``signal`` through ``line``; returns (output samples, DAC time of each). ``in_clock``: the capture
    card's true rate over its nominal one; ``jitter``: random error of each reported timestamp (s); ``stall``:
    (from, to) seconds during which the capture delivers nothing (then its late blocks arrive at once)."""
    rng = np.random.default_rng(seed)
    events: list[tuple[float, int, int]] = []  # (call time, 0 write / 1 read, block index)
    k = 0
    while (k + 1) * in_block / (RATE * in_clock) < seconds:
        call = (k + 1) * in_block / (RATE * in_clock) + in_latency
        if stall is not None and stall[0] <= call < stall[1]:
            call = stall[1]
        events.append((call, 0, k))
        k += 1
    j = 0
    while j * out_block / RATE < seconds:
        events.append((j * out_block / RATE - out_latency, 1, j))
        j += 1
    events.sort()
    outs = np.zeros((j * out_block, 1), np.float32)
    for _, kind, index in events:
        if kind == 0:
            a = index * in_block
            block = signal[a:a + in_block]
            if len(block) < in_block:
                continue
            adc = a / (RATE * in_clock) + rng.normal(0.0, jitter) if jitter else a / (RATE * in_clock)
            line.write(block, adc)
        else:
            dac = index * out_block / RATE
            dac_reported = dac + rng.normal(0.0, jitter) if jitter else dac
            line.read(outs[index * out_block:(index + 1) * out_block], dac_reported, target(dac))
    return outs[:, 0], np.arange(len(outs)) / RATE


def ramp(seconds: float) -> np.ndarray:
    return (np.arange(int(seconds * RATE) + RATE) / SCALE).astype(np.float32)[:, None]


def speeds(out: np.ndarray, window: int = 240) -> np.ndarray:
    """Input samples advanced per output sample, over ``window`` samples (a 5 ms pitch; single-sample steps of a
    float32 ramp are too coarse to read a 0.5 % change from)."""
    values = out.astype(np.float64) * SCALE
    return (values[window:] - values[:-window]) / window


def delays(out: np.ndarray, t: np.ndarray, in_clock: float = 1.0) -> np.ndarray:
    """The delay of each output sample of a ramp: its DAC time minus the capture time of what it holds."""
    return t - out * SCALE / (RATE * in_clock)


def test_a_fixed_delay_is_an_exact_copy_of_the_input() -> None:
    signal = np.random.default_rng(1).uniform(-0.5, 0.5, (RATE * 4, 1)).astype(np.float32)
    line = DelayLine(RATE)
    out, t = run(line, signal, lambda _t: 0.1, seconds=3.0)
    shift = int(0.1 * RATE)
    live = t >= 0.5  # once the clock models have the first timestamps
    index = np.flatnonzero(live)
    assert np.array_equal(out[index], signal[index - shift, 0])
    assert line.underruns == 0 and line.overruns == 0 and line.steps == 0
    assert line.actual_delay == pytest.approx(0.1, abs=1e-6)


def test_different_block_sizes_and_rates_keep_the_delay() -> None:
    """Capture in 441-sample blocks at 44.1 kHz, play in 512-sample blocks at 48 kHz: the step is their ratio."""
    in_rate = 44100
    line = DelayLine(in_rate, RATE)
    n = in_rate * 4
    signal = (np.arange(n) / SCALE).astype(np.float32)[:, None]

    def target(_t: float) -> float:
        return 0.08

    rng_events = []
    k = 0
    while (k + 1) * 441 / in_rate < 3.0:
        rng_events.append(((k + 1) * 441 / in_rate + 0.004, 0, k))
        k += 1
    j = 0
    while j * 512 / RATE < 3.0:
        rng_events.append((j * 512 / RATE - 0.02, 1, j))
        j += 1
    rng_events.sort()
    out = np.zeros((j * 512, 1), np.float32)
    for _, kind, index in rng_events:
        if kind == 0:
            line.write(signal[index * 441:(index + 1) * 441], index * 441 / in_rate)
        else:
            line.read(out[index * 512:(index + 1) * 512], index * 512 / RATE, target(0))
    t = np.arange(len(out)) / RATE
    d = t - out[:, 0] * SCALE / in_rate
    live = t >= 0.5
    assert np.abs(d[live] - 0.08).max() < 1e-4
    assert line.underruns == 0 and line.overruns == 0


def test_a_small_change_is_slewed_without_a_pitch_jump() -> None:
    """10 ms more delay at t=1 s: the read speed never leaves 1 +- MAX_SLEW, and the delay settles on the new
    target within the dead band."""
    line = DelayLine(RATE)
    out, t = run(line, ramp(8), lambda now: 0.1 if now < 1.0 else 0.11, seconds=8.0)
    d = delays(out, t)
    live = t >= 0.5
    speed = speeds(out[live])
    assert speed.min() >= 1 - MAX_SLEW - 1e-4 and speed.max() <= 1 + MAX_SLEW + 1e-4
    assert np.abs(d[(t >= 0.5) & (t < 1.0)] - 0.1).max() < 1e-4
    settled = t >= 5.0
    assert np.abs(d[settled] - 0.11).max() <= DEAD_BAND_S + 1e-4
    assert line.steps == 0


def rises(x: np.ndarray, level: float = 0.4) -> np.ndarray:
    return np.flatnonzero((x[1:] > level) & (x[:-1] <= level)) + 1


def test_a_large_change_steps_inside_silence() -> None:
    """150 ms more delay while a click train plays: the step waits for a gap between clicks, so every click comes
    out once, whole and exactly delayed (80 ms before the change, 230 ms after)."""
    signal = np.zeros((RATE * 7, 1), np.float32)
    clicks = np.arange(int(0.25 * RATE), len(signal) - RATE, RATE // 2)
    for c in clicks:
        signal[c:c + 96, 0] = np.hanning(96).astype(np.float32) * 0.8
    line = DelayLine(RATE)
    out, t = run(line, signal, lambda now: 0.08 if now < 2.0 else 0.23, seconds=6.0)
    assert line.steps == 1
    heard, sent = rises(out), rises(signal[:, 0])
    offsets = []
    for f in heard:
        c = sent[np.argmin(np.abs(f - sent - 0.08 * RATE) if t[f] < 2.0 else np.abs(f - sent - 0.23 * RATE))]
        offsets.append((f - c) / RATE)
        assert np.array_equal(out[f - 48:f + 96], signal[c - 48:c + 96, 0]), "a click came out changed"
    offsets_a = np.array(offsets)
    assert np.allclose(offsets_a[t[heard] < 2.0], 0.08, atol=1e-4)
    assert np.allclose(offsets_a[t[heard] >= 2.0], 0.23, atol=1e-4)
    expected = [c for c in sent if 0.55 <= (c / RATE) + 0.08 < 2.0 or 2.0 <= (c / RATE) + 0.23 < 5.9]
    assert len(heard[(t[heard] >= 0.55) & (t[heard] < 5.9)]) == len(expected)  # none lost, none twice


def test_a_change_during_unbroken_sound_crossfades_after_the_timeout() -> None:
    """A loud 440 Hz tone never pauses: the step comes after jump_timeout_s, as a crossfade, so no sample jumps
    further from its neighbour than the tone itself does (no click)."""
    n = RATE * 8
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(n) / RATE)).astype(np.float32)[:, None]
    line = DelayLine(RATE, jump_timeout_s=1.0)
    out, t = run(line, tone, lambda now: 0.05 if now < 2.0 else 0.25, seconds=7.0)
    assert line.steps == 1
    max_step = np.abs(np.diff(tone[:, 0])).max()
    live = t >= 0.5
    assert np.abs(np.diff(out[live])).max() <= max_step * 1.05
    assert np.abs(out[live]).max() <= 0.5 + 1e-6


def test_clock_drift_and_timestamp_jitter_are_followed() -> None:
    """The capture card runs 200 ppm fast and every timestamp is off by a random 2 ms: the delay stays within a
    millisecond of the target and nothing runs dry or over."""
    clock = 1.0002
    line = DelayLine(RATE)
    out, t = run(line, ramp(40), lambda _t: 0.12, seconds=30.0, in_clock=clock, jitter=0.002)
    d = delays(out, t, clock)
    settled = t >= 3.0
    assert np.abs(d[settled] - 0.12).max() < 1e-3
    assert line.underruns == 0 and line.overruns == 0 and line.steps == 0
    speed = speeds(out[settled])
    assert speed.min() >= (1 - MAX_SLEW) / clock - 1e-4 and speed.max() <= (1 + MAX_SLEW) / clock + 1e-4


def test_a_target_below_what_the_buffers_allow_plays_as_early_as_it_can() -> None:
    """Asking for no delay at all: the line plays the newest whole blocks, never runs dry, and says how late."""
    line = DelayLine(RATE)
    out, t = run(line, ramp(5), lambda _t: 0.0, seconds=4.0)
    d = delays(out, t)
    settled = t >= 1.0
    assert line.underruns == 0
    floor = d[settled].min()
    assert floor >= 0.03 + 0.005 and d[settled].max() - floor < 0.012  # output latency + input latency + blocks
    assert line.actual_delay == pytest.approx(float(d[-480]), abs=5e-4)


def test_a_stalled_capture_underruns_and_recovers() -> None:
    line = DelayLine(RATE)
    out, t = run(line, ramp(6), lambda _t: 0.08, seconds=5.0, stall=(2.0, 2.5))
    assert line.underruns > 0
    d = delays(out, t)
    late = t >= 3.0
    assert np.abs(d[late] - 0.08).max() < 1e-4
    stalled = (t >= 2.1) & (t < 2.4)
    assert np.all(out[stalled] == 0.0)
    resumed = out[t >= 2.4] * SCALE
    assert np.all(np.diff(resumed[resumed > 0]) > 0), "nothing heard before was played again"


def test_silence_threshold_default_is_minus_40_dbfs() -> None:
    assert 20 * np.log10(SILENCE) == pytest.approx(-40.0)
