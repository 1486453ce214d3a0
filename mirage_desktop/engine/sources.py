"""Frame sources: a webcam, a video file, a still image, and the built-in ``demo``.

A source delivers HxWx3 uint8 BGR frames at its own pace: ``read`` blocks until the next frame is due. Every
frame is a fresh array that nobody writes to afterwards, so the engine can hand it on without copying.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from abc import ABC, abstractmethod
from pathlib import Path

import cv2
import numpy as np

from mirage_desktop.config import bundled_avatar
from mirage_desktop.vision.images import ImageReadError, read_image

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


class SourceError(RuntimeError):
    """A source cannot be opened; the message names the fix."""


class SourceLost(RuntimeError):
    """A source that was working stopped delivering frames (a camera unplugged)."""


class Pacer:
    """Sleeps until the next frame slot of a fixed-rate clock, skipping slots when the reader fell behind."""

    def __init__(self, fps: float) -> None:
        self.interval = 1.0 / max(fps, 1e-3)
        self._next = time.perf_counter()

    def wait(self) -> None:
        now = time.perf_counter()
        if self._next > now:
            time.sleep(self._next - now)
            self._next += self.interval
        else:  # late: do not try to catch up with a burst
            self._next = now + self.interval


class Source(ABC):
    """A stream of frames. ``open`` may raise :class:`SourceError`; ``read`` may raise :class:`SourceLost`."""

    name: str = "source"
    fps: float = 30.0

    def open(self) -> None:
        """Acquire the device or file; raise SourceError with a fix when it cannot."""

    @abstractmethod
    def read(self) -> np.ndarray | None:
        """Block until the next frame and return it, or None when the source has ended."""

    def close(self) -> None:
        """Release the device or file. Safe to call twice."""

    def describe(self) -> str:
        return self.name


def _read_image(path: Path) -> np.ndarray:
    try:
        return read_image(path)
    except ImageReadError as exc:
        raise SourceError(str(exc)) from None


def load_image(path: Path | str) -> np.ndarray:
    """Read an image file as BGR uint8, with a SourceError that names the file when it is not an image."""
    return _read_image(Path(path))


class ImageSource(Source):
    """A still image repeated at ``fps`` (useful to animate a photo or to test without a camera)."""

    def __init__(self, path: Path | str, fps: float = 30.0) -> None:
        self.path = Path(path)
        self.fps = fps
        self.name = f"image:{self.path.name}"
        self._image: np.ndarray | None = None
        self._pacer = Pacer(fps)

    def open(self) -> None:
        image = _read_image(self.path)
        image.flags.writeable = False  # shared by every frame: nobody may write to it
        self._image = image
        self._pacer = Pacer(self.fps)

    def read(self) -> np.ndarray | None:
        self._pacer.wait()
        return self._image


class VideoFileSource(Source):
    """A video file, looped and paced at its own frame rate (or as fast as it decodes with ``paced=False``)."""

    def __init__(self, path: Path | str, loop: bool = True, paced: bool = True) -> None:
        self.path = Path(path)
        self.loop = loop
        self.paced = paced
        self.name = f"video:{self.path.name}"
        self._cap: cv2.VideoCapture | None = None
        self._pacer = Pacer(30.0)

    def open(self) -> None:
        if not self.path.exists():
            raise SourceError(f"Video file not found: {self.path}. Check the path.")
        cap = cv2.VideoCapture(str(self.path))
        ok, first = cap.read() if cap.isOpened() else (False, None)
        if not ok or first is None:
            cap.release()
            raise SourceError(
                f"Cannot decode {self.path} as a video. Use a file OpenCV can play (MP4/H.264, AVI/MJPG, WebM)."
            )
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 1.0 <= fps <= 240.0 else 30.0
        cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        self._cap = cap
        self._pacer = Pacer(self.fps)

    def read(self) -> np.ndarray | None:
        if self._cap is None:
            return None
        if self.paced:
            self._pacer.wait()
        ok, frame = self._cap.read()
        if not ok:
            if not self.loop:
                return None
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self._cap.read()
            if not ok:
                return None
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class WebcamSource(Source):
    """A camera by index, asked for 1280x720 at 30 fps, MJPG where offered, and the smallest driver buffer."""

    #: Reads that may fail in a row before the camera counts as gone.
    MAX_FAILED_READS = 15

    def __init__(self, index: int, width: int = 1280, height: int = 720, fps: float = 30.0) -> None:
        self.index = index
        self.width, self.height, self.fps = width, height, fps
        self.name = f"camera:{index}"
        self._cap: cv2.VideoCapture | None = None

    @staticmethod
    def _backend() -> int:
        if sys.platform.startswith("linux"):
            return cv2.CAP_V4L2
        if sys.platform == "win32":
            return cv2.CAP_MSMF
        if sys.platform == "darwin":
            return cv2.CAP_AVFOUNDATION
        return cv2.CAP_ANY

    def open(self) -> None:
        cap = cv2.VideoCapture(self.index, self._backend())
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"Camera {self.index} cannot be opened. Check that it is connected and not used by another app, "
                "or choose another camera (or 'demo')."
            )
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"MJPG"))
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        cap.set(cv2.CAP_PROP_FPS, self.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # each buffered frame is ~33 ms of latency
        ok, _ = cap.read()
        if not ok:
            cap.release()
            raise SourceError(f"Camera {self.index} opened but delivers no frames. Try another camera or 'demo'.")
        got = cap.get(cv2.CAP_PROP_FPS)
        if got and got > 0:
            self.fps = float(got)
        self._cap = cap

    def read(self) -> np.ndarray | None:
        cap = self._cap
        if cap is None:
            return None
        for _ in range(self.MAX_FAILED_READS):
            ok, frame = cap.read()
            if ok and frame is not None:
                return frame
            time.sleep(0.02)
        raise SourceLost(f"Camera {self.index} stopped delivering frames (unplugged or taken by another app).")

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class DemoSource(Source):
    """A built-in moving face: the bundled portrait with smooth synthetic head motion (rotation, shift, zoom).

    Lets a new user without a webcam see the whole chain work. Deterministic: frame ``i`` is always the same image.
    """

    def __init__(
        self,
        width: int = 1280,
        height: int = 720,
        fps: float = 30.0,
        portrait: Path | None = None,
        paced: bool = True,
    ) -> None:
        self.width, self.height, self.fps = width, height, fps
        self.portrait_path = portrait or bundled_avatar()
        self.paced = paced
        self.name = "demo"
        self._pacer = Pacer(fps)
        self._i = 0
        self._portrait: np.ndarray | None = None
        self._background: np.ndarray | None = None

    def open(self) -> None:
        portrait = _read_image(self.portrait_path)
        scale = self.height / portrait.shape[0] * 0.92
        self._portrait = cv2.resize(portrait, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        bg = cv2.resize(portrait, (self.width, self.height), interpolation=cv2.INTER_AREA)
        self._background = (cv2.GaussianBlur(bg, (0, 0), 25) * 0.45).astype(np.uint8)
        self._pacer = Pacer(self.fps)
        self._i = 0

    def motion(self, i: int) -> tuple[float, float, float, float]:
        """(angle degrees, dx px, dy px, zoom) of frame ``i``: a few incommensurate sines, smooth and looping."""
        t = i / self.fps
        angle = 9.0 * math.sin(2 * math.pi * t / 4.0)
        dx = 0.05 * self.width * math.sin(2 * math.pi * t / 6.3)
        dy = 0.03 * self.height * math.sin(2 * math.pi * t / 5.1 + 0.7)
        zoom = 1.0 + 0.06 * math.sin(2 * math.pi * t / 7.7)
        return angle, dx, dy, zoom

    def render(self, i: int) -> np.ndarray:
        assert self._portrait is not None and self._background is not None, "open() first"
        angle, dx, dy, zoom = self.motion(i)
        ph, pw = self._portrait.shape[:2]
        m = cv2.getRotationMatrix2D((pw / 2, ph * 0.4), angle, zoom)
        m[0, 2] += (self.width - pw) / 2 + dx
        m[1, 2] += (self.height - ph) / 2 + dy
        return cv2.warpAffine(
            self._portrait, m, (self.width, self.height), dst=self._background.copy(),
            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_TRANSPARENT,
        )

    def read(self) -> np.ndarray | None:
        if self.paced:
            self._pacer.wait()
        frame = self.render(self._i)
        self._i += 1
        return frame


def make_source(
    spec: str, *, width: int = 1280, height: int = 720, fps: float = 30.0, paced: bool = True
) -> Source:
    """Build (but do not open) a source from ``demo``, a camera index, or a path to a video or image."""
    spec = str(spec).strip()
    if spec == "demo":
        return DemoSource(width, height, fps, paced=paced)
    if spec.isdigit():
        return WebcamSource(int(spec), width, height, fps)
    path = Path(spec).expanduser()
    if not path.exists():
        raise SourceError(f"Source {spec!r} is neither 'demo', a camera index, nor an existing file. Check the path.")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(path, fps)
    return VideoFileSource(path, paced=paced)


def list_cameras(max_index: int = 6) -> list[int]:
    """Indices of the cameras that open and deliver a frame (slow: call it off the GUI thread)."""
    found: list[int] = []
    for index in range(max_index):
        if sys.platform.startswith("linux") and not Path(f"/dev/video{index}").exists():
            continue
        cap = cv2.VideoCapture(index, WebcamSource._backend())
        try:
            if cap.isOpened() and cap.read()[0]:
                found.append(index)
        finally:
            cap.release()
    return found
