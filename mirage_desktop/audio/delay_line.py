"""A ring buffer that plays the microphone back a chosen time later, following a moving target without clicks.

Samples go in with the time their first sample was captured (the sound card's ADC time) and come out for the time
their first sample will be heard (the DAC time): each output sample is the input sample captured ``target``
seconds before it is heard. Both clocks are mapped from sample counts to seconds by a slowly smoothed offset, so
timestamp jitter does not reach the audio and two sound cards' clocks drifting apart are followed by themselves.

When the target moves, the read position follows it without a click or a pitch jump: errors up to
:attr:`DelayLine.jump_s` are slewed away by reading a tiny bit faster or slower (at most ``max_slew``, 0.5 %:
5 ms per second, a pitch change of 9 cents, below what a voice reveals), larger ones wait for a quiet moment and
step there with a short crossfade (or step after ``jump_timeout_s`` of unbroken sound, still crossfaded).
Resampling is linear interpolation; at rest (the error inside a quarter millisecond) the samples are copied
exactly.

One writer thread (the capture callback) and one reader thread (the playback callback): the writer publishes what
it wrote with a single assignment after the samples are in place, so neither side takes a lock.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

#: The default largest speed change when slewing: 0.5 % (5 ms of delay per second).
MAX_SLEW = 0.005
#: Errors above this (seconds) step inside silence instead of slewing.
JUMP_S = 0.02
#: Errors below this (seconds) are left alone: the samples are copied exactly.
DEAD_BAND_S = 0.00025
#: Peak level (full scale 1.0) under which audio counts as silence for a step: -40 dBFS.
SILENCE = 0.01
#: A timestamp that disagrees with the running clock model by more than this (seconds) restarts the model.
CLOCK_RESET_S = 0.05
#: How long the shortest-possible delay remembers its worst case (seconds).
FLOOR_WINDOW_S = 2.0
#: Margin kept over the shortest possible delay, besides a capture block (seconds).
FLOOR_MARGIN = 0.003
#: How much of each new timestamp the clock model takes (per block): about half a second of averaging at 10 ms.
CLOCK_SMOOTHING = 0.02
#: A timestamp off the model by more than CLOCK_RESET_S is a glitch, ignored, unless this many in a row agree.
CLOCK_RESET_BLOCKS = 5


class ClockModel:
    """A sound card's clock as seen through its timestamps: the time of sample 0, so that sample i is at
    ``t0 + i / rate``. Each block's timestamp moves the estimate by CLOCK_SMOOTHING of its error (timestamp jitter
    averages out, a drifting clock is followed); one far off is ignored as a glitch, CLOCK_RESET_BLOCKS far off and
    close to each other restart the model there (the stream really moved: a start settling, a gap)."""

    def __init__(self) -> None:
        self.t0: float | None = None
        self._pending: list[float] = []

    def update(self, observed: float) -> tuple[float, int]:
        """The model after one block whose sample 0 would be at ``observed``; and 1 when it restarted."""
        t0 = self.t0
        if t0 is None:
            self.t0 = observed
            return observed, 1
        if abs(observed - t0) <= CLOCK_RESET_S:
            self._pending.clear()
            self.t0 = t0 + CLOCK_SMOOTHING * (observed - t0)
            return self.t0, 0
        pending = self._pending
        if pending and abs(observed - pending[-1]) > CLOCK_RESET_S:
            pending.clear()
        pending.append(observed)
        if len(pending) < CLOCK_RESET_BLOCKS:
            return t0, 0
        self.t0 = observed
        pending.clear()
        return observed, 1


class DelayLine:
    """Input samples delayed by a target that may move while it plays; mono or multichannel float32.

    ``in_rate``/``out_rate``: the capture and playback sample rates (they may differ: the read step is their
    ratio). Counters: ``underruns`` (blocks played with silence because their samples had not arrived),
    ``overruns`` (the writer overwrote samples the reader still needed), ``steps`` (jumps inside silence).
    ``actual_delay`` is the delay of the last block played (seconds, None before the first)."""

    def __init__(self, in_rate: float, out_rate: float | None = None, *, capacity_s: float = 4.0, channels: int = 1,
                 max_slew: float = MAX_SLEW, jump_s: float = JUMP_S, jump_timeout_s: float = 2.0,
                 crossfade_s: float = 0.005, silence: float = SILENCE) -> None:
        self.in_rate = float(in_rate)
        self.out_rate = float(out_rate if out_rate is not None else in_rate)
        self.capacity = int(math.ceil(capacity_s * self.in_rate))
        self.channels = int(channels)
        self.max_slew = float(max_slew)
        self.jump_s = float(jump_s)
        self.jump_timeout_s = float(jump_timeout_s)
        self.crossfade = max(1, int(round(crossfade_s * self.out_rate)))
        self.silence = float(silence)
        self._ring = np.zeros((self.capacity, self.channels), np.float32)
        #: (samples written in all, ADC time of sample 0 in the clock model): published together, writer only
        self._head: tuple[int, float | None] = (0, None)
        self._in_clock = ClockModel()  # ADC time of input sample 0
        self._out_clock = ClockModel()  # DAC time of output sample 0
        self._played = 0  # output samples produced
        self._pos: float | None = None  # fractional input index of the next output sample
        self._loud_for = 0.0  # seconds a pending step has waited for silence
        self._block_in = 0  # the last capture block's length (samples)
        self._clock_resets = 0  # times the capture clock model started again (a jump in its timestamps)
        self._floor_resets = 0  # the value of _clock_resets the shortest-delay estimate was learnt under
        self._played_to = 0.0  # the input position after the last block played: a restart never goes back
        self._floor_window: deque[tuple[int, float]] = deque()  # (output sample, instant): a falling queue
        self.floor_delay = 0.0  # the shortest delay the buffers allow now (seconds)
        self.underruns = 0
        self.overruns = 0
        self.steps = 0
        self.actual_delay: float | None = None
        self.rate = 1.0  # the last speed factor used (1 at rest)
        fade = 0.5 - 0.5 * np.cos(np.linspace(0.0, math.pi, self.crossfade, dtype=np.float64))
        self._fade_in = fade.astype(np.float32)[:, None]

    # ------------------------------------------------------------------------------------------------- writer
    def write(self, block: np.ndarray, adc_time: float) -> None:
        """Append ``block`` (frames x channels, or frames for mono) captured from ``adc_time`` on."""
        data = block.reshape(len(block), -1)
        n = len(data)
        written, t0 = self._head
        if n >= self.capacity:  # more than the ring holds: only the newest part can ever be played
            adc_time += (n - self.capacity) / self.in_rate
            written += n - self.capacity
            data = data[n - self.capacity:]
            n = self.capacity
        start = written % self.capacity
        first = min(n, self.capacity - start)
        self._ring[start:start + first] = data[:first]
        if first < n:
            self._ring[:n - first] = data[first:]
        t0, reset = self._in_clock.update(adc_time - written / self.in_rate)
        self._clock_resets += reset
        self._block_in = n
        self._head = (written + n, t0)

    @property
    def written(self) -> int:
        return self._head[0]

    def clear(self) -> None:
        """Forget everything (a new capture stream starts from scratch); counters stay."""
        self._head = (0, None)
        self._ring.fill(0.0)
        self._in_clock = ClockModel()
        self._pos = None
        self._out_clock = ClockModel()
        self._played = 0
        self._played_to = 0.0
        self._floor_window.clear()
        self.actual_delay = None

    def restart_output(self) -> None:
        """A new playback stream: its clock starts afresh, the read position is found again from the target."""
        self._pos = None
        self._out_clock = ClockModel()
        self._played = 0
        self._floor_window.clear()

    # ------------------------------------------------------------------------------------------------- reader
    def read(self, out: np.ndarray, dac_time: float, target: float) -> None:
        """Fill ``out`` (frames x channels) with the input delayed by ``target`` seconds at ``dac_time``, the time
        its first sample will be heard. Silence before the first input, and while the input is late (an
        underrun); afterwards the audio fades back in where the target says, never replaying what was heard."""
        n = len(out)
        written, t0 = self._head
        out_t0, _ = self._out_clock.update(dac_time - self._played / self.out_rate)
        self._played += n
        if t0 is None or written == 0:
            out.fill(0.0)
            return
        heard = out_t0 + (self._played - n) / self.out_rate
        step = self.in_rate / self.out_rate
        span = (n - 1) * step * (1.0 + self.max_slew) + 2.0  # input samples one block may need
        newest = written - span  # the latest start whose whole block has arrived
        oldest = max(written - self.capacity + 1.0, 0.0)
        resets = self._clock_resets
        fresh = self._pos is None or resets != self._floor_resets  # a restart, or new capture timestamps
        self._floor_resets = resets
        self._track_floor(heard - (t0 + newest / self.in_rate), n, fresh)
        wanted = max((heard - max(target, self.floor_delay) - t0) * self.in_rate, oldest)
        pos = self._pos
        if pos is not None and pos < written - self.capacity + 1.0:  # the writer lapped the reader
            self.overruns += 1
            pos = None
        if pos is None:  # a start, or a restart after a gap: fade in from silence once the samples are there
            wanted = min(wanted, newest - 0.5 * self._block_in)
            if wanted < self._played_to or (heard - target - t0) * self.in_rate < 0.0:
                out.fill(0.0)
                return
            self._gather(out, wanted, step)
            self._fade(out, None)
            self._finish(wanted, wanted + n * step, heard, t0)
            return
        if pos > newest:  # the input is late: silence until it catches up
            self.underruns += 1
            out.fill(0.0)
            self._pos = None
            return
        error = (min(wanted, newest) - pos) / self.in_rate
        if abs(error) > self.jump_s:
            # step only where nothing audible is skipped (a shorter delay) or played twice (a longer one)
            quiet = self._quiet(min(pos, wanted), abs(wanted - pos) + n * step)
            self._loud_for = 0.0 if quiet else self._loud_for + n / self.out_rate
            if quiet or self._loud_for >= self.jump_timeout_s:
                self._gather(out, pos, step)
                before = out[:self.crossfade].copy()
                self._gather(out, wanted, step)
                self._fade(out, before)
                self.steps += 1
                self._loud_for = 0.0
                self.rate = 1.0
                self._finish(wanted, wanted + n * step, heard, t0)
                return
            rate = 1.0 + math.copysign(self.max_slew, error)
        elif abs(error) > DEAD_BAND_S:
            rate = 1.0 + max(-self.max_slew, min(self.max_slew, error))  # error in s: slewed away in about 1 s
        else:
            rate = 1.0
        self.rate = rate
        self._gather(out, pos, step * rate)
        self._finish(pos, pos + n * step * rate, heard, t0)

    def _track_floor(self, instant: float, n: int, fresh: bool) -> None:
        """The shortest delay the buffers allow: the worst case of "read the newest whole block" (it saws by a
        capture block as blocks arrive) over the last FLOOR_WINDOW_S, plus a capture block and FLOOR_MARGIN (the capture callbacks' own jitter).
        Smooth, so a target under it does not make the read speed follow every capture callback; windowed, so
        the wild timestamps of a stream that is still starting pass. A rise of more than a block and a half over
        the window's worst while playing is a stalled capture (an underrun to ride out), not the buffers' length;
        a restart (``fresh``) learns it anew."""
        window = self._floor_window
        block = self._block_in / self.in_rate
        if fresh:
            window.clear()
        elif window and instant > window[0][1] + 1.5 * block:
            return
        now = self._played
        while window and window[-1][1] <= instant:  # a falling queue: the front is the window's worst
            window.pop()
        window.append((now, instant))
        while now - window[0][0] > FLOOR_WINDOW_S * self.out_rate:
            window.popleft()
        self.floor_delay = window[0][1] + block + FLOOR_MARGIN

    def _fade(self, out: np.ndarray, before: np.ndarray | None) -> None:
        """Crossfade the start of ``out`` from ``before`` (the old position's samples; None: from silence)."""
        k = min(self.crossfade, len(out))
        fade = self._fade_in[:k]
        if before is None:
            out[:k] *= fade
        else:
            out[:k] = before[:k] * (1.0 - fade) + out[:k] * fade

    def _finish(self, start: float, next_pos: float, heard: float, t0: float) -> None:
        self._pos = next_pos
        self._played_to = next_pos
        self.actual_delay = heard - (t0 + start / self.in_rate)

    def _gather(self, out: np.ndarray, pos: float, step: float) -> None:
        """``out`` = the ring read from fractional index ``pos`` every ``step`` input samples (linear
        interpolation; a plain copy when ``pos`` is whole at step 1)."""
        n = len(out)
        cap = self.capacity
        ring = self._ring
        if step == 1.0:
            whole = math.floor(pos)
            frac = pos - whole
            start = whole % cap
            if frac == 0.0 and start + n <= cap:
                out[:] = ring[start:start + n]
                return
            if start + n + 1 <= cap:  # at rest between two samples: two slices, no index arrays
                np.multiply(ring[start:start + n], 1.0 - frac, out=out)
                out += ring[start + 1:start + n + 1] * frac
                return
        where = pos + step * np.arange(n, dtype=np.float64)
        index = np.floor(where)
        weight = (where - index).astype(np.float32)[:, None]
        i0 = index.astype(np.int64) % cap
        i1 = (i0 + 1) % cap
        out[:] = ring[i0] + (ring[i1] - ring[i0]) * weight

    def _quiet(self, pos: float, length: float) -> bool:
        start = int(pos) % self.capacity
        stop = start + int(length) + 2
        ring = self._ring
        if stop <= self.capacity:
            part = ring[start:stop]
        else:
            part = np.concatenate((ring[start:], ring[:stop - self.capacity]))
        return bool(np.max(np.abs(part), initial=0.0) < self.silence)
