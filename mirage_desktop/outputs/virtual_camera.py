"""Sends the engine's frames to a virtual camera (pyvirtualcam) that Zoom, Meet and OBS can pick as "Mirage".

The camera lives on its own thread: it opens the device, converts each new frame once to the camera's size and
pixel format and writes it as soon as it comes (never faster than the camera's frame rate), and repeats the last
picture whenever the engine has nothing new, so the receiving app never sees the device stall. ``send`` only drops the frame into a
latest-frame slot and returns, so a slow device never holds up the engine.

Backends come from pyvirtualcam: v4l2loopback on Linux (the device whose card label is "Mirage" is preferred),
OBS Studio's virtual camera on Windows and macOS, Unity Capture on Windows (a device registered as "Mirage" is
tried first).
"""

from __future__ import annotations

import logging
import platform
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mirage_desktop.engine.frame import Frame
from mirage_desktop.engine.metrics import LatencyWindow, RateMeter
from mirage_desktop.engine.outputs import Output
from mirage_desktop.engine.slots import LatestSlot

logger = logging.getLogger(__name__)

try:
    import pyvirtualcam
except Exception as exc:  # a broken native build must not take the app down: start() reports it with the fix
    pyvirtualcam = None  # type: ignore[assignment]
    _IMPORT_ERROR: Exception | None = exc
else:
    _IMPORT_ERROR = None

#: The name the virtual camera carries in other apps, where the backend lets us choose it.
DEVICE_LABEL = "Mirage"
#: The one line that creates that camera on Linux.
MODPROBE_LINE = f"sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label={DEVICE_LABEL}"
#: Where v4l2loopback publishes each device's card label (``videoN/name``). Real webcams sit elsewhere in sysfs.
SYSFS_VIDEO4LINUX = Path("/sys/devices/virtual/video4linux")

# Values of ``VirtualCameraOutput.status``.
STOPPED = "stopped"
STARTING = "starting"
RUNNING = "running"
UNAVAILABLE = "unavailable"  # no backend could be opened; ``error`` says what to install
FAILED = "error"  # the camera opened but then failed while sending

FORMATS = ("bgr", "rgb")

#: Called like ``pyvirtualcam.Camera(width, height, fps, fmt=..., device=..., backend=...)``.
CameraFactory = Callable[..., Any]
#: Gets (status, error) on every status change, from the camera thread.
StatusListener = Callable[[str, BaseException | None], None]


class VirtualCameraUnavailable(RuntimeError):
    """No virtual camera could be opened; the message says what to install or run on this OS."""


def available_backend_hint(system: str | None = None) -> str:
    """What to install or run so that a virtual camera exists on ``system`` (default: this OS)."""
    system = system or platform.system()
    if system == "Linux":
        return (
            "Install v4l2loopback (Debian/Ubuntu: sudo apt install v4l2loopback-dkms; Fedora: v4l2loopback from "
            "RPM Fusion; if /dev/videoN then exists but cannot be opened, add yourself to the video group with "
            f"sudo usermod -a -G video $USER and log in again), then create the camera with: {MODPROBE_LINE}"
        )
    if system == "Windows":
        return (
            "Install OBS Studio 26 or newer (https://obsproject.com), which brings the 'OBS Virtual Camera', and "
            "make sure OBS itself is not running its virtual camera; or install Unity Capture "
            "(https://github.com/schellingb/UnityCapture) and register a device named 'Mirage'."
        )
    if system == "Darwin":
        return (
            "Install OBS Studio (https://obsproject.com), open it once, click 'Start Virtual Camera' (allow the "
            "system extension if macOS asks), then 'Stop Virtual Camera' and quit OBS. Apps then list Mirage as "
            "'OBS Virtual Camera'."
        )
    return f"Virtual cameras are supported on Linux (v4l2loopback), Windows and macOS (OBS Studio), not on {system}."


