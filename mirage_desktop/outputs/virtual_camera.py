"""Sends the engine's frames to a virtual camera (pyvirtualcam) that Zoom, Meet and OBS can pick as "Mirage".

The camera lives on its own thread: it opens the device (:mod:`.virtual_camera_devices` picks it per OS), converts
each new frame once to the camera's size and pixel format (:mod:`.virtual_camera_picture`) and writes it as soon as
it comes (never faster than the camera's frame rate), and repeats the last picture whenever the engine has nothing
new, so the receiving app never sees the device stall. ``send`` only drops the frame into a latest-frame slot and
returns, so a slow device never holds up the engine.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from mirage_desktop.engine.frame import Frame
from mirage_desktop.engine.metrics import LatencyWindow, RateMeter
from mirage_desktop.engine.outputs import Output
from mirage_desktop.engine.slots import LatestSlot
from mirage_desktop.outputs.virtual_camera_devices import (
    DEVICE_LABEL,
    CameraFactory,
    VirtualCameraUnavailable,
    open_camera,
)
from mirage_desktop.outputs.virtual_camera_picture import FORMATS, CameraPicture

logger = logging.getLogger(__name__)

# Values of ``VirtualCameraOutput.status``.
STOPPED = "stopped"
STARTING = "starting"
RUNNING = "running"
UNAVAILABLE = "unavailable"  # no backend could be opened; ``error`` says what to install
FAILED = "error"  # the camera opened but then failed while sending

#: Gets (status, error) on every status change, from the camera thread.
StatusListener = Callable[[str, BaseException | None], None]


def _validate(width: int, height: int, fps: float, fmt: str) -> None:
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise ValueError(f"Virtual camera size {width}x{height} is invalid: use positive even numbers (1280x720).")
    if not 1.0 <= fps <= 120.0:
        raise ValueError(f"Virtual camera fps {fps} is out of range: use 1 to 120 (30 is usual).")
    if fmt not in FORMATS:
        raise ValueError(f"Virtual camera format {fmt!r} is unknown: use one of {', '.join(FORMATS)}.")


class VirtualCameraOutput(Output):
    """An engine output that feeds a virtual camera at a steady frame rate.

    ``start`` opens the camera on the output's own thread; ``status``/``error`` (and the optional ``on_status``
    listener) tell a window what happened. ``camera_factory`` defaults to ``pyvirtualcam.Camera``.
    """

    name = "virtual_camera"

    def __init__(
        self,
        width: int = 1280,
        height: int = 720,
        fps: float = 30.0,
        *,
        device: str | None = None,
        backend: str | None = None,
        fmt: str = "bgr",
        label: str = DEVICE_LABEL,
        camera_factory: CameraFactory | None = None,
        on_status: StatusListener | None = None,
    ) -> None:
        fmt = fmt.lower()
        _validate(width, height, fps, fmt)
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        self.requested_device = device
        self.requested_backend = backend
        self.fmt = fmt
        self.label = label
        self.on_status = on_status
        self._factory = camera_factory
        self.status = STOPPED
        self.error: BaseException | None = None
        self.device: str | None = None  # the device in use, as the backend names it
        self.backend: str | None = None
        self.frames_sent = 0  # writes to the device, new or repeated
        self.frames_new = 0  # distinct engine frames written
        self.frames_repeated = 0  # writes that re-sent the previous picture because nothing new had arrived
        self.restarts = 0
        self.send_latency = LatencyWindow()  # conversion + device write of a new frame
        self.capture_latency = LatencyWindow()  # from the source delivering the frame to the device write
        #: the age of what the newest frame written shows (its content's capture, an avatar result's frame
        #: for an asynchronous stage) at the write, in seconds: the delay the Mirage Microphone gives the voice
        self.shown_age: float | None = None
        self.rate = RateMeter()
        self._slot: LatestSlot[Frame] = LatestSlot()
        self._stop = threading.Event()
        self._opened = threading.Event()
        self._thread: threading.Thread | None = None
        self._control = threading.Lock()  # start/stop/set_format may come from the window and the HTTP API

    # ---------------------------------------------------------------------------------------------- controls
    @property
    def running(self) -> bool:
        return self.status == RUNNING

    def start(self, wait: bool = True, timeout: float = 10.0) -> None:
        """Open the camera on its own thread.

        With ``wait`` (the default) block until it is open and raise :class:`VirtualCameraUnavailable` when no
        backend exists; without, return at once and report through ``status``/``error``/``on_status``.
        """
        with self._control:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._opened.clear()
            self._slot.reopen()
            self.error = None
            self._set_status(STARTING)
            self._thread = threading.Thread(
                target=self._run, args=(self.width, self.height, self.fps), name="mirage-vcam", daemon=True
            )
            self._thread.start()
        if not wait:
            return
        if not self._opened.wait(timeout):
            logger.warning("Virtual camera still opening after %.0f s; it reports when ready", timeout)
            return
        if self.status != RUNNING and self.error is not None:
            raise self.error

    def stop(self) -> None:
        """Close the camera and end its thread. Safe to call twice."""
        with self._control:
            self._stop.set()
            self._slot.close()
            thread, self._thread = self._thread, None
            if thread is not None and thread is not threading.current_thread():  # a listener may call stop()
                thread.join(timeout=5.0)
                if thread.is_alive():
                    logger.warning("Virtual camera thread did not stop within 5 s")
            if self.status in (RUNNING, STARTING):
                self._set_status(STOPPED)

    def close(self) -> None:
        self.stop()

    def set_format(self, width: int, height: int, fps: float, wait: bool = True, timeout: float = 10.0) -> None:
        """Change the camera's size and rate; a running camera is closed and reopened (apps see a new format)."""
        _validate(width, height, fps, self.fmt)
        if (int(width), int(height), float(fps)) == (self.width, self.height, self.fps):
            return
        active = self._thread is not None and self._thread.is_alive()
        if active:
            self.stop()
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        if active:
            self.restarts += 1
            logger.info("Virtual camera restarts at %dx%d %.3g fps", self.width, self.height, self.fps)
            self.start(wait=wait, timeout=timeout)

    def send(self, frame: Frame) -> None:
        """Hand the newest frame to the camera thread; never blocks on the device."""
        self._slot.put(frame)

    def stats(self) -> dict[str, Any]:
        """Counters and send latency (``p50_ms``... as for a stage), plus source-to-device latency."""
        out: dict[str, Any] = {
            "status": self.status,
            "error": None if self.error is None else str(self.error),
            "device": self.device,
            "backend": self.backend,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "format": self.fmt,
            "frames_sent": self.frames_sent,
            "frames_new": self.frames_new,
            "frames_repeated": self.frames_repeated,
            "frames_skipped": self._slot.dropped,  # engine frames replaced before the camera's next tick
            "restarts": self.restarts,
            "fps_out": round(self.rate.rate(), 2),
        }
        out.update(self.send_latency.summary())
        out["capture_to_device"] = self.capture_latency.summary()
        return out

    # ------------------------------------------------------------------------------------------------ opening
    def _set_status(self, status: str, error: BaseException | None = None) -> None:
        self.status = status
        listener = self.on_status
        if listener is not None:
            try:
                listener(status, error)
            except Exception:
                logger.exception("Virtual camera status listener failed")

    # ------------------------------------------------------------------------------------------- camera thread
    def _run(self, width: int, height: int, fps: float) -> None:
        try:
            cam = open_camera(
                width,
                height,
                fps,
                self.fmt,
                device=self.requested_device,
                backend=self.requested_backend,
                label=self.label,
                factory=self._factory,
            )
        except VirtualCameraUnavailable as exc:
            logger.info("%s", exc)  # the caller shows it: start() raises it, on_status carries it
            self.error = exc
            self._set_status(UNAVAILABLE, exc)
            self._opened.set()
            return
        self.device = str(cam.device)
        self.backend = str(cam.backend)
        logger.info(
            "Virtual camera open: %s (%s) %dx%d %.3g fps %s", self.device, self.backend, width, height, fps, self.fmt
        )
        self._set_status(RUNNING)
        self._opened.set()
        try:
            self._pump(cam, width, height, fps)
        except Exception as exc:  # device gone or a backend error mid-stream: report and end this session
            logger.exception("Virtual camera %s failed", self.device)
            self.error = exc
            self._set_status(FAILED, exc)
        finally:
            try:
                cam.close()
            except Exception:
                logger.exception("Closing virtual camera %s failed", self.device)

    def _pump(self, cam: Any, width: int, height: int, fps: float) -> None:
        """Write each new frame as soon as it comes, but never faster than the camera's rate; when the engine has
        nothing new, write the last picture again so the camera keeps its rate.

        Writing on arrival rather than on a fixed clock saves up to one camera interval of latency (16 ms on
        average at 30 fps). The first repeat waits 1.5 intervals, so a slightly late engine frame is not pushed
        back a whole interval by a repeat; while the engine stalls, repeats follow at the camera's rate.
        """
        picture = CameraPicture(width, height, self.fmt)
        last: np.ndarray = picture.canvas  # black until the first frame: apps see a live camera at once
        interval = 1.0 / fps
        min_gap = 0.9 * interval  # absorbs the engine's jitter; caps the rate at 1.1x the camera's
        grace = 1.5 * interval  # how long after a new frame the next one may take before a repeat
        slot, stop, perf = self._slot, self._stop, time.perf_counter
        last_t = perf() - interval  # the black picture goes out at once
        wait_more = 0.0
        while not stop.is_set():
            frame = slot.get(timeout=max(0.0, last_t + wait_more - perf()))
            if stop.is_set():
                break
            if frame is not None:
                early = last_t + min_gap - perf()
                if early > 0:
                    if stop.wait(early):
                        break
                    frame = slot.get(timeout=0) or frame  # a newer one may have come meanwhile
            t0 = perf()
            if frame is not None:
                converted = picture.convert(frame.image)
                if converted is None:
                    frame = None
                else:
                    last = converted
            cam.send(last)
            t1 = perf()
            last_t = t0
            self.frames_sent += 1
            if frame is not None:
                self.frames_new += 1
                self.send_latency.add(t1 - t0)
                self.capture_latency.add(t1 - frame.t_capture)
                self.shown_age = t1 - (frame.t_capture if frame.t_content is None else frame.t_content)
                wait_more = grace
            else:
                self.frames_repeated += 1
                wait_more = interval
            self.rate.tick(t1)
