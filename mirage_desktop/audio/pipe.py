"""The audio thread: the real microphone into a :class:`~mirage_desktop.audio.delay_line.DelayLine`, the delay line
into the virtual microphone, never on the video's path.

PortAudio calls two callbacks on its own threads (capture and playback); they only write and read the delay line
and count. Two streams also on Linux, where both ends are the same ALSA 'pulse' device: a duplex stream there (one
callback) makes PortAudio 19.6's ALSA loop spin on the plugin's poll descriptor while one side waits for the other,
a whole core in most starts. A supervisor thread ("mirage-audio") does everything slow: it opens the streams, polls
the video's delay (a callable, ``delay``, returning seconds or None) ten times a second and hands the playback the
median of the last second plus the user's offset, and watches for trouble. A microphone unplugged, a sound server
restarting, the virtual microphone removed by the user, a sample rate the device refuses: the stream concerned is
closed, :attr:`MicrophonePipe.message` says what happened, and it is opened again once a second until it works;
the other stream goes on (without a microphone the Mirage Microphone stays there, silent).
"""

from __future__ import annotations

import logging
import math
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from mirage_desktop.audio.delay_line import DelayLine
from mirage_desktop.audio.devices import (
    AudioUnavailable,
    StreamDevice,
    open_stream,
    output_channels,
    portaudio,
    resolve_microphone,
)
from mirage_desktop.audio.pulse import SoundServer, SoundServerError
from mirage_desktop.audio.virtual_mic import VirtualMicrophone

logger = logging.getLogger(__name__)

#: The longest delay the voice is given (a CPU-only avatar can lag more; the voice then lags less than the face).
MAX_DELAY_S = 2.5
SMOOTHING_S = 1.0  # the video's delay is the median over this long
POLL_S = 0.1  # how often the supervisor looks (the delay is smoothed over a second anyway)
STALL_S = 1.0  # a stream that has not called back for this long is lost
START_GRACE_S = 3.0  # a new stream may take this long to call back first (PulseAudio takes over a second)
FLAG_GRACE_S = 0.5  # PortAudio's under/overflow flags while a stream starts are its priming, not dropouts
CHECK_S = 2.0  # how often the devices are checked to be still there
RETRY_S = 1.0
RATES = (48000, 44100)
BLOCK_S = 0.01

#: Gets (status, message) on every change of either, from the supervisor thread.
StatusListener = Callable[[str, str], None]
#: Gets each block as it is played (frames x 1 float32, valid only during the call: copy to keep) and the sample
#: rate.
AudioTap = Callable[[np.ndarray, int], None]

# Values of MicrophonePipe.status
OFF = "off"
STARTING = "starting"
RUNNING = "running"  # both streams flow
WAITING = "waiting"  # one stream is missing; message says which and why