def find_mirage_device(label: str = DEVICE_LABEL, root: Path | None = None) -> str | None:
    """The ``/dev/videoN`` of the v4l2loopback device whose card label is ``label``, or None (Linux only)."""
    root = SYSFS_VIDEO4LINUX if root is None else root
    if not root.is_dir():
        return None

    def number(entry: Path) -> int:
        digits = entry.name[len("video") :]
        return int(digits) if digits.isdigit() else 1 << 30

    for entry in sorted(root.glob("video*"), key=number):
        try:
            name = (entry / "name").read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            continue
        if name == label:
            return f"/dev/{entry.name}"
    return None


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
        self.rate = RateMeter()
        self._slot: LatestSlot[Frame] = LatestSlot()
        self._stop = threading.Event()
        self._opened = threading.Event()
        self._thread: threading.Thread | None = None
        self._control = threading.Lock()  # start/stop/set_format may come from the window and the HTTP API
        # conversion state, owned by the camera thread
        self._canvas: np.ndarray | None = None
        self._layout_key: tuple[int, ...] | None = None
        self._roi: np.ndarray | None = None
        self._interp = cv2.INTER_AREA
        self._bad_shape: tuple[int, ...] | None = None

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

    def _pixel_format(self) -> Any:
        if pyvirtualcam is None:
            return self.fmt
        return pyvirtualcam.PixelFormat.BGR if self.fmt == "bgr" else pyvirtualcam.PixelFormat.RGB

    def _camera_factory(self) -> CameraFactory:
        if self._factory is not None:
            return self._factory
        if pyvirtualcam is None:
            raise VirtualCameraUnavailable(
                f"pyvirtualcam cannot be loaded ({_IMPORT_ERROR}); reinstall it with "
                f"'pip install --force-reinstall pyvirtualcam'. {available_backend_hint()}"
            )
        known = pyvirtualcam.camera.BACKENDS
        if not known:
            raise VirtualCameraUnavailable(
                f"pyvirtualcam has no backend on {platform.system()}. {available_backend_hint()}"
            )
        if self.requested_backend is not None and self.requested_backend not in known:
            raise VirtualCameraUnavailable(
                f"Unknown virtual camera backend {self.requested_backend!r}; this system offers: "
                f"{', '.join(known)}. Leave the backend unset to try them all."
            )
        return pyvirtualcam.Camera  # type: ignore[no-any-return]

    def _attempts(self) -> list[tuple[str | None, str | None]]:
        """(device, backend) pairs to try in turn: what the user asked for, else the "Mirage" device first."""
        if self.requested_device is not None or self.requested_backend is not None:
            return [(self.requested_device, self.requested_backend)]
        system = platform.system()
        if system == "Linux":
            device = find_mirage_device(self.label)
            if device is not None:
                return [(device, None)]
            logger.info("No v4l2loopback device labelled %r; trying any loopback device", self.label)
        elif system == "Windows":
            return [(self.label, "unitycapture"), (None, None)]
        return [(None, None)]

    def _open_camera(self, width: int, height: int, fps: float) -> Any:
        factory = self._camera_factory()
        fmt = self._pixel_format()
        errors: list[str] = []
        for device, backend in self._attempts():
            try:
                return factory(width, height, fps, fmt=fmt, device=device, backend=backend)
            except Exception as exc:  # every backend fails in its own way; all are reported together
                where = ", ".join(x for x in (backend and f"backend {backend}", device and f"device {device}") if x)
                detail = " ".join(str(exc).split()) or type(exc).__name__
                errors.append(f"{where}: {detail}" if where else detail)
        raise VirtualCameraUnavailable(
            f"No virtual camera could be opened ({'; '.join(errors)}). {available_backend_hint()}"
        )

    # ------------------------------------------------------------------------------------------- camera thread
    def _run(self, width: int, height: int, fps: float) -> None:
        try:
            cam = self._open_camera(width, height, fps)
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
        self._canvas = np.zeros((height, width, 3), np.uint8)
        self._layout_key = None
        self._roi = None
        last: np.ndarray = self._canvas  # black until the first frame: apps see a live camera at once
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
                converted = self._convert(frame.image)
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
                wait_more = grace
            else:
                self.frames_repeated += 1
                wait_more = interval
            self.rate.tick(t1)

    def _layout(self, image: np.ndarray) -> bool:
        """Fit frames of this shape into the camera: same size passes, else letterbox. Runs on shape changes."""
        canvas = self._canvas
        assert canvas is not None
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            if self._bad_shape != image.shape:
                self._bad_shape = image.shape
                logger.error(
                    "Virtual camera skips frames of shape %s and type %s: expected HxWx3 uint8 BGR",
                    image.shape,
                    image.dtype,
                )
            return False
        h, w = image.shape[:2]
        height, width = canvas.shape[:2]
        canvas.fill(0)
        if (h, w) == (height, width):
            self._roi = None
        else:
            scale = min(width / w, height / h)
            nw = min(width, max(1, round(w * scale)))
            nh = min(height, max(1, round(h * scale)))
            x0, y0 = (width - nw) // 2, (height - nh) // 2
            self._roi = canvas[y0 : y0 + nh, x0 : x0 + nw]
            # bilinear already weighs every source pixel down to half size and is 5x cheaper than area averaging
            # at odd ratios (1080p -> 720p: 2 ms against 10 ms); stronger reductions need area to avoid aliasing
            self._interp = cv2.INTER_AREA if scale <= 0.5 else cv2.INTER_LINEAR
        self._layout_key = image.shape
        return True

    def _convert(self, image: np.ndarray) -> np.ndarray | None:
        """The picture to write for ``image``: the frame itself when it already fits, else one pass into the
        preallocated canvas. None when the frame cannot be shown (wrong shape; logged once)."""
        if image.shape != self._layout_key and not self._layout(image):
            return None
        canvas = self._canvas
        assert canvas is not None
        roi = self._roi
        if roi is None:
            if self.fmt == "rgb":
                cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=canvas)
                return canvas
            if image.flags.c_contiguous:
                return image  # BGR at the camera's size: no copy at all
            np.copyto(canvas, image)
            return canvas
        cv2.resize(image, (roi.shape[1], roi.shape[0]), dst=roi, interpolation=self._interp)
        if self.fmt == "rgb":
            cv2.cvtColor(roi, cv2.COLOR_BGR2RGB, dst=roi)
        return canvas
