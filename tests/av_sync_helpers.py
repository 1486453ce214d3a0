"""Measuring how far the Mirage Microphone's voice is from the virtual camera's picture, end to end.

A private PulseAudio server (user mode, no hardware) holds a null sink, the "microphone": a click train plays into
it (its monitor is the microphone Mirage captures) while a source shows a white flash at the click times. The
virtual camera is read at pyvirtualcam's boundary (a backend that records when each picture is written and whether
it is white), the Mirage Microphone by recording it. Each click's delay (its arrival in the recording minus when it
was played) minus its flash's delay (the first white picture written minus when the source delivered the flash)
is one offset: positive when the voice comes after the face.

Audio times come from PortAudio (the sound server's own clock: when a sample is played into the sink and when it
was captured from the source), mapped onto ``time.perf_counter`` (the engine's clock) once per stream.

Used by tests/test_av_sync.py and benchmarks/av_sync.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from mirage_desktop.audio.devices import StreamDevice, open_stream, pulse_device_index
from mirage_desktop.engine.frame import Frame
from mirage_desktop.engine.sources import Pacer, Source
from mirage_desktop.engine.stage import Stage

RATE = 48000
MIC_SINK = "av_sync_mic"  # the null sink whose monitor is the "real microphone"
MIC_SOURCE = f"{MIC_SINK}.monitor"
CLICK_SAMPLES = 96  # 2 ms at full scale 0.8
CLICK_LEVEL = 0.8
DETECT_LEVEL = 0.3
CAMERA_BACKEND = "av_sync_camera"


# ------------------------------------------------------------------------------------------------- sound server
def pulseaudio_missing() -> str:
    """Why a private PulseAudio cannot run here ("" when it can)."""
    return "" if shutil.which("pulseaudio") else "pulseaudio is not installed (scripts/setup.sh test installs it)"


class PrivatePulseAudio:
    """A PulseAudio server of its own (user mode, no hardware, an anonymous socket under ``root``) with the null
    sink :data:`MIC_SINK`; :meth:`restart` stops it and starts a fresh one on the same socket (a sound server
    restarting under the app)."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.address = f"unix:{root / 'native'}"
        self.config = root / "server.pa"
        self.config.write_text(
            f"load-module module-native-protocol-unix socket={root / 'native'} auth-anonymous=1\n"
            f"load-module module-null-sink sink_name={MIC_SINK} rate={RATE} channels=1 channel_map=mono "
            "sink_properties='device.description=\"Test microphone\"'\n", encoding="utf-8")
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = dict(os.environ, HOME=str(self.root), XDG_RUNTIME_DIR=str(self.root),
                   PULSE_RUNTIME_PATH=str(self.root / "runtime"), PULSE_STATE_PATH=str(self.root / "state"))
        env.pop("PULSE_SERVER", None)
        with open(self.root / "pulseaudio.log", "ab") as log:
            self._proc = subprocess.Popen(["pulseaudio", "--daemonize=no", "--system=false", "--exit-idle-time=-1",
                                           "--disallow-exit", "--use-pid-file=false", "-n", "-F", str(self.config),
                                           "--log-target=stderr"], env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20.0
        while not self.pactl("info"):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PulseAudio did not start: {(self.root / 'pulseaudio.log').read_text()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def pactl(self, *args: str) -> str:
        """``pactl`` on this server: its output, or "" when it failed."""
        r = subprocess.run(["pactl", "--server", self.address, *args], capture_output=True, text=True, timeout=10)
        return r.stdout if r.returncode == 0 else ""


@contextmanager
def private_pulseaudio(root: Path) -> Iterator[PrivatePulseAudio]:
    """A :class:`PrivatePulseAudio` running, and set as ``PULSE_SERVER`` for this process (the app's sound server
    calls and PortAudio's 'pulse' device both follow it; so do subprocesses started meanwhile)."""
    server = PrivatePulseAudio(root)
    saved = os.environ.get("PULSE_SERVER")
    os.environ["PULSE_SERVER"] = server.address
    try:
        server.start()
        yield server
    finally:
        server.stop()
        if saved is None:
            os.environ.pop("PULSE_SERVER", None)
        else:
            os.environ["PULSE_SERVER"] = saved


# ----------------------------------------------------------------------------------------------------- picture
class FlashSource(Source):
    """A paced source: dark grey, white for ``flash_frames`` frames from the first frame due at or after each
    ``start + k * period``. ``flashes`` holds when each flash's first white frame was delivered (perf_counter)."""

    def __init__(self, start: float, period: float, width: int = 320, height: int = 240, fps: float = 30.0,
                 flash_frames: int = 3) -> None:
        self.start, self.period = start, period
        self.width, self.height, self.fps = width, height, fps
        self.flash_frames = flash_frames
        self.flashes: list[float] = []
        self._dark = np.full((height, width, 3), 40, np.uint8)
        self._white = np.full((height, width, 3), 255, np.uint8)
        self._pacer = Pacer(fps)
        self._left = 0

    def open(self) -> None:
        self._pacer = Pacer(self.fps)

    def read(self) -> np.ndarray | None:
        self._pacer.wait()
        now = time.perf_counter()
        due = self.start + len(self.flashes) * self.period
        if now >= due:
            self.flashes.append(now)
            self._left = self.flash_frames
        if self._left > 0:
            self._left -= 1
            return self._white
        return self._dark

    def describe(self) -> str:
        return "flash"


class FifoDelayStage(Stage):
    """A stage as slow as a GPU network but keeping the camera's rate: each frame comes out ``delay`` seconds after
    its capture (the newest frame at least that old), with ``t_content`` saying so, as an asynchronous stage's
    results do. ``delay`` may change while it runs."""

    name = "fifo_delay"
    label = "FIFO delay (test)"

    def __init__(self, delay: float) -> None:
        super().__init__(enabled=True)
        self.delay = delay
        self._queue: deque[tuple[float, np.ndarray]] = deque()

    def prepare(self) -> None:
        pass

    def process(self, frame: Frame) -> Frame:
        self._queue.append((frame.t_capture, frame.image))
        due = time.perf_counter() - self.delay
        chosen = None
        while self._queue and self._queue[0][0] <= due:
            chosen = self._queue.popleft()
        if chosen is None:  # nothing old enough yet: the oldest there is
            chosen = self._queue[0]
        else:
            self._queue.appendleft(chosen)  # it stays shown until a newer one is old enough
        frame.image, frame.t_content = chosen[1], chosen[0]
        return frame


class FlashCamera:
    """A pyvirtualcam backend (the device's boundary): records when each white picture after a dark one is
    written (``shows``, perf_counter)."""

    instances: ClassVar[list[FlashCamera]] = []

    def __init__(self, *, width: int, height: int, fps: float, fourcc: int, device: str | None, **_: Any) -> None:
        self.width, self.height = width, height
        self.shows: list[float] = []
        self._white = False
        self.writes = 0
        FlashCamera.instances.append(self)

    def send(self, frame: np.ndarray) -> None:
        now = time.perf_counter()
        self.writes += 1
        white = int(frame[len(frame) // 2]) > 200
        if white and not self._white:
            self.shows.append(now)
        self._white = white

    def close(self) -> None:
        pass

    def device(self) -> str:
        return "/dev/av-sync"

    def native_fourcc(self) -> int | None:
        return None


def register_camera(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make :class:`FlashCamera` the pyvirtualcam backend named :data:`CAMERA_BACKEND` for one test (undone after
    it, so later tests see only the real backends)."""
    import pyvirtualcam

    monkeypatch.setitem(pyvirtualcam.camera.BACKENDS, CAMERA_BACKEND, FlashCamera)


# ------------------------------------------------------------------------------------------------------- sound
def _clock_offset(stream: Any) -> float:
    """PortAudio's stream time minus perf_counter, from the tightest of a few paired readings."""
    best = None
    for _ in range(20):
        before = time.perf_counter()
        pa = stream.time
        after = time.perf_counter()
        if best is None or after - before < best[0]:
            best = (after - before, pa - (before + after) / 2)
    assert best is not None
    return best[1]


class _MeasuringStream:
    """A PortAudio stream on a sound server device (the measurement's own path, not the app's), open while in a
    ``with`` block; ``_offset`` maps its clock to perf_counter."""

    kind = "input"
    _offset = 0.0
    _stream: Any = None

    def _device(self) -> StreamDevice:
        raise NotImplementedError

    def _callback(self, data: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        self._stream = open_stream(self.kind, self._device(), RATE, 480, 1, self._callback)
        self._offset = _clock_offset(self._stream)
        self._stream.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stream.abort()
        self._stream.close()


class ClickTrain(_MeasuringStream):
    """Clicks played into :data:`MIC_SINK` from ``start`` every ``period`` (perf_counter times), each exactly at
    its time as the sound server plays it; ``clicks`` holds them as played."""

    kind = "output"

    def __init__(self, start: float, period: float) -> None:
        self.start, self.period = start, period
        self.clicks: list[float] = []

    def _device(self) -> StreamDevice:
        return StreamDevice(pulse_device_index(), "test microphone", server_name=MIC_SINK)

    def _callback(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        outdata.fill(0.0)
        dac = time_info.outputBufferDacTime - self._offset  # perf_counter time of outdata[0]
        while True:
            due = self.start + len(self.clicks) * self.period
            i = int(round((due - dac) * RATE))
            if i >= frames:
                break
            if i >= 0:
                outdata[i:i + CLICK_SAMPLES, 0] = CLICK_LEVEL
            self.clicks.append(dac + i / RATE)  # a click due before this block (a late start) counts as played


class MicRecorder(_MeasuringStream):
    """Records the Mirage Microphone (``source``) and finds each click's arrival (perf_counter time of its first
    sample above :data:`DETECT_LEVEL` after at least 0.1 s of quiet)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.arrivals: list[float] = []
        self._quiet_since = -1.0

    def _device(self) -> StreamDevice:
        return StreamDevice(pulse_device_index(), "Mirage Microphone", server_name=self.source)

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        adc = time_info.inputBufferAdcTime - self._offset
        loud = np.flatnonzero(np.abs(indata[:, 0]) > DETECT_LEVEL)
        if len(loud) == 0:
            if self._quiet_since < 0:
                self._quiet_since = adc
            return
        first = adc + loud[0] / RATE
        if self._quiet_since >= 0 and first - self._quiet_since >= 0.1:
            self.arrivals.append(first)
        self._quiet_since = adc + (loud[-1] + 1) / RATE


# ---------------------------------------------------------------------------------------------------- offsets
def pair_after(events: list[float], seen: list[float], window: float) -> list[float | None]:
    """For each event, the first of ``seen`` within ``window`` seconds after it (None when none)."""
    out: list[float | None] = []
    ordered = sorted(seen)
    for t in events:
        i = int(np.searchsorted(ordered, t))
        out.append(ordered[i] if i < len(ordered) and ordered[i] - t <= window else None)
    return out


def offsets(clicks: list[float], arrivals: list[float], flashes: list[float], shows: list[float],
            window: float = 1.0) -> list[tuple[float, float]]:
    """(flash time, offset in seconds) for each event whose click and flash both came through: the click's delay
    minus the flash's. Clicks and flashes pair by their order (both trains start together)."""
    heard = pair_after(clicks, arrivals, window)
    seen = pair_after(flashes, shows, window)
    out = []
    for click, arrival, flash, show in zip(clicks, heard, flashes, seen):
        if arrival is not None and show is not None:
            out.append((flash, (arrival - click) - (show - flash)))
    return out


def summary_ms(values: list[float]) -> dict[str, float | None]:
    """median, p95 and max of |offset| ... as the benchmark reports them (ms; median signed)."""
    if not values:
        return {"median": None, "p95": None, "max": None}
    a = np.asarray(values) * 1000.0
    return {"median": round(float(np.median(a)), 2), "p95": round(float(np.percentile(np.abs(a), 95)), 2),
            "max": round(float(np.abs(a).max()), 2)}


def wait_for(condition: Any, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True