class MicrophonePipe:
    """The real microphone ``microphone`` (a name :func:`~mirage_desktop.audio.devices.resolve_microphone` takes),
    delayed by ``delay()`` plus ``offset_ms``, played into ``virtual``. ``server``: the Linux sound server (None
    elsewhere)."""

    def __init__(self, microphone: str, virtual: VirtualMicrophone, delay: Callable[[], float | None], *,
                 offset_ms: float = 0.0, server: SoundServer | None = None,
                 on_status: StatusListener | None = None) -> None:
        self.microphone = microphone
        self.virtual = virtual
        self.delay = delay
        self.offset_ms = float(offset_ms)
        self.server = server
        self.on_status = on_status
        self.status = OFF
        self.message = ""
        self.input_label = ""
        self.output_label = ""
        self.video_delay: float | None = None  # the video's delay, smoothed (s)
        self.wanted_delay = 0.0  # the delay the voice should have where apps hear it: video + offset (s)
        self._target = 0.0  # what the playback callback aims at: wanted_delay less the device's own latency (s)
        self._samples: deque[tuple[float, float]] = deque()
        self._line = DelayLine(RATES[0])
        self._lines_done = [0, 0]  # underruns, overruns of delay lines replaced
        self._input: Any = None
        self._output: Any = None
        self._input_device: StreamDevice | None = None
        self._in_rate = self._out_rate = RATES[0]
        self._in_opened = self._out_opened = self._in_seen = self._out_seen = 0.0
        self._in_retry = self._out_retry = 0.0
        self._in_tid: int | None = None
        self._out_tid: int | None = None
        self._flags = [0, 0]  # PortAudio's input overflows, output underflows
        self._excluded = [0, 0]  # underruns, overruns while streams were starting (not dropouts)
        self._settle_from: tuple[int, int] | None = (0, 0)  # the raw counts when the current start began
        self.dropped_blocks = 0
        self._peak = 0.0
        self._mono = np.zeros((int(RATES[0] * BLOCK_S), 1), np.float32)
        self._magnitude = np.zeros((int(RATES[0] * BLOCK_S), 1), np.float32)  # the capture block's |samples|
        self._taps: tuple[AudioTap, ...] = ()
        self._reopen_input = False
        self._problems = {"input": "", "output": ""}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._supervisor_tid: int | None = None

    # ---------------------------------------------------------------------------------------------- controls
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._set_status(STARTING, "Starting")
        self._thread = threading.Thread(target=self._run, name="mirage-audio", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Close both streams and end the thread. Safe to call twice."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("The audio thread did not stop within %.0f s", timeout)
        self._set_status(OFF, "Off")

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def set_offset_ms(self, offset_ms: float) -> None:
        """The user's correction on top of the video's delay (positive: the voice later); next poll."""
        self.offset_ms = float(offset_ms)

    def set_microphone(self, microphone: str) -> None:
        """Capture from another microphone from now on (opened by the audio thread)."""
        self.microphone = microphone
        self._reopen_input = True

    def problem(self, kind: str) -> str:
        """What keeps the ``"input"`` (microphone) or ``"output"`` (virtual microphone) stream from running;
        "" when nothing does."""
        return self._problems[kind]

    def add_tap(self, tap: AudioTap) -> None:
        self._taps = (*self._taps, tap)

    def remove_tap(self, tap: AudioTap) -> None:
        self._taps = tuple(t for t in self._taps if t != tap)  # bound methods are equal, never identical

    # -------------------------------------------------------------------------------------------------- stats
    @property
    def actual_delay(self) -> float | None:
        """The voice's delay where apps hear it now (seconds; None while the virtual microphone is not playing)."""
        actual = self._line.actual_delay
        return None if actual is None or self._output is None else actual + self.virtual.latency_s

    @property
    def underruns(self) -> int:
        """Blocks played with silence because their samples were late, plus PortAudio's output underflows;
        counted once both streams are past START_GRACE_S (while a stream starts PortAudio over PulseAudio
        reports timestamps that still move by hundreds of milliseconds)."""
        return self._counted()[0]

    @property
    def overruns(self) -> int:
        return self._counted()[1]

    def _raw_counts(self) -> tuple[int, int]:
        line = self._line
        return (self._lines_done[0] + line.underruns + self._flags[1],
                self._lines_done[1] + line.overruns + self._flags[0])

    def _counted(self) -> tuple[int, int]:
        raw = self._raw_counts()
        start = self._settle_from if self._settle_from is not None else raw
        return (raw[0] - self._excluded[0] - (raw[0] - start[0]),
                raw[1] - self._excluded[1] - (raw[1] - start[1]))

    @property
    def level_dbfs(self) -> float:
        """The microphone's recent peak level (dBFS; -120 for silence or no microphone)."""
        peak = self._peak if self._input is not None else 0.0
        return 20.0 * math.log10(peak) if peak > 1e-6 else -120.0

    @property
    def sample_rate(self) -> int:
        return self._out_rate

    def thread_ids(self) -> dict[int, str]:
        """The native ids of the threads doing the audio work, each with its role ("supervisor", and "input" and
        "output" for PortAudio's callbacks)."""
        roles = (("supervisor", self._supervisor_tid), ("input", self._in_tid), ("output", self._out_tid))
        return {tid: role for role, tid in roles if tid is not None}

    def stats(self) -> dict[str, Any]:
        actual = self.actual_delay
        return {
            "status": self.status,
            "message": self.message,
            "microphone": self.input_label or self.microphone,
            "virtual_microphone": self.virtual.app_name,
            "delay_target_ms": round(self.wanted_delay * 1000.0, 1),
            "delay_actual_ms": None if actual is None else round(actual * 1000.0, 1),
            "video_delay_ms": None if self.video_delay is None else round(self.video_delay * 1000.0, 1),
            "offset_ms": self.offset_ms,
            "min_delay_ms": round((self._line.floor_delay + self.virtual.latency_s) * 1000.0, 1),
            "underruns": self.underruns,
            "overruns": self.overruns,
            "dropped_blocks": self.dropped_blocks,
            "level_dbfs": round(self.level_dbfs, 1),
            "sample_rate": self._out_rate,
        }

    # ---------------------------------------------------------------------------------------------- callbacks
    def _on_input(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        now = time.perf_counter()
        if self._in_tid is None:
            self._in_tid = threading.get_native_id()
        self._in_seen = now
        if status and status.input_overflow and now - self._in_opened > FLAG_GRACE_S:
            self._flags[0] += 1
        adc = time_info.inputBufferAdcTime or time_info.currentTime - frames / self._in_rate
        self._line.write(indata, adc)
        magnitude = self._magnitude
        if magnitude.shape != indata.shape:
            magnitude = self._magnitude = np.zeros(indata.shape, np.float32)
        np.abs(indata, out=magnitude)  # no temporaries: this runs a hundred times a second
        peak = float(magnitude.max()) if frames else 0.0
        self._peak = peak if peak > self._peak else self._peak * 0.93  # a meter's fall: about 0.3 s
        if self._output is None:
            self.dropped_blocks += 1

    def _on_output(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        now = time.perf_counter()
        if self._out_tid is None:
            self._out_tid = threading.get_native_id()
        self._out_seen = now
        if status and status.output_underflow and now - self._out_opened > FLAG_GRACE_S:
            self._flags[1] += 1
        dac = time_info.outputBufferDacTime or time_info.currentTime
        if outdata.shape[1] == 1:  # the sound server's mono sink: straight into PortAudio's buffer
            mono = outdata
            self._line.read(mono, dac, self._target)
        else:  # a virtual cable's stereo: the mono voice to both
            mono = self._mono
            if len(mono) != frames:
                mono = self._mono = np.zeros((frames, 1), np.float32)
            self._line.read(mono, dac, self._target)
            outdata[:] = mono
        for tap in self._taps:
            tap(mono, self._out_rate)

    # ------------------------------------------------------------------------------------------ audio thread
    def _run(self) -> None:
        self._supervisor_tid = threading.get_native_id()
        next_check = 0.0
        try:
            while not self._stop.is_set():
                now = time.perf_counter()
                try:
                    self._update_target(now)
                    if self._reopen_input:
                        self._reopen_input = False
                        self._close("input", "")
                        self._in_retry = 0.0
                    if self._output is None and now >= self._out_retry:
                        self._open_output(now)
                    if self._input is None and now >= self._in_retry:
                        self._open_input(now)
                    self._watch(now)
                    if now >= next_check:
                        next_check = now + CHECK_S
                        self._check_devices()
                    self._report()
                except Exception:  # the audio never takes the app down: log, and try again next time
                    logger.exception("The audio thread failed; it carries on")
                self._stop.wait(POLL_S)
        finally:
            self._close("input", "")
            self._close("output", "")

    def _update_target(self, now: float) -> None:
        try:
            value = self.delay()
        except Exception:
            logger.debug("The video delay could not be read", exc_info=True)
            value = None
        samples = self._samples
        if value is not None and math.isfinite(value):
            samples.append((now, float(value)))
        while samples and samples[0][0] < now - SMOOTHING_S:
            samples.popleft()
        if samples:  # a few dozen values: plain Python (numpy's median costs a hundred times more here)
            self.video_delay = float(statistics.median([v for _, v in samples]))
        video = self.video_delay or 0.0
        self.wanted_delay = min(max(video + self.offset_ms / 1000.0, 0.0), MAX_DELAY_S)
        self._target = max(self.wanted_delay - self.virtual.latency_s, 0.0)  # the device adds the rest

    def _open_output(self, now: float) -> None:
        self._out_retry = now + RETRY_S
        try:
            device = self.virtual.ensure()
            channels = output_channels(device)
            stream, rate = self._open_any("output", device, channels, self._on_output)
        except AudioUnavailable as exc:
            self._problem("output", str(exc))
            return
        self._use_rate("output", rate)
        self._line.restart_output()
        self._out_opened = self._out_seen = time.perf_counter()
        self._out_tid = None
        stream.start()
        self._output = stream
        self.output_label = device.label
        self._problem("output", "")
        logger.info("Mirage Microphone: playing into %s at %d Hz", device.label, rate)

    def _open_input(self, now: float) -> None:
        self._in_retry = now + RETRY_S
        try:
            device = resolve_microphone(self.microphone, self.server)
            stream, rate = self._open_any("input", device, 1, self._on_input)
        except AudioUnavailable as exc:
            self._problem("input", str(exc))
            return
        self._use_rate("input", rate)
        self._in_opened = self._in_seen = time.perf_counter()
        self._in_tid = None
        stream.start()
        self._input = stream
        self._input_device = device
        self.input_label = device.label
        self._problem("input", "")
        logger.info("Mirage Microphone: capturing from %s at %d Hz", device.label, rate)

    def _open_any(self, kind: str, device: StreamDevice, channels: int,
                  callback: Callable[..., None]) -> tuple[Any, int]:
        """The stream at the first rate the device takes (48 kHz, then 44.1 kHz, then its own)."""
        sd = portaudio()
        rates = list(RATES)
        try:
            own = int(sd.query_devices(device.index)["default_samplerate"])
            if own not in rates:
                rates.append(own)
        except Exception:
            pass
        errors = []
        for rate in rates:
            try:
                return open_stream(kind, device, rate, int(rate * BLOCK_S), channels, callback), rate
            except Exception as exc:  # PortAudioError: rate refused, device busy or gone
                errors.append(f"{rate} Hz: {exc}")
        what = "microphone" if kind == "input" else "Mirage Microphone"
        raise AudioUnavailable(f"The {what} {device.label!r} could not be opened ({'; '.join(errors)}).")

    def _use_rate(self, kind: str, rate: int) -> None:
        """A delay line for the new rate when it differs (a device that refused 48 kHz); its counts carry on."""
        in_rate = rate if kind == "input" else self._in_rate
        out_rate = rate if kind == "output" else self._out_rate
        if (in_rate, out_rate) != (self._line.in_rate, self._line.out_rate):
            old = self._line
            self._lines_done[0] += old.underruns
            self._lines_done[1] += old.overruns
            self._line = DelayLine(in_rate, out_rate)
        self._in_rate, self._out_rate = in_rate, out_rate

    def _watch(self, now: float) -> None:
        """A stream PortAudio stopped (an error) or that stopped calling back is closed, to be opened again."""
        start = self._settle_from
        if start is not None and self._input is not None and self._output is not None \
                and now - max(self._in_opened, self._out_opened) > START_GRACE_S:
            raw = self._raw_counts()
            self._excluded = [self._excluded[0] + raw[0] - start[0], self._excluded[1] + raw[1] - start[1]]
            self._settle_from = None
        for kind, stream, opened, seen in (("input", self._input, self._in_opened, self._in_seen),
                                           ("output", self._output, self._out_opened, self._out_seen)):
            if stream is None:
                continue
            stalled = now - seen > STALL_S and now - opened > START_GRACE_S
            if not stream.active or stalled:
                logger.debug("%s stream lost: active %s, last callback %.2f s ago, opened %.2f s ago", kind,
                             stream.active, now - seen, now - opened)
                what = "The microphone" if kind == "input" else "The Mirage Microphone"
                self._close(kind, f"{what} stopped (unplugged, or the sound server restarted); trying again.")

    def _check_devices(self) -> None:
        """The user removed the virtual microphone, or unplugged the sound server's microphone: the sound server
        would move our stream elsewhere (the speakers, another microphone) rather than end it."""
        if self._output is not None and not self.virtual.present():
            self._close("output", "The Mirage Microphone was removed; making it again.")
        device = self._input_device
        if self._input is not None and device is not None and device.server_name and self.server is not None:
            try:
                there = self.server.has_source(device.server_name)
            except SoundServerError:
                there = False
            if not there:
                self._close("input", f"The microphone {device.label!r} is gone (unplugged?); waiting for it.")

    def _close(self, kind: str, reason: str) -> None:
        if self._settle_from is None:  # the next start settles again; what was counted so far stays counted
            self._settle_from = self._raw_counts()
        stream = self._input if kind == "input" else self._output
        if kind == "input":
            self._input = None
            self._input_device = None
        else:
            self._output = None
        if stream is not None:
            try:
                stream.abort()
                stream.close()
            except Exception:
                logger.debug("Closing the %s stream failed", kind, exc_info=True)
        if reason:
            self._problem(kind, reason)

    def _problem(self, kind: str, text: str) -> None:
        if text and text != self._problems[kind]:
            logger.warning("Mirage Microphone: %s", text)
        self._problems[kind] = text

    def _report(self) -> None:
        problems = [p for p in (self._problems["output"], self._problems["input"]) if p]
        if problems:
            self._set_status(WAITING, " ".join(problems))
        elif self._input is not None and self._output is not None:
            self._set_status(RUNNING, f"From {self.input_label} into {self.virtual.app_name}")

    def _set_status(self, status: str, message: str) -> None:
        if (status, message) == (self.status, self.message):
            return
        self.status, self.message = status, message
        listener = self.on_status
        if listener is not None:
            try:
                listener(status, message)
            except Exception:
                logger.exception("Audio status listener failed")
